"""Two CPU processes under torchrun: training completes, evaluation counts every example
once, only the main process writes the bundle, and its metrics match a single-process
evaluation of the saved model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import tunekit

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from accelerate.state import PartialState
    import tunekit
    from tunekit.testing import make_tiny_model

    state = PartialState(cpu=True)
    root = sys.argv[1]
    texts = [f"good film {i}" for i in range(30)] + [f"bad film {i}" for i in range(30)]
    if state.is_main_process:
        make_tiny_model(root + "/tiny", texts)
    state.wait_for_everyone()
    data = [{"text": t, "label": t.split()[0]} for t in texts]
    run = tunekit.finetune(task="classify", model=root + "/tiny", data=data, eval_data=data[::3],
                           epochs=2, batch_size=4, learning_rate=1e-3, max_length=16)
    run.save(root + "/bundle")
    print("RESULT " + json.dumps({"rank": state.process_index, "metrics": run.metrics,
                                  "processes": run.history.info["processes"]}))
    """
)


@pytest.mark.timeout(600)
def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [
        json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert all(r["processes"] == 2 for r in results)
    assert results[0]["metrics"] == results[1]["metrics"]
    # Only one bundle, complete and verified.
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    loaded = tunekit.load(tmp_path / "bundle")
    texts = [f"good film {i}" for i in range(30)] + [f"bad film {i}" for i in range(30)]
    data = [{"text": t, "label": t.split()[0]} for t in texts]
    single = loaded.evaluate(data[::3])
    for key, value in results[0]["metrics"].items():
        assert single[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.timeout(600)
def test_torchrun_cli_with_an_evaluation_set_smaller_than_one_batch(tmp_path):
    """``torchrun -m tunekit finetune`` (the documented command) where the held-out set is a
    single batch, so one process has no evaluation batch at all: evaluation must not run
    a collective per batch (it hung when it went through the DDP wrapper)."""
    from tunekit.testing import make_tiny_model

    texts = [f"good film {i}" for i in range(30)] + [f"bad film {i}" for i in range(30)]
    tiny = make_tiny_model(tmp_path / "tiny", texts)
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{t},{t.split()[0]}\n" for t in texts))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tunekit",
         "finetune", "--task", "classify", "--data", str(data), "--model", tiny,
         "--output", str(tmp_path / "bundle"), "--epochs", "2", "--batch-size", "4",
         "--max-length", "16", "--no-progress"],
        capture_output=True, text=True, timeout=540,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # only rank 0 reports: one table, one metrics line, one "saved bundle"
    assert len([line for line in lines if line.startswith("metrics: ")]) == 1
    assert len([line for line in lines if line.startswith("saved bundle: ")]) == 1
    assert len([line for line in lines if line.lstrip().startswith("epoch ")]) == 1
    loaded = tunekit.load(tmp_path / "bundle")
    assert loaded.history.info["processes"] == 2
    assert len(loaded.history) == 2
