"""The speed features give the same results: bf16 autocast close to fp32, fused AdamW equal
to the plain loop, compiled equal to eager (and a failing compiler falls back), the loss
read back only every ``logging_steps`` without changing the history, predict's length
sorting restores the input order, SDPA attention, the thread-count default. No timings
here: speed is measured in benchmarks/."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import tunekit
from tunekit import hardware
from tunekit import trainer as trainer_module
from tunekit.classify import ClassifyTask
from tunekit.errors import ConfigError, TrainingError
from tunekit.testing import make_tiny_model

GOOD = ["good", "great", "fine", "superb", "lovely", "wonderful"]
BAD = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "film", "was", "a", "plot", "cast", "story", "really", "and", "it"]
FAST = dict(max_length=32, batch_size=8, learning_rate=2e-3, warmup_ratio=0.0, progress=False)


def rows(n=48, seed=0, long_every=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(GOOD if i % 2 else BAD, 3) + rng.sample(FILLER, 3)
        if long_every and i % long_every == 0:
            words += rng.choices(FILLER, k=14)  # mixed lengths
        rng.shuffle(words)
        out.append({"text": " ".join(words), "label": "pos" if i % 2 else "neg"})
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(
        tmp_path_factory.mktemp("tiny") / "bert", [" ".join(GOOD + BAD + FILLER)]
    )


@pytest.fixture(autouse=True)
def _fresh_plugins():
    tunekit.plugins.reset()


def weights(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def accuracy(run, data):
    predicted = run.predict([r["text"] for r in data])
    return sum(p["label"] == r["label"] for p, r in zip(predicted, data)) / len(data)


# ---- precision ---------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_is_close_to_fp32(tiny):
    train, test = rows(64, seed=0, long_every=3), rows(32, seed=1, long_every=3)
    common = dict(task="classify", data=train, model=tiny, epochs=4, eval_data=test, **FAST)
    fp32 = tunekit.finetune(precision="fp32", **common)
    bf16 = tunekit.finetune(precision="bf16", **common)
    assert bf16.history.info["precision"] == "bf16" and bf16.precision == "bf16"
    loss32, loss16 = fp32.history.column("train_loss"), bf16.history.column("train_loss")
    # it learns: measured over seeds 1, 2, 3, 42 the last epoch's loss is 0.39–0.51× the
    # first's (fp32 and bf16 alike); an untrained or broken bf16 path stays near 1×
    assert loss16[-1] < loss16[0] * 0.6
    assert abs(loss16[-1] - loss32[-1]) <= 0.1 * loss32[0]
    acc32, acc16 = accuracy(fp32, test), accuracy(bf16, test)
    assert acc32 > 0.8 and abs(acc32 - acc16) <= 2 / len(test)
    # the weights stay fp32 (autocast computes in bf16, the optimizer updates fp32 masters)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    # bf16 predict runs under autocast too and agrees with the trained model's own eval
    assert bf16.evaluate(test)["accuracy"] == pytest.approx(acc16)
    # the trainer's autocast was a context of its steps: the model handed back, called
    # directly, is the fp32 network (a forward left wrapped in autocast would differ)
    batch = dict(bf16.tokenizer([r["text"] for r in test[:8]], padding=True, return_tensors="pt"))
    with torch.no_grad():
        direct = bf16.model(batch)["logits"]
        plain = type(bf16.model).forward(bf16.model, batch)["logits"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_bf16 = bf16.model(batch)["logits"].float()
    assert direct.dtype == torch.float32 and torch.equal(direct, plain)
    assert not torch.equal(direct, under_bf16)


def test_bf16_on_a_cpu_without_native_support_warns(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert trainer_module.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert trainer_module.resolve_precision("auto", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cpu_is_bf16_where_the_cpu_has_it_natively(
    tiny, monkeypatch, caplog, tmp_path, native
):
    # the rule: bf16 on a CPU with AMX / AVX512-BF16 (measured faster at equal accuracy,
    # docs/benchmarks.md), fp32 on one without (emulated bf16 is slower)
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    expected = "bf16" if native else "fp32"
    assert trainer_module.resolve_precision("auto", torch.device("cpu")) == expected
    caplog.set_level("INFO", logger="tunekit")
    run = tunekit.finetune(task="classify", data=rows(16), model=tiny, epochs=1, **FAST)
    assert run.training.precision == "auto"  # the default, resolved per machine
    assert run.precision == run.history.info["precision"] == expected
    said = [r.getMessage() for r in caplog.records if "precision='auto'" in r.getMessage()]
    assert len(said) == 1 and f"→ {expected}" in said[0]
    assert ("natively" in said[0]) is native
    # an explicit choice is never overridden
    assert trainer_module.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    # the bundle is loaded where bf16 is native or not: "auto" is resolved again there
    run.save(tmp_path / "bundle")
    assert tunekit.load(tmp_path / "bundle").precision == expected
    monkeypatch.setattr(hardware, "native_bf16", lambda: not native)
    assert tunekit.load(tmp_path / "bundle").precision == ("fp32" if native else "bf16")


# ---- optimizer -----------------------------------------------------------------------------


def test_fused_adamw_is_used_and_equals_the_plain_loop():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 3))
    b = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 3))
    b.load_state_dict(a.state_dict())
    fused = trainer_module._adamw([{"params": list(a.parameters()), "weight_decay": 0.01}], lr=1e-2)
    plain = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    for _ in range(10):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a[0].weight, torch.nn.Linear(16, 32).weight)  # it did train


# ---- compile -------------------------------------------------------------------------------


def test_compile_gives_the_eager_result(tiny):
    data = rows(24)  # one length, so one graph (a new shape would trace again: slow)
    # fp32: compiled and eager agree to float precision (under bf16 autocast, the default on
    # a CPU with AMX, fused and unfused kernels round differently)
    common = dict(
        task="classify", data=data, model=tiny, epochs=1, eval_split=0, seed=3,
        precision="fp32", **FAST,
    )  # fmt: skip
    eager = tunekit.finetune(**common)
    # aot_eager traces forward and backward like inductor, without needing a C++ compiler
    compiled = tunekit.finetune(compile="aot_eager", **common)
    assert compiled.history.info["compiled"] is True
    a, b = weights(eager), weights(compiled)
    assert a.keys() == b.keys()  # compiling in place keeps the state-dict names
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_a_failing_compiler_warns_and_trains_eagerly(tiny):
    from torch._dynamo import register_backend

    @register_backend(name="tunekit_test_broken")
    def broken(gm, example_inputs):  # noqa: ARG001
        raise RuntimeError("no compiler here")

    data = rows(24)
    common = dict(task="classify", data=data, model=tiny, epochs=1, eval_split=0, seed=3, **FAST)
    eager = tunekit.finetune(**common)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler here"):
        fallback = tunekit.finetune(compile="tunekit_test_broken", **common)
    assert fallback.history.info["compiled"] is False
    a, b = weights(eager), weights(fallback)
    # the failed attempt left no trace: same dropout draws, no stale gradients
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("value", [3, "", None])
def test_compile_option_is_validated(value):
    with pytest.raises(ConfigError, match="compile"):
        tunekit.TrainingConfig(compile=value)


# ---- host synchronisation ------------------------------------------------------------------


def test_loss_is_read_back_only_every_logging_steps_with_the_same_history(tiny, monkeypatch):
    reads = []
    value = trainer_module._RunningLoss.value

    def counted(self):
        reads.append(1)
        return value(self)

    monkeypatch.setattr(trainer_module._RunningLoss, "value", counted)
    data = rows(48)  # 6 batches per epoch, 2 epochs: 12 optimizer steps
    common = dict(task="classify", data=data, model=tiny, epochs=2, eval_split=0, **FAST)
    rare = tunekit.finetune(logging_steps=1000, **common)
    assert len(reads) == 2  # once per epoch, for the history row
    reads.clear()
    often = tunekit.finetune(logging_steps=1, **common)
    assert len(reads) == 12 + 2
    assert rare.history.column("train_loss") == often.history.column("train_loss")


def test_deferred_nan_check_names_the_steps(tiny, monkeypatch):
    # On a GPU the NaN check waits for the next loss read; force that path on CPU.
    monkeypatch.setattr(trainer_module, "_check_each_step", lambda device, on_nan: False)
    real, counter = ClassifyTask.loss, itertools.count(1)

    def loss(self, outputs, batch):
        value = real(self, outputs, batch)
        return value * float("nan") if next(counter) == 3 else value

    monkeypatch.setattr(ClassifyTask, "loss", loss)
    with pytest.raises(TrainingError, match=r"loss became nan between global steps 0 and 4"):
        tunekit.finetune(
            task="classify", data=rows(32), model=tiny, epochs=1, eval_split=0, logging_steps=4,
            **FAST,
        )  # fmt: skip


# ---- inference -----------------------------------------------------------------------------


def test_predict_sorts_by_length_and_restores_the_input_order(tiny):
    data = rows(40, long_every=3)
    run = tunekit.finetune(task="classify", data=data, model=tiny, epochs=2, eval_split=0, **FAST)
    texts = [r["text"] for r in data]
    batched = run.predict(texts, batch_size=7)
    alone = [run.predict(t) for t in texts]
    assert [p["label"] for p in batched] == [p["label"] for p in alone]
    for p, q in zip(batched, alone):
        assert p["score"] == pytest.approx(q["score"], abs=1e-5)
    backwards = run.predict(texts[::-1], batch_size=7)
    assert [p["label"] for p in backwards] == [p["label"] for p in batched][::-1]


def test_sdpa_attention_is_used(tiny, tmp_path):
    from tunekit.assembly import load_backbone

    assert load_backbone(tiny).model.config._attn_implementation == "sdpa"
    run = tunekit.finetune(
        task="classify", data=rows(16), model=tiny, epochs=1, eval_split=0, **FAST
    )
    loaded = tunekit.load(run.save(tmp_path / "bundle"))
    assert loaded.model.encoder.config._attn_implementation == "sdpa"


# ---- threads -------------------------------------------------------------------------------


def test_thread_default_is_capped_at_usable_cpus_unless_chosen(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert 1 <= hardware.usable_cpus() <= (__import__("os").cpu_count() or 1)
        for var in hardware.THREAD_VARIABLES:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(hardware, "usable_cpus", lambda: 1)
        torch.set_num_threads(2)
        assert hardware.configure_threads() == 1  # capped
        assert hardware.configure_threads(2) == 2  # explicit num_threads wins
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert hardware.configure_threads() == 2  # the user's variable is respected
    finally:
        torch.set_num_threads(before)


def test_num_threads_option_sets_torch_threads(tiny):
    before = torch.get_num_threads()
    try:
        tunekit.finetune(
            task="classify", data=rows(16), model=tiny, epochs=1, eval_split=0, num_threads=1,
            **FAST,
        )  # fmt: skip
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="num_threads"):
        tunekit.TrainingConfig(num_threads=0)


# ---- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_result(tiny, strategy):
    data = rows(24, long_every=2)
    common = dict(
        task="classify", data=data, model=tiny, epochs=2, eval_split=0, strategy=strategy, **FAST
    )
    plain = tunekit.finetune(**common)
    checkpointed = tunekit.finetune(gradient_checkpointing=True, **common)
    encoder = checkpointed.model.encoder
    base = getattr(encoder, "get_base_model", lambda: encoder)()
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    assert not any(getattr(m, "gradient_checkpointing", False) for m in plain.model.modules())
    a, b = weights(plain), weights(checkpointed)
    for key in a:  # recomputed activations: same dropout draws, same numbers up to rounding
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert plain.history.column("train_loss") == pytest.approx(
        checkpointed.history.column("train_loss"), rel=1e-5
    )


def test_compile_traces_once_per_shape_kind_not_per_batch(tiny):
    # the model sets state up lazily on its first call; compiled, that state change was a
    # graph break plus a recompile of every later shape (minutes per shape on CPU). With one
    # eager call first, a static graph for the first shape and one with dynamic lengths
    # serve every batch of three epochs of mixed lengths
    from torch._dynamo import register_backend

    graphs = []

    @register_backend(name="tunekit_test_count_graphs")
    def count(gm, example_inputs):  # noqa: ARG001
        graphs.append(gm)
        return gm.forward

    data = rows(48, seed=4, long_every=3)  # batches of several lengths
    run = tunekit.finetune(
        task="classify",
        data=data,
        model=tiny,
        epochs=3,
        eval_split=0,
        seed=3,
        precision="fp32",
        compile="tunekit_test_count_graphs",
        pooling="cls",
        **FAST,
    )  # fmt: skip  (a CLS head: the last layer's first-token path is set up lazily too)
    assert run.history.info["compiled"] is True
    # measured: 2 graphs with the eager call first, 3 without it (torch 2.13)
    assert 1 <= len(graphs) <= 2, f"{len(graphs)} graphs traced"
