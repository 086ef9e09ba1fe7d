"""Crash safety: a training process SIGKILLed at a random point of a step and resumed in a
fresh process **resumes** — it runs exactly the optimizer steps left after its last
checkpoint, no more — and ends bitwise identical (final weights, history, metrics) to a
run that was never interrupted, for every strategy and every plugin task that trains; a
process killed while it writes a checkpoint or a bundle leaves the previous one loadable
and the partial one is never picked up.

Kills land in one of five phases of the loop — the forward pass, the backward pass, the
optimizer step, an evaluation, a checkpoint write — at a seeded occurrence, either on
entering the phase or after a seeded delay of a few milliseconds (so anywhere inside it,
or a little later). The child arms them through public torch hooks and wrappers of
accelerate / tunekit methods, then kills itself, so no test code lives in tunekit.
Kills that land before the first checkpoint are counted apart: their resume starts from
scratch. The optimizer steps of the resumed process are counted by a global
``torch.optim`` step hook, so a trainer that ignored ``resume=True`` and retrained from
scratch (deterministically, to the same weights) still fails here.

Every run happens in its own subprocess with one thread, so the reference, the killed and
the resumed runs see the same floating point order. The full matrix is ``slow``
(``nox -s reliability``); one representative case runs in the fast suite.
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
from tunekit.checkpoint import latest_checkpoint
from tunekit.errors import BundleError
from tunekit.testing import make_tiny_model

# ---- the child process -----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from pathlib import Path

    spec = json.loads(Path(sys.argv[1]).read_text())
    result = Path(sys.argv[2])
    marker = os.environ.get("MARKER")
    phase = os.environ.get("KILL_PHASE")
    kill_at = int(os.environ.get("KILL_AT", "0"))
    delay = float(os.environ.get("KILL_DELAY", "0"))
    hang_in_checkpoint = int(os.environ.get("HANG_IN_CHECKPOINT", "0"))

    import accelerate
    import torch
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook, register_optimizer_step_pre_hook,
    )
    import tunekit
    from tunekit import trainer as trainer_module

    def note(what):
        Path(marker + ".tmp").write_text(what)
        os.replace(marker + ".tmp", marker)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    seen = {"forward": 0, "backward": 0, "optimizer": 0, "evaluation": 0, "checkpoint": 0}
    optimizer_steps = [0]

    def enter(name):
        # the kill point: on entering the kill_at-th occurrence of the phase, either at once
        # or from a timer thread after `delay` seconds (anywhere in the phase, or later)
        seen[name] += 1
        if name == phase and seen[name] == kill_at:
            note(f"{name} #{kill_at} (+{delay * 1000:.0f} ms) at optimizer step {optimizer_steps[0]}")
            if delay:
                threading.Timer(delay, die).start()
            else:
                die()

    def counted(optimizer, args, kwargs):
        optimizer_steps[0] += 1

    register_optimizer_step_post_hook(counted)

    if phase:
        def forward_hook(module, args):
            if type(module).__name__ == "TaskModel" and module.training:
                enter("forward")

        register_module_forward_pre_hook(forward_hook)
        register_optimizer_step_pre_hook(
            lambda optimizer, args, kwargs: enter("optimizer")
        )

        def wrap(owner, name, phase_name):
            real = getattr(owner, name)

            def wrapper(*args, **kwargs):
                enter(phase_name)
                return real(*args, **kwargs)

            setattr(owner, name, wrapper)

        wrap(accelerate.Accelerator, "backward", "backward")
        wrap(accelerate.Accelerator, "save_state", "checkpoint")
        wrap(trainer_module.Trainer, "evaluate", "evaluation")

    if hang_in_checkpoint:
        # stall inside the n-th checkpoint once its optimizer state is written
        real_save_state = accelerate.Accelerator.save_state
        real_save = torch.save
        calls = [0]

        def save(obj, path, *args, **kwargs):
            real_save(obj, path, *args, **kwargs)
            if calls[0] == hang_in_checkpoint and str(path).endswith("optimizer.bin"):
                note(f"writing {path}")
                time.sleep(600)

        def save_state(self, *args, **kwargs):
            calls[0] += 1
            return real_save_state(self, *args, **kwargs)

        torch.save = save
        accelerate.Accelerator.save_state = save_state

    if spec.get("save_again"):
        # re-save the finished bundle over itself, stalling once the weights are written
        from safetensors import torch as st  # save_bundle imports save_file when it runs

        run = tunekit.load(spec["save_again"])
        real_save_file = st.save_file

        def save_file(tensors, filename, *args, **kwargs):
            real_save_file(tensors, filename, *args, **kwargs)
            note(f"writing {filename}")
            time.sleep(600)

        st.save_file = save_file
        run.save(spec["save_again"])
        sys.exit(3)  # never reached: the parent kills us first

    run = tunekit.finetune(
        spec["task"], data=spec["data"], model=spec["model"], strategy=spec["strategy"],
        **spec["options"],
    )
    if phase:  # the kill point was never reached, or a timer had not fired yet
        note("finished")
        die()
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in run.model.state_dict().items()}
    save_file(state, str(result / "weights.safetensors"))
    info = {k: v for k, v in run.history.info.items() if "seconds" not in k}
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in run.history.rows]
    (result / "history.json").write_text(
        json.dumps(
            {"rows": rows, "info": info, "metrics": run.metrics,
             "optimizer_steps": optimizer_steps[0]},
            sort_keys=True,
        )
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


def killed_itself(proc: subprocess.Popen, marker: Path) -> str:
    """Wait for a child that kills itself; returns where it was killed."""
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == -signal.SIGKILL, f"status {proc.returncode}:\n{out[-4000:]}"
    assert marker.exists(), out[-4000:]
    return marker.read_text()


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


def pair_cls_rows(n=40):
    return [{**row, "label": "same" if row["label"] else "other"} for row in pair_rows(n)]


def sts_rows(n=40):
    return [{**row, "label": 4.5 if row["label"] else 0.5} for row in pair_rows(n)]


def mlm_rows(n=40):
    return [{"text": row["text"]} for row in classify_rows(n)]


def qa_rows(n=40):
    rng = random.Random(3)
    rows = []
    for i in range(n):
        name = rng.choice(NAMES)
        words = rng.sample(FILLER, 4) + [name]
        rng.shuffle(words)
        context = " ".join(words)
        rows.append(
            {
                "id": f"q{i}",
                "question": "who is in the story ?",
                "context": context,
                "answers": {"text": [name], "answer_start": [context.index(name)]},
            }
        )
    return rows


#: 40 records, 20% held out → 32 training records, 8 batches of 4 per epoch, 3 epochs;
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

#: every strategy (on classify) and every plugin task that trains through the trainer;
#: topics is left out: its optional encoder adaptation keeps no checkpoints
CONFIGS = {
    "classify/full": ("classify", "full", classify_rows, {}),
    "classify/frozen": ("classify", "frozen", classify_rows, {"head": "mlp", "hidden": [16]}),
    "classify/lora": ("classify", "lora", classify_rows, {"r": 4}),
    "classify/layer-mix": ("classify", "layer-mix", classify_rows, {}),
    "classify/top-k": ("classify", "top-k", classify_rows, {"k": 1}),
    "classify/peft-ia3": ("classify", "peft", classify_rows, {"method": "ia3"}),
    "token-tagging/full": ("token-tagging", "full", tagging_rows, {}),
    "pair-sim/lora": ("pair-sim", "lora", pair_rows, {"r": 4}),
    "pair-cls/full": ("pair-cls", "full", pair_cls_rows, {}),
    "sts/top-k": ("sts", "top-k", sts_rows, {"k": 1}),
    "qa/full": ("qa", "full", qa_rows, {"max_length": 24}),
    "fill-mask/full": ("fill-mask", "full", mlm_rows, {}),
}
PHASES = ("forward", "backward", "optimizer", "evaluation", "checkpoint")
FAST_CASE = "classify/full-forward"


def kill_cases() -> list[tuple[str, str, str]]:
    """(config, phase, id): two kills per configuration, the phases taken in turn so each
    phase is hit about equally often across the matrix."""
    cases = []
    for i, config in enumerate(CONFIGS):
        for j in range(2):
            phase = PHASES[(2 * i + j) % len(PHASES)]
            cases.append((config, phase, f"{config}-{phase}"))
    return cases


def kill_point(config: str, phase: str, total_steps: int) -> tuple[int, float]:
    """The seeded occurrence of *phase* to kill at and the delay after entering it. One
    occurrence in four lands before the first checkpoint (step 3). Never the last epoch's
    evaluation or the last checkpoint, after which the run is as good as finished."""
    rng = random.Random(f"{config}/{phase}")
    early = rng.random() < 0.25
    if phase == "evaluation":  # one per epoch
        occurrence = rng.randint(1, TRAINING["epochs"] - 1)
    elif phase == "checkpoint":  # every 3 steps and at each epoch end
        occurrence = rng.randint(1, total_steps // TRAINING["checkpoint_steps"])
    else:  # once per step (forward / backward: once per batch, the same here)
        occurrence = rng.randint(1, 3) if early else rng.randint(4, total_steps - 2)
    delay = 0.0 if rng.random() < 0.3 else round(rng.uniform(0.001, 0.02), 4)
    return occurrence, delay


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from filelock import FileLock

    path = shared_dir(tmp_path_factory) / "tiny-bert"
    with FileLock(str(path) + ".lock"):
        if not (path / "config.json").exists():
            words = GOOD + BAD + FILLER + NAMES + ["who", "is", "in", "story"]
            make_tiny_model(path, [" ".join(words)])
    return str(path)


def spec_for(config: str, tiny: str, output_dir: Path, **extra) -> dict:
    task, strategy, rows, options = CONFIGS[config]
    return {
        "task": task,
        "strategy": strategy,
        "model": tiny,
        "data": rows(),
        "options": {**TRAINING, **options, "output_dir": str(output_dir), **extra},
    }


def shared_dir(tmp_path_factory) -> Path:
    """A directory of this test session that every xdist worker sees (``nox -s reliability``
    runs two workers), so each reference run is computed once."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module")
def references(tiny, tmp_path_factory):
    """The uninterrupted run of each configuration, computed once per session (the first
    worker to need it runs it, the other waits for it); its result and its ``output_dir``
    (holding its final bundle)."""
    from filelock import FileLock

    def get(config: str) -> tuple[dict, Path]:
        tmp = shared_dir(tmp_path_factory) / "references" / config.replace("/", "-")
        tmp.mkdir(parents=True, exist_ok=True)
        with FileLock(str(tmp) + ".lock"):
            if not (tmp / "ref" / "result" / "history.json").exists():
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                run_to_end(tmp, spec_for(config, tiny, tmp / "out"), "ref")
        return read_result(tmp / "ref" / "result"), tmp / "out"

    return get


def step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("config", "phase"),
    [
        pytest.param(
            config,
            phase,
            id=name,
            marks=() if name == FAST_CASE else (pytest.mark.slow,),
        )
        for config, phase, name in kill_cases()
    ],
)
def test_sigkill_anywhere_in_a_step_then_resume_runs_only_what_was_left(
    config, phase, tiny, references, tmp_path
):
    reference, _ = references(config)
    total = reference["optimizer_steps"]
    assert total == reference["rows"][-1]["step"]  # the hook counts what the trainer did
    out = tmp_path / "out"
    occurrence, delay = kill_point(config, phase, total)
    proc, _, marker = start(
        tmp_path,
        spec_for(config, tiny, out),
        "killed",
        KILL_PHASE=phase,
        KILL_AT=str(occurrence),
        KILL_DELAY=str(delay),
    )
    reached = killed_itself(proc, marker)
    assert reached != "finished", "the kill point was never reached"
    assert not (out / "bundle").exists()  # killed during training: no bundle yet
    resume_from = latest_checkpoint(out / "checkpoints")

    resumed = run_to_end(tmp_path, spec_for(config, tiny, out, resume=True), "resumed")
    # resumed, not retrained: exactly the optimizer steps after the checkpoint
    assert resumed["optimizer_steps"] == total - step_of(resume_from), (
        f"resumed from {resume_from} (step {step_of(resume_from)} of {total}) but ran "
        f"{resumed['optimizer_steps']} optimizer steps"
    )
    assert_identical(resumed, reference)
    assert tunekit.load(out / "bundle").metrics == reference["metrics"]
    # one line per case for the reliability report; kills before the first checkpoint
    # resume from scratch and are counted apart there
    print(
        f"KILL {config} phase={phase} killed_at='{reached}' "
        f"resumed_from={resume_from.name if resume_from else 'scratch(before first checkpoint)'} "
        f"steps_after_resume={resumed['optimizer_steps']}/{total} identical=yes"
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tiny, references, tmp_path):
    config = "classify/lora"
    reference, _ = references(config)
    out = tmp_path / "out"
    # checkpoints: step 3, 6, epoch end 8, 9, ... → the 3rd is the epoch-end one at step 8
    proc, _, marker = start(tmp_path, spec_for(config, tiny, out), "killed", HANG_IN_CHECKPOINT="3")
    reached = kill_when_reached(proc, marker)
    assert "optimizer.bin" in reached
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


# ---- several processes ------------------------------------------------------------------

DDP_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from accelerate.state import PartialState
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import tunekit

    spec = json.loads(Path(sys.argv[1]).read_text())
    result = Path(sys.argv[2])
    steps = [0]
    register_optimizer_step_post_hook(lambda *args: steps.__setitem__(0, steps[0] + 1))
    state = PartialState(cpu=True)
    run = tunekit.finetune(
        spec["task"], data=spec["data"], model=spec["model"], strategy=spec["strategy"],
        **spec["options"],
    )
    print(f"STEPS {state.process_index} {steps[0]}")
    if state.is_main_process:
        from safetensors.torch import save_file

        weights = {k: v.detach().clone().contiguous() for k, v in run.model.state_dict().items()}
        save_file(weights, str(result / "weights.safetensors"))
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in run.history.rows]
        (result / "history.json").write_text(json.dumps({"rows": rows, "metrics": run.metrics}))
    """
)


def torchrun(tmp: Path, spec: dict, name: str) -> tuple[dict, dict[int, int]]:
    """Run *spec* in two CPU processes; (rank 0's result, optimizer steps per rank)."""
    work = tmp / name
    (work / "result").mkdir(parents=True)
    (work / "child.py").write_text(DDP_CHILD)
    (work / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(work / "child.py"), str(work / "spec.json"), str(work / "result")],
        capture_output=True, text=True, timeout=900, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = {
        int(line.split()[1]): int(line.split()[2])
        for line in proc.stdout.splitlines()
        if line.startswith("STEPS ")
    }
    result = work / "result"
    return {
        "weights": load_file(str(result / "weights.safetensors")),
        **json.loads((result / "history.json").read_text()),
    }, steps


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_processes_resume_from_a_mid_epoch_checkpoint(tiny, tmp_path):
    """Under torchrun each process saves and restores its own random states (accelerate's
    ``random_states_<rank>.pkl``): a run resumed from a mid-epoch checkpoint runs only the
    steps left in each process and ends equal to the uninterrupted run."""
    out = tmp_path / "out"
    spec = spec_for("classify/full", tiny, out, keep_checkpoints=20)
    spec["options"]["keep_checkpoints_after_training"] = True
    reference, steps = torchrun(tmp_path, spec, "reference")
    total = reference["rows"][-1]["step"]
    assert steps == {0: total, 1: total}
    # 32 records in 2 processes: 4 steps per epoch; the step-6 checkpoint is mid-epoch 2
    kept = out / "checkpoints" / "checkpoint-00000006"
    assert {p.name for p in kept.iterdir()} >= {"random_states_0.pkl", "random_states_1.pkl"}
    for later in (out / "checkpoints").iterdir():
        if later.name > kept.name:
            shutil.rmtree(later)
    shutil.rmtree(out / "bundle")

    resumed, steps = torchrun(
        tmp_path, {**spec, "options": {**spec["options"], "resume": True}}, "resumed"
    )
    assert steps == {0: total - 6, 1: total - 6}
    assert all(
        torch.equal(resumed["weights"][k], reference["weights"][k]) for k in reference["weights"]
    )
    assert resumed["rows"] == reference["rows"] and resumed["metrics"] == reference["metrics"]
