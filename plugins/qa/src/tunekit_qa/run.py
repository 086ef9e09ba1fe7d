"""``QARun``: a :class:`tunekit.Run` that can tune the unanswerable-question threshold."""

from __future__ import annotations

from typing import Any

from tunekit.plugin import ConfigError, Run, predict_records


class QARun(Run):
    """The run of a ``qa`` model (what ``finetune()`` and ``tunekit.load()`` return).

    Example::

        run = tunekit.finetune(task="qa", data="train-v2.0.json", allow_unanswerable=True)
        run.tune_threshold("dev-v2.0.json")
        # {'null_threshold': -1.7, 'f1': 0.71, 'exact': 0.68}
        run.predict({"question": "Who?", "context": "Nobody is named here."})
        # {'answer': '', 'score': 0.8, 'start': 0, 'end': 0, 'null_score_diff': 3.1, 'best_span': {...}}
    """

    def tune_threshold(
        self, data: Any, *, metric: str = "f1", batch_size: int | None = None
    ) -> dict[str, float]:
        """Set the null-score threshold (saved with the run) to the value that maximises
        *metric* (``f1`` or ``exact``) on labelled *data*; returns the threshold and the
        exact / F1 the run now gets on *data*."""
        if not self.task.config.allow_unanswerable:
            raise ConfigError(
                "tune_threshold() needs a model trained with allow_unanswerable=True (SQuAD 2.0 style); "
                "this one always answers"
            )
        if metric not in ("f1", "exact"):
            raise ConfigError(f"tune_threshold(metric={metric!r}): use 'f1' or 'exact'")
        records = self.task.read(data, name="data")
        predictions, _ = predict_records(self, records, batch_size=batch_size)
        found = self.task.threshold_search(predictions, records)
        key = "best_null_threshold" if metric == "f1" else "best_exact_null_threshold"
        self.task.null_threshold = float(found[key])
        predictions, _ = predict_records(self, records, batch_size=batch_size)
        scores = self.task.metrics(predictions, records)
        return {
            "null_threshold": self.task.null_threshold,
            "exact": scores["exact"],
            "f1": scores["f1"],
        }
