"""Crash safety: a training process killed with SIGKILL at a random step and resumed in a
fresh process ends bitwise identical (final weights, history, metrics) to a run that was
never interrupted — for every strategy and for plugin tasks; a process killed while it
writes a checkpoint or a bundle leaves the previous one loadable and the partial one is
never picked up.

Every run happens in its own subprocess with one thread, so the reference, the killed and
the resumed runs see the same floating point order. The full matrix (7 configurations ×
3 kill points) is ``slow`` (``nox -s reliability``); one representative case runs in the
fast suite.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tunekit
from tunekit.bundle import find_bundle
from tunekit.errors import BundleError
from tunekit.testing import make_tiny_model
from tunekit.trainer import latest_checkpoint

# ---- the child process -----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    spec = json.loads(Path(sys.argv[1]).read_text())
    result = Path(sys.argv[2])
    marker = os.environ.get("MARKER")
    kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
    hang_in_checkpoint = int(os.environ.get("HANG_IN_CHECKPOINT", "0"))

    import torch
    import tunekit
    from tunekit import trainer as trainer_module


    def reached(what):
        # tell the parent where we are, then stall so its SIGKILL lands here or a bit later
        Path(marker + ".tmp").write_text(what)
        os.replace(marker + ".tmp", marker)
        time.sleep(float(os.environ.get("STALL", "0.25")))


    if kill_at:
        real_forward = trainer_module.Trainer._forward
        steps = [0]

        def forward(self, model, batch, features, index):
            out = real_forward(self, model, batch, features, index)
            if model.training:
                steps[0] += 1
                if steps[0] >= kill_at:
                    reached(f"step {steps[0]}")
            return out

        trainer_module.Trainer._forward = forward

    if hang_in_checkpoint:
        # stall inside the n-th checkpoint, after some of its files are written
        real_checkpoint = trainer_module.Trainer._checkpoint
        real_save = torch.save
        calls = [0]

        def save(obj, path, *args, **kwargs):
            real_save(obj, path, *args, **kwargs)
            if calls[0] == hang_in_checkpoint and str(path).endswith("optimizer.pt"):
                reached(f"writing {path}")
                time.sleep(600)

        def checkpoint(self, *args, **kwargs):
            calls[0] += 1
            return real_checkpoint(self, *args, **kwargs)

        torch.save = save
        trainer_module.Trainer._checkpoint = checkpoint

    if spec.get("save_again"):
        # re-save the finished bundle over itself, stalling once the weights are written
        from safetensors import torch as st  # save_bundle imports save_file when it runs

        run = tunekit.load(spec["save_again"])
        real_save_file = st.save_file

        def save_file(tensors, filename, *args, **kwargs):
            real_save_file(tensors, filename, *args, **kwargs)
            reached(f"writing {filename}")
            time.sleep(600)

        st.save_file = save_file
        run.save(spec["save_again"])
        sys.exit(3)  # never reached: the parent kills us first

    run = tunekit.finetune(
        spec["task"], data=spec["data"], model=spec["model"], strategy=spec["strategy"],
        **spec["options"],
    )
    if kill_at:  # a parent starved of CPU must still find us alive
        reached("finished")
        time.sleep(600)
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in run.model.state_dict().items()}
    save_file(state, str(result / "weights.safetensors"))
    info = {k: v for k, v in run.history.info.items() if "seconds" not in k}
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in run.history.rows]
    (result / "history.json").write_text(
        json.dumps({"rows": rows, "info": info, "metrics": run.metrics}, sort_keys=True)
    )
    """
)

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",
}


def start(tmp: Path, spec: dict, name: str, **env: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start the child on *spec*; returns (process, result dir, marker file)."""
    work = tmp / name
    work.mkdir(parents=True)
    (work / "child.py").write_text(CHILD)
    (work / "spec.json").write_text(json.dumps(spec))
    result = work / "result"
    result.mkdir()
    marker = work / "marker"
    proc = subprocess.Popen(
        [sys.executable, str(work / "child.py"), str(work / "spec.json"), str(result)],
        env={**ENV, "MARKER": str(marker), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, result, marker


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]


def run_to_end(tmp: Path, spec: dict, name: str) -> dict:
    proc, result, _ = start(tmp, spec, name)
    finish(proc)
    return read_result(result)


def kill_when_reached(proc: subprocess.Popen, marker: Path) -> str:
    """SIGKILL *proc* as soon as it writes *marker*; returns what it had reached."""
    deadline = time.monotonic() + 900
    while not marker.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(
                f"child ended (status {proc.returncode}) before the kill point:\n{out[-4000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("child never reached the kill point")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


def read_result(result: Path) -> dict:
    return {
        "weights": load_file(str(result / "weights.safetensors")),
        **json.loads((result / "history.json").read_text()),
    }


def assert_identical(resumed: dict, reference: dict) -> None:
    a, b = resumed["weights"], reference["weights"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ after resume: {differing[:5]}"
    assert resumed["rows"] == reference["rows"]
    assert resumed["info"] == reference["info"]
    assert resumed["metrics"] == reference["metrics"]


def checkpoints(output_dir: Path) -> list[str]:
    root = output_dir / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# ---- configurations ---------------------------------------------------------------------

GOOD = ["good", "great", "fine", "superb", "lovely", "wonderful"]
BAD = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "film", "was", "a", "plot", "cast", "story", "really"]
NAMES = ["john", "mary", "anna", "paris", "london", "berlin", "acme"]


def classify_rows(n=40):
    rng = random.Random(0)
    rows = []
    for i in range(n):
        words = rng.sample(GOOD if i % 2 else BAD, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "pos" if i % 2 else "neg"})
    return rows


def tagging_rows(n=40):
    rng = random.Random(1)
    rows = []
    for _ in range(n):
        tokens = rng.sample(FILLER, 3) + [rng.choice(NAMES)] + rng.sample(FILLER, 2)
        rng.shuffle(tokens)
        tags = ["B-ENT" if t in NAMES else "O" for t in tokens]
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def pair_rows(n=40):
    rng = random.Random(2)
    rows = []
    for i in range(n):
        a = " ".join(rng.sample(GOOD + FILLER, 4))
        b = a if i % 2 else " ".join(rng.sample(BAD + FILLER, 4))
        rows.append({"text_a": a, "text_b": b, "label": i % 2})
    return rows


#: 40 records, 20% held out → 32 training records, 8 batches per epoch, 3 epochs: 24 steps;
#: checkpoints every 3 steps and at each epoch end, the last 2 kept.
TRAINING = dict(
    epochs=3,
    batch_size=4,
    learning_rate=5e-3,
    max_length=16,
    eval_split=0.2,
    checkpoint_steps=3,
    keep_checkpoints=2,
    progress=False,
    seed=7,
)
TOTAL_STEPS = 24

CONFIGS = {
    "classify/full": ("classify", "full", classify_rows, {}),
    "classify/frozen": ("classify", "frozen", classify_rows, {"head": "mlp", "hidden": [16]}),
    "classify/lora": ("classify", "lora", classify_rows, {"r": 4}),
    "classify/layer-mix": ("classify", "layer-mix", classify_rows, {}),
    "classify/top-k": ("classify", "top-k", classify_rows, {"k": 1}),
    "token-tagging/full": ("token-tagging", "full", tagging_rows, {}),
    "pair-sim/lora": ("pair-sim", "lora", pair_rows, {"r": 4}),
}
SEEDS = (0, 1, 2)
FAST_CASE = ("classify/full", 0)


def kill_step(config: str, seed: int) -> int:
    """The training step (1..TOTAL_STEPS-2) at which this case's child is killed."""
    return random.Random(f"{config}/{seed}").randint(1, TOTAL_STEPS - 2)


def cases() -> list:
    return [
        pytest.param(
            config,
            seed,
            id=f"{config}-seed{seed}",
            marks=() if (config, seed) == FAST_CASE else (pytest.mark.slow,),
        )
        for config in CONFIGS
        for seed in SEEDS
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    words = GOOD + BAD + FILLER + NAMES
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [" ".join(words)])


def spec_for(config: str, tiny: str, output_dir: Path, **extra) -> dict:
    task, strategy, rows, options = CONFIGS[config]
    return {
        "task": task,
        "strategy": strategy,
        "model": tiny,
        "data": rows(),
        "options": {**TRAINING, **options, "output_dir": str(output_dir), **extra},
    }


@pytest.fixture(scope="module")
def references(tiny, tmp_path_factory):
    """The uninterrupted run of each configuration, computed once; its result and its
    ``output_dir`` (holding its final bundle)."""
    cache: dict[str, tuple[dict, Path]] = {}

    def get(config: str) -> tuple[dict, Path]:
        if config not in cache:
            tmp = tmp_path_factory.mktemp("reference")
            result = run_to_end(tmp, spec_for(config, tiny, tmp / "out"), "ref")
            cache[config] = result, tmp / "out"
        return cache[config]

    return get


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("config", "seed"), cases())
def test_sigkill_at_a_random_step_then_resume_is_bitwise_identical(
    config, seed, tiny, references, tmp_path
):
    reference, _ = references(config)
    out = tmp_path / "out"
    step = kill_step(config, seed)
    proc, _, marker = start(tmp_path, spec_for(config, tiny, out), "killed", KILL_AT_STEP=str(step))
    reached = kill_when_reached(proc, marker)
    left = checkpoints(out)
    if reached != "finished":  # killed during training: no bundle yet
        assert not (out / "bundle").exists()

    resumed = run_to_end(tmp_path, spec_for(config, tiny, out, resume=True), "resumed")
    assert_identical(resumed, reference)
    # one line per case for the reliability report
    complete = [c for c in left if not c.startswith(".")]
    print(
        f"KILL {config} seed={seed} killed_after='{reached}' "
        f"resumed_from={complete[-1] if complete else 'scratch'} identical=yes"
    )
    assert tunekit.load(out / "bundle").metrics == reference["metrics"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tiny, references, tmp_path):
    config = "classify/lora"
    reference, _ = references(config)
    out = tmp_path / "out"
    # checkpoints: step 3, 6, epoch end 8, 9, ... → the 3rd is the epoch-end one at step 8
    proc, _, marker = start(tmp_path, spec_for(config, tiny, out), "killed", HANG_IN_CHECKPOINT="3")
    reached = kill_when_reached(proc, marker)
    assert "optimizer.pt" in reached
    names = checkpoints(out)
    partial = [n for n in names if n.endswith(".partial")]
    complete = [n for n in names if not n.startswith(".")]
    assert len(partial) == 1 and partial[0].startswith(".checkpoint-00000008.")
    assert complete == ["checkpoint-00000003", "checkpoint-00000006"]

    assert (
        latest_checkpoint(out / "checkpoints").name == "checkpoint-00000006"
    )  # the partial one is never picked up

    resumed = run_to_end(tmp_path, spec_for(config, tiny, out, resume=True), "resumed")
    assert_identical(resumed, reference)
    # the stale partial directory was cleared by the resumed run's next checkpoint
    assert not [n for n in checkpoints(out) if n.endswith(".partial")]


@pytest.mark.timeout(1800)
def test_sigkill_while_saving_a_bundle_keeps_the_previous_one(tiny, references, tmp_path):
    reference, finished = references("classify/full")
    # the finished run's bundle, overwritten by a process killed half-way through the write
    out = tmp_path / "out"
    shutil.copytree(finished / "bundle", out / "bundle")
    bundle = out / "bundle"
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}

    proc, _, marker = start(tmp_path, {"save_again": str(bundle)}, "killed-save")
    reached = kill_when_reached(proc, marker)
    assert "model.safetensors" in reached and ".partial" in reached
    partial = [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and (partial[0] / "model.safetensors").is_file()

    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    assert find_bundle(out) == bundle
    loaded = tunekit.load(bundle)
    assert loaded.metrics == reference["metrics"]
    with pytest.raises(BundleError, match="manifest.json is missing"):
        tunekit.load(partial[0])
