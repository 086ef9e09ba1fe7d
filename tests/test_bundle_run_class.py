"""``Task.run_class``: ``tunekit.load()`` returns the Run subclass a task asks for."""

from __future__ import annotations

import tunekit
from tunekit.run import Run
from tunekit.testing import make_tiny_model

ROWS = [{"text": "a good film", "label": "pos"}, {"text": "a bad film", "label": "neg"}] * 4


class NotedRun(Run):
    """A Run subclass, as a plugin task (topics) would define."""

    def note(self) -> str:
        return f"{self.task.name} run"


def test_load_returns_the_tasks_run_class(tmp_path, monkeypatch):
    base = make_tiny_model(tmp_path / "base", [r["text"] for r in ROWS])
    run = tunekit.finetune(
        "classify",
        data=ROWS,
        model=base,
        strategy="frozen",
        epochs=1,
        eval_split=0,
        max_length=8,
        progress=False,
    )
    run.save(tmp_path / "bundle")
    assert type(tunekit.load(tmp_path / "bundle", device="cpu")) is Run  # default: Run itself
    task_cls = tunekit.get_task("classify")
    monkeypatch.setattr(task_cls, "run_class", NotedRun)
    loaded = tunekit.load(tmp_path / "bundle", device="cpu")
    assert isinstance(loaded, NotedRun) and loaded.note() == "classify run"
    assert loaded.predict("a good film")["label"] == run.predict("a good film")["label"]
