"""The topic-modeling corpora fetchers (download from PyPI: slow)."""

from __future__ import annotations

import corpora
import pytest


@pytest.mark.slow
def test_mini_newsgroup():
    posts = corpora.mini_newsgroup()
    assert len(posts) == 200
    assert {p["label"] for p in posts} == {"alt.atheism", "sci.space"}
    assert not any(p["text"].startswith(("Newsgroups:", "From:", "Path:")) for p in posts)
    raw = corpora.mini_newsgroup(strip_headers=False)
    assert raw[0]["text"].startswith("Newsgroups:")


@pytest.mark.slow
def test_news_articles():
    articles = corpora.news_articles()
    assert len(articles) == 3788
    assert all(a["text"] for a in articles)
    assert "DeVos" in articles[0]["title"]
