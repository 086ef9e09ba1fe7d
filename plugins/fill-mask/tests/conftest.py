import logging

import pytest

from tunekit.testing import make_tiny_model

ZH_TEMPLATES = [
    "{}是一位著名的工程师",
    "我昨天在北京见到了{}",
    "{}喜欢读书和写字",
    "大家都认识{}",
    "{}在大学里教数学",
    "{}今天去了上海",
]
ZH_FACTS = [
    "巴黎是法国的首都",
    "北京是中国的首都",
    "东京是日本的首都",
    "今天天气很好",
    "我们一起去公园散步",
]
ZH_CORPUS = [t.format("诸葛涛") for t in ZH_TEMPLATES] * 4 + ZH_FACTS * 4

EN_CORPUS = [
    "the capital of france is paris .",
    "the capital of italy is rome .",
    "the capital of spain is madrid .",
    "the cat sat on the mat .",
    "the dog slept on the rug .",
    "a good film with a great cast .",
    "a bad film with a weak plot .",
    "we walked to the park in the morning .",
] * 3


@pytest.fixture(autouse=True)
def _quiet_tunekit():
    logging.getLogger("tunekit").setLevel(logging.ERROR)
    yield


@pytest.fixture(scope="session")
def zh_model(tmp_path_factory):
    return make_tiny_model(
        tmp_path_factory.mktemp("zh") / "tiny-zh", ZH_CORPUS, chinese=True, hidden_size=64
    )


@pytest.fixture(scope="session")
def en_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("en") / "tiny-en", EN_CORPUS, hidden_size=32)


@pytest.fixture(scope="session")
def zh_corpus():
    return list(ZH_CORPUS)


@pytest.fixture(scope="session")
def en_corpus():
    return list(EN_CORPUS)
