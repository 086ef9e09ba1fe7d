"""``Task.run_class``: ``tunekit.finetune()`` returns the Run subclass a task asks for, as
``tunekit.load()`` does (the pair plugin's runs add ``encode()`` / ``similarity()``)."""

from __future__ import annotations

import tunekit
from tunekit.run import Run
from tunekit.testing import make_tiny_model

ROWS = [{"text": "a good film", "label": "pos"}, {"text": "a bad film", "label": "neg"}] * 4


class NotedRun(Run):
    """A Run subclass with one extra method."""

    def note(self) -> str:
        return f"{self.task.name} run"


def test_finetune_returns_the_tasks_run_class(tmp_path, monkeypatch):
    base = make_tiny_model(tmp_path / "base", [r["text"] for r in ROWS])
    opts = dict(
        data=ROWS,
        model=base,
        strategy="frozen",
        epochs=1,
        eval_split=0,
        max_length=8,
        progress=False,
    )
    assert type(tunekit.finetune("classify", **opts)) is Run  # default: Run itself
    monkeypatch.setattr(tunekit.get_task("classify"), "run_class", NotedRun)
    run = tunekit.finetune("classify", **opts)
    assert isinstance(run, NotedRun) and run.note() == "classify run"
    assert run.predict("a good film")["label"] in ("pos", "neg")
