""":class:`TopicRun`: a fitted topic model — topic table, topics of new documents, plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunekit.plugin import ConfigError, DataError, Run


class TopicRun(Run):
    """What ``finetune(task="topics", ...)`` and ``tunekit.load()`` of its bundle return.

    A :class:`tunekit.Run` (``history``, ``metrics``, ``save()``, ``predict()``) plus
    the BERTopic-style surface: ``topics_``, ``probabilities_``, ``topic_info()``,
    ``get_topic()``, ``transform()``, ``plot_topics()`` (2D map) and ``plot_barchart()``;
    ``plot()`` is the learning curve of the encoder adaptation (``adapt=``), as for any run.

    Example::

        run = tunekit.finetune(task="topics", data=docs)
        run.topic_info()                      # Topic, Count, Name, Representation, Representative_Docs
        topics, probs = run.transform(["GPU prices fell again"])
        run.plot_topics("map.png"); run.plot_barchart("topics.png")
        run.save("out/topics"); tunekit.load("out/topics").transform([...])
    """

    #: the fitted documents and their embeddings (in memory after fitting; not in bundles)
    documents: list[str] | None = None
    embeddings: np.ndarray | None = None

    @property
    def _topics(self) -> dict[str, Any]:
        return self.task.topics

    @property
    def topics_(self) -> list[int]:
        """The topic of each fitted document (-1: outlier), in input order."""
        return self.model.head.doc_topics.cpu().tolist()

    @property
    def probabilities_(self) -> np.ndarray:
        """Each fitted document's probability of its topic (0 for outliers)."""
        return self.model.head.doc_probabilities.cpu().numpy()

    @property
    def topic_ids(self) -> list[int]:
        """Topic ids, -1 (outliers) first when there are any, then 0, 1, … by size."""
        return list(self._topics["ids"])

    def get_topic(self, topic: int) -> list[tuple[str, float]]:
        """Top words of *topic* with their c-TF-IDF scores."""
        if topic not in self._topics["ids"]:
            raise ConfigError(f"there is no topic {topic}; topics are {self._topics['ids']}")
        return [
            (w, float(s))
            for w, s in self._topics["representation"][self._topics["ids"].index(topic)]
        ]

    def topic_info(self):
        """The topic table as a pandas DataFrame: ``Topic``, ``Count``, ``Name``,
        ``Representation`` (top words) and ``Representative_Docs``."""
        import pandas as pd

        t = self._topics
        rows = [
            {
                "Topic": topic,
                "Count": count,
                "Name": name,
                "Representation": [w for w, _ in words],
                "Representative_Docs": list(t["representative_docs"].get(str(topic), [])),
            }
            for topic, count, name, words in zip(
                t["ids"], t["counts"], t["names"], t["representation"]
            )
        ]
        return pd.DataFrame(
            rows, columns=["Topic", "Count", "Name", "Representation", "Representative_Docs"]
        )

    def transform(
        self, documents: str | Sequence[str], *, batch_size: int | None = None
    ) -> tuple[list[int], np.ndarray]:
        """``(topics, probabilities)`` of unseen *documents*: the most similar topic embedding
        (-1 when less similar than any fitted member, for HDBSCAN without
        ``reduce_outliers``) and its softmax probability."""
        if isinstance(documents, str):
            documents = [documents]
        predictions = self.predict(list(documents), batch_size=batch_size)
        return [p["topic"] for p in predictions], np.array(
            [p["probability"] for p in predictions], dtype=np.float32
        )

    def embed(self, documents: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Mean-pooled embeddings of *documents* from this run's (possibly adapted) encoder."""
        from .task import embed

        records = self.task.parse_inputs(list(documents))
        training = self.training if batch_size is None else _with_batch(self.training, batch_size)
        return embed(
            self.model,
            self.task,
            self.tokenizer,
            records,
            training=training,
            precision=self.precision,
        )

    def evaluate(self, data: Any, *, batch_size: int | None = None) -> dict[str, float]:
        """Quality of the topics on other documents *data*: ``npmi`` of the topics' top words
        with *data* as the reference corpus, ``diversity``, and the ``outlier_share`` of
        *data* under :meth:`transform`."""
        from sklearn.feature_extraction.text import CountVectorizer

        from .coherence import npmi_from_matrix, topic_diversity
        from .pipeline import make_vectorizer

        texts = [r["text"] for r in self.task.read(data, name="data")]
        cfg = self.task.config
        vocab = self._topics["vocabulary"]
        base = make_vectorizer(
            language=cfg.language,
            stop_words=cfg.stop_words,
            ngram_range=cfg.ngram_range,
            min_df=1,
            texts=texts,
        )
        vectorizer = CountVectorizer(
            **{**base.get_params(), "vocabulary": {w: i for i, w in enumerate(vocab)}, "min_df": 1}
        )
        matrix = vectorizer.transform(texts)
        index = {w: i for i, w in enumerate(vocab)}
        tops = [
            [index[w] for w, _ in words]
            for t, words in zip(self._topics["ids"], self._topics["representation"])
            if t != -1
        ]
        topics, _ = self.transform(texts, batch_size=batch_size)
        return {
            "npmi": npmi_from_matrix(tops, matrix),
            "diversity": topic_diversity([[vocab[i] for i in words] for words in tops]),
            "outlier_share": float(np.mean(np.asarray(topics) == -1)),
        }

    def topic_labels(self, *, words: int = 3) -> dict[int, str]:
        """``{topic: "3: gpu, card, driver"}`` for plots."""
        return {
            t: f"{t}: " + ", ".join(w for w, _ in rep[:words])
            for t, rep in zip(self._topics["ids"], self._topics["representation"])
            if t != -1
        }

    def plot_topics(
        self, path: str | os.PathLike, *, title: str | None = None, words: int = 3
    ) -> str:
        """Draw the 2D map of the fitted documents coloured by topic, each topic's label at
        its centroid, to *path* (PNG/SVG/PDF by extension). (``run.plot()`` draws the
        learning curve of the encoder adaptation, as for every run.)

        Example::

            run.plot_topics("plots/topic_map.png")
        """
        coords = self.model.head.doc_coords.cpu().numpy()
        if not len(coords):
            raise DataError("this run holds no fitted documents to draw")
        from .plots import plot_topic_map

        method = self._topics.get("map_reduction", "pca").upper()
        return plot_topic_map(
            coords,
            self.topics_,
            self.topic_labels(words=words),
            path,
            title=title
            or f"{len(coords)} documents, {len([t for t in self.topic_ids if t != -1])} topics ({method} 2D)",
        )

    def plot_barchart(
        self, path: str | os.PathLike, *, top_n_topics: int = 8, n_words: int = 5
    ) -> str:
        """Bar charts of the top *n_words* (c-TF-IDF scores) of the *top_n_topics* largest topics."""
        from .plots import plot_topic_barchart

        chosen = [t for t in self.topic_ids if t != -1][:top_n_topics]
        return plot_topic_barchart([(t, self.get_topic(t)[:n_words]) for t in chosen], path)


def _with_batch(training, batch_size: int):
    import attrs

    return attrs.evolve(training, eval_batch_size=batch_size)
