import logging

import pytest

from tunekit.testing import make_tiny_model

#: (text_a, text_b, same meaning?) — paraphrases and unrelated pairs over the same questions
EN_PAIRS = [
    ("how old are you", "what is your age", 1),
    ("how old are you", "where do you live", 0),
    ("the cat sat on the mat", "a cat was sitting on the mat", 1),
    ("the cat sat on the mat", "the stock market fell today", 0),
    ("i like green tea", "green tea is what i like", 1),
    ("i like green tea", "the train was late again", 0),
    ("where is the station", "how do i get to the station", 1),
    ("where is the station", "my dog likes to run", 0),
]
ZH_PAIRS = [
    ("今天天气怎么样", "今天天气如何", 1),
    ("今天天气怎么样", "我想买一本书", 0),
    ("你今年多大了", "你的年龄是多少", 1),
    ("你今年多大了", "火车站在哪里", 0),
    ("我喜欢喝绿茶", "绿茶是我喜欢的", 1),
    ("我喜欢喝绿茶", "股市今天下跌了", 0),
    ("去北京怎么走", "怎么去北京", 1),
    ("去北京怎么走", "我的猫很可爱", 0),
]
TRAIN = dict(
    epochs=6, learning_rate=1e-2, batch_size=8, max_length=32, eval_split=0, progress=False, seed=0
)


def texts(pairs):
    return [t for p in pairs for t in p[:2]] + ["it is not", "q", "d"]


@pytest.fixture(autouse=True)
def _quiet_tunekit():
    logging.getLogger("tunekit").setLevel(logging.ERROR)
    yield


@pytest.fixture(scope="session")
def en_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("en") / "tiny-en", texts(EN_PAIRS))


@pytest.fixture(scope="session")
def zh_ernie(tmp_path_factory):
    return make_tiny_model(
        tmp_path_factory.mktemp("zh") / "tiny-ernie-zh",
        texts(ZH_PAIRS),
        model_type="ernie",
        chinese=True,
    )


@pytest.fixture(scope="session")
def en_pairs():
    return list(EN_PAIRS)


@pytest.fixture(scope="session")
def zh_pairs():
    return list(ZH_PAIRS)


@pytest.fixture(scope="session")
def train_opts():
    return dict(TRAIN)
