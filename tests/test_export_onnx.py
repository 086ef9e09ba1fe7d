"""``run.export(dir, format="onnx")``: every task, head and strategy exports to one ONNX
graph that ``tunekit.load(dir)`` serves through onnxruntime with the predictions the torch
run gives; the parity gate refuses a graph that differs, the int8 gate a quantization that
costs the task's metric; the serving path imports no training library."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

import tunekit
from tunekit.errors import BundleError, ConfigError, ExportError
from tunekit.testing import make_tiny_model

pytest.importorskip("onnxruntime")
from qa_items import generate_items  # noqa: E402

GOOD = ["good", "great", "fine", "superb", "lovely"]
BAD = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "plot", "cast"]
SPORTS, POLITICS = ["goal", "match", "team"], ["vote", "senate", "party"]
PEOPLE = ["john", "mary", "peter", "anna"]
PLACES = ["paris", "london", "berlin", "tokyo"]
CORPUS = [
    "the capital of france is paris .",
    "the cat sat on the mat .",
    "a good film with a great cast .",
    "we walked to the park in the morning .",
]
#: fp32: the ONNX graph is fp32 and must predict what the run predicts to float precision
#: (precision="auto" would be bf16 autocast on a CPU with AMX / AVX512-BF16; the bf16 case
#: has its own test below)
FAST = dict(max_length=32, batch_size=8, warmup_ratio=0.0, progress=False, seed=0, precision="fp32")


def reviews(n=40, seed=0):
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.sample(GOOD if i % 2 else BAD, 2) + rng.sample(FILLER, 2)),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(n)
    ]


def topics(n=36, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        labels = [["sports"], ["politics"], ["sports", "politics"]][i % 3]
        words = (SPORTS if "sports" in labels else []) + (POLITICS if "politics" in labels else [])
        out.append(
            {"text": " ".join(rng.sample(words, 2) + rng.sample(FILLER, 2)), "label": labels}
        )
    return out


def scores(n=40):
    return [{"text": r["text"], "label": 1.5 + 3.0 * (r["label"] == "pos")} for r in reviews(n)]


def pairs(n=40, seed=2):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a = " ".join(rng.sample(GOOD, 2))
        b = " ".join(rng.sample(GOOD if i % 2 else BAD, 2))
        out.append({"text_a": a, "text_b": b, "label": str(i % 2)})
    return out


def sentences(n=32, seed=3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, where = rng.choice(PEOPLE), rng.choice(PLACES)
        if i % 2:
            out.append(
                {"tokens": [who, "lives", "in", where], "tags": ["B-PER", "O", "O", "B-LOC"]}
            )
        else:
            out.append({"tokens": ["we", "met", who, "today"], "tags": ["O", "O", "B-PER", "O"]})
    return out


QA_TRAIN = generate_items(24, seed=31, people=2)
QA_TEST = generate_items(3, seed=32, people=2) + generate_items(2, seed=33, people=3, filler=6)

#: task → (finetune arguments, predict inputs, held-out records)
CASES = {
    "classify": (dict(task="classify", data=reviews()), ["good great film", "awful dull plot"]),
    "multi-label": (dict(task="classify", data=topics()), ["goal team the film", "vote senate"]),
    "regression": (dict(task="classify", data=scores()), ["good great film", "awful dull plot"]),
    "pair-cross": (
        dict(task="pair-sim", data=pairs()),
        [("good great", "fine superb"), ("good great", "awful dull")],
    ),
    "pair-bi": (
        dict(task="pair-sim", data=pairs(), architecture="bi-encoder"),
        [("good great", "fine superb"), ("good great", "awful dull")],
    ),
    "ner": (dict(task="ner", data=sentences()), [["john", "lives", "in", "tokyo"], ["we", "met"]]),
    "ner-crf": (
        dict(task="ner", data=sentences(), head="crf"),
        [["john", "lives", "in", "tokyo"], ["we", "met", "anna", "today"]],
    ),
    "qa": (
        dict(task="qa", data=QA_TRAIN, max_length=48, doc_stride=16),
        [{"question": i["question"], "context": i["context"]} for i in QA_TEST],
    ),
    "fill-mask": (
        dict(task="fill-mask", data=CORPUS * 6),
        ["the capital of france is [MASK] .", "the cat sat on the [MASK] ."],
    ),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = GOOD + BAD + FILLER + SPORTS + POLITICS + PEOPLE + PLACES + CORPUS
    texts += ["lives in we met today"] + [
        i["context"] + " " + i["question"] for i in QA_TRAIN + QA_TEST
    ]
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [" ".join(texts)])


def train(tiny, case, strategy, **extra):
    options, _ = CASES[case]
    options = {
        **FAST,
        "epochs": 2,
        "learning_rate": 3e-2 if strategy == "lora" else 3e-3,
        "eval_split": 0.25,
        **options,
        **extra,
    }
    return tunekit.finetune(model=tiny, strategy=strategy, **options)


def assert_same(ours, theirs, *, tolerance=1e-4, where="prediction"):
    """Equal structure and labels/tags/texts; numbers equal within *tolerance*."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and set(ours) == set(theirs), where
        for key in ours:
            assert_same(ours[key], theirs[key], tolerance=tolerance, where=f"{where}.{key}")
    elif isinstance(ours, (list, tuple)):
        assert isinstance(theirs, (list, tuple)) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, tolerance=tolerance, where=f"{where}[{i}]")
    elif isinstance(ours, float) and not isinstance(theirs, bool):
        assert math.isclose(ours, theirs, abs_tol=tolerance, rel_tol=tolerance), (
            where,
            ours,
            theirs,
        )
    else:
        assert ours == theirs, (where, ours, theirs)


@pytest.mark.parametrize("strategy", ["full", "lora"])
@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_predicts_what_the_run_predicts(tiny, tmp_path, case, strategy):
    run = train(tiny, case, strategy)
    _, inputs = CASES[case]
    path = run.export(tmp_path / "onnx", format="onnx")
    served = tunekit.load(path)
    assert type(served).__name__ == "OnnxRun" and served.model is None
    ours, theirs = run.predict(inputs), served.predict(inputs)
    assert_same(ours, theirs)
    assert_same(run.predict(inputs[0]), served.predict(inputs[0]))

    info = json.loads((tmp_path / "onnx" / "tunekit_onnx.json").read_text())
    parity = info["parity"]
    print(f"onnx parity {case}/{strategy}: {parity}")
    assert parity["held_out_records"] == len(run.eval_records) > 0
    assert parity["agreement"] == 1.0 and parity["held_out_max_abs_diff"] <= 1e-3
    assert parity["probe_max_abs_diff"] <= 1e-3
    assert info["task"]["name"] == run.task.name and info["task"]["labels"] == list(run.labels)
    assert info["strategy"] == strategy and info["opset"] >= 14
    assert {"torch", "onnx", "onnxruntime"} <= set(info["versions"])
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["format"] == "tunekit-onnx"
    written = {p.relative_to(tmp_path / "onnx").as_posix() for p in (tmp_path / "onnx").rglob("*")}
    assert set(manifest["files"]) == {p for p in written if "." in p.rsplit("/", 1)[-1]} - {
        "manifest.json"
    }
    assert "model.onnx" in manifest["files"] and not any("adapter" in f for f in manifest["files"])
    if case == "ner-crf":  # Viterbi runs after the graph, from arrays the export stores
        assert (
            info["postprocess"]["name"] == "crf-viterbi" and "postprocess.py" in manifest["files"]
        )
        assert "tags" not in info["outputs"]


@pytest.mark.parametrize(
    "strategy, options",
    [
        ("frozen", {}),
        ("layer-mix", {}),
        ("top-k", {"k": 1}),
        ("peft", {"method": "ia3"}),
        ("peft", {"method": "prefix", "num_virtual_tokens": 4}),
    ],
    ids=["frozen", "layer-mix", "top-k", "ia3", "prefix"],
)
def test_every_strategy_exports(tiny, tmp_path, strategy, options):
    """Layer mixes and adapters that cannot merge (prefix tuning) are traced as they run."""
    run = train(tiny, "classify", strategy, **options)
    served = tunekit.load(run.export(tmp_path / "onnx", format="onnx"))
    inputs = CASES["classify"][1] + ["fine superb cast", "dull boring"]
    assert_same(run.predict(inputs), served.predict(inputs))
    assert served.info["parity"]["agreement"] == 1.0


def test_a_mixed_precision_run_exports_its_fp32_network(tiny, tmp_path):
    """A bf16-trained run exports its fp32 network: the export traces, and the gate
    compares, the network itself, not the run's bf16 predictions."""
    run = train(tiny, "classify", "full", precision="bf16")
    served = tunekit.load(run.export(tmp_path / "onnx", format="onnx"))
    assert served.info["parity"]["held_out_max_abs_diff"] <= 1e-5
    texts = CASES["classify"][1]  # the run itself predicts in bf16: labels agree
    assert [p["label"] for p in run.predict(texts)] == [p["label"] for p in served.predict(texts)]


def test_evaluate_through_onnx_gives_the_runs_metrics(tiny, tmp_path):
    run = train(tiny, "fill-mask", "full")
    served = tunekit.load(run.export(tmp_path / "onnx", format="onnx"))
    held = run.eval_records
    ours, theirs = run.evaluate(held), served.evaluate(held)
    assert "eval_loss" not in theirs
    for name, value in theirs.items():
        assert math.isclose(ours[name], value, rel_tol=1e-4, abs_tol=1e-5), name
    assert theirs["masked_tokens"] > 0


def test_parity_gate_refuses_a_broken_graph(tiny, tmp_path, monkeypatch):
    from tunekit import onnx_export

    run = train(tiny, "classify", "lora")
    exportable = onnx_export.exportable_model

    def broken(run):  # the exported copy drifts from the run (a wrong merge, say)
        model = exportable(run)
        with torch.no_grad():
            model.head.net[-1].weight.add_(torch.randn_like(model.head.net[-1].weight))
        return model

    monkeypatch.setattr(onnx_export, "exportable_model", broken)
    with pytest.raises(ExportError, match=r"max \|Δ output\| .*atol=0\.001.*agreement") as err:
        run.export(tmp_path / "onnx", format="onnx")
    print(err.value)
    assert not (tmp_path / "onnx").exists()
    monkeypatch.setattr(onnx_export, "exportable_model", exportable)
    assert run.export(tmp_path / "onnx", format="onnx", atol=1e-4, min_agreement=1.0)


@pytest.mark.parametrize("quantize", ["int8", "int8-per-tensor"])
def test_int8_is_gated_on_the_tasks_metric(tiny, tmp_path, quantize):
    run = train(tiny, "classify", "full", epochs=8)
    held = reviews(60, seed=9)
    assert run.evaluate(held)["accuracy"] == 1.0  # a model int8 can keep exact
    path = run.export(tmp_path / "int8", format="onnx", quantize=quantize, records=held)
    info = json.loads((tmp_path / "int8" / "tunekit_onnx.json").read_text())
    quant = info["quantization"]
    print(f"onnx {quantize}: {quant} size {info['size']} speed {info['speed']}")
    assert quant["kind"] == "int8" and quant["variant"] == quantize
    assert quant["metric"] == "accuracy" and quant["drop_points"] <= 1.0 and quant["records"] == 60
    assert info["size"]["int8_bytes"] < info["size"]["fp32_bytes"]
    assert info["speed"]["onnx_int8_texts_per_s"] > 0
    graph = (tmp_path / "int8" / "model.onnx").read_bytes()
    assert (b"tk_q1_w_scale" in graph) == (quantize == "int8")  # per-token products
    served = tunekit.load(path)
    assert [p["label"] for p in served.predict(["good great film", "awful dull"])] == ["pos", "neg"]

    # an outlier in an embedding row no text uses: the torch model is unchanged, but per-tensor
    # int8 scales every other embedding value to ~0 and the quantized model loses its accuracy
    unused = run.tokenizer.convert_tokens_to_ids("7")
    with torch.no_grad():
        run.model.encoder.embeddings.word_embeddings.weight[unused] = 1e4
    assert run.evaluate(held)["accuracy"] == 1.0
    with pytest.raises(
        ExportError, match=r"int8 quantization costs [\d.]+ points of accuracy"
    ) as err:
        run.export(tmp_path / "bad", format="onnx", quantize=quantize, records=held, max_drop=0.0)
    print(err.value)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ExportError, match="held-out labelled records, and there are none"):
        run.eval_records = []
        run.export(tmp_path / "none", format="onnx", quantize=quantize)


def test_a_drop_of_exactly_max_drop_passes_the_int8_gate():
    from tunekit.onnx_export import drop_points

    assert (0.805 - 0.795) * 100 > 1.0  # what a plain comparison refused
    assert drop_points(0.805, 0.795) == 1.0 and drop_points(0.5, 0.51) == -1.0
    assert drop_points(0.20, 0.25, higher=False) == 5.0  # a loss that grew


@pytest.mark.parametrize("contrib", [False, True], ids=["standard-ops", "MatMulIntegerToFloat"])
def test_per_token_int8_scales_each_row_alone(tmp_path, contrib):
    """One large row does not coarsen the others (what quantize_dynamic's one scale per
    tensor does): every row of the product stays within int8 rounding of the fp32 one, on
    3-D activations, with standard ONNX operators or onnxruntime's MatMulIntegerToFloat."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from tunekit.onnx_export import per_token_int8

    rng = np.random.default_rng(0)
    weight, other = (rng.standard_normal((16, n)).astype(np.float32) for n in (8, 5))
    graph = helper.make_graph(  # two products of one input (as Q, K and V are): rows shared
        [
            helper.make_node("MatMul", ["a", "w"], ["y"]),
            helper.make_node("MatMul", ["a", "v"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["b", "n", 16])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n", 8]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", "n", 5]),
        ],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(other, "v")],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx"
    )
    assert per_token_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", contrib=contrib) == 2
    ops = [n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node]
    assert ("MatMulIntegerToFloat" in ops) == contrib and ("MatMulInteger" in ops) != contrib
    assert "MatMul" not in ops and ops.count("QuantizeLinear") == 1
    a = rng.standard_normal((2, 4, 16)).astype(np.float32)
    a[0, 0] *= 1000.0  # an outlier token
    a[1, 2] *= 1e-3  # a tiny one
    a[1, 3] = 0.0  # padding
    y, z = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"a": a})
    assert not z[1, 3].any() and not y[1, 3].any()
    for got, want in ((y, a @ weight), (z, a @ other)):
        for b, row in [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]:
            # error relative to the row's own values, not the outlier's
            err = np.abs(got[b, row] - want[b, row]).max() / np.abs(want[b, row]).max()
            assert err < 0.05, (b, row, err)


def test_exports_serve_small_batches_side_by_side(tiny, tmp_path, monkeypatch):
    """load_onnx's default runs batches of SERVING_BATCH_SIZE on one single-threaded run
    per CPU, side by side, and predicts exactly what one run on every thread predicts."""
    from tunekit import onnx_runtime
    from tunekit.onnx_run import load_onnx

    run = train(tiny, "classify", "full")
    path = run.export(tmp_path / "serving", format="onnx")
    monkeypatch.setattr(onnx_runtime, "default_threads", lambda: 2)
    side_by_side, single = load_onnx(path), load_onnx(path, workers=1)
    assert (side_by_side.workers, side_by_side.threads) == (2, 1)
    assert (single.workers, single.threads) == (1, 2)
    texts = [r["text"] for r in reviews(37, seed=4)]
    sizes: list[int] = []
    runners: set[str] = set()  # the threads that ran a batch: the pool's, or the caller's
    real = onnx_runtime.run_session

    def counted(session, feeds, outputs):
        sizes.append(len(feeds["input_ids"]))
        runners.add(threading.current_thread().name.split("_")[0])
        return real(session, feeds, outputs)

    monkeypatch.setattr(onnx_runtime, "run_session", counted)
    ours = side_by_side.predict(texts)
    assert max(sizes) == onnx_runtime.SERVING_BATCH_SIZE and sum(sizes) == len(texts)
    assert runners == {"tunekit-onnx"}  # side by side, not one after another here
    runners.clear()
    assert_same(ours, single.predict(texts))
    assert runners == {threading.current_thread().name.split("_")[0]}
    assert_same(ours, run.predict(texts))
    sizes.clear()
    side_by_side.predict(texts, batch_size=5)
    assert max(sizes) == 5 and len(sizes) == 8


def test_map_session_batches_runs_them_at_once_in_order_and_raises_their_errors():
    from tunekit.onnx_runtime import map_session_batches

    class Session:
        def __init__(self, parties, timeout=10.0):
            self.barrier = threading.Barrier(parties, timeout=timeout)

        def get_inputs(self):
            return [type("Input", (), {"name": "x"})()]

        def run(self, outputs, feeds):
            self.barrier.wait()  # breaks unless `parties` runs are in flight together
            if feeds["x"][0] < 0:
                raise RuntimeError("bad batch")
            return [feeds["x"] * 2]

    feeds = [{"x": np.array([i])} for i in range(4)]
    out = map_session_batches(Session(2), feeds, ["y"], workers=2)
    assert [o["y"].item() for o in out] == [0, 2, 4, 6]
    with pytest.raises(threading.BrokenBarrierError):  # one at a time never meets
        map_session_batches(Session(2, timeout=0.2), feeds, ["y"], workers=1)
    assert [o["y"].item() for o in map_session_batches(Session(1), feeds, ["y"])] == [0, 2, 4, 6]
    with pytest.raises(RuntimeError, match="bad batch"):
        map_session_batches(
            Session(2), [{"x": np.array([1])}, {"x": np.array([-1])}], ["y"], workers=2
        )


def test_serving_threads_split_the_cpus(monkeypatch):
    from tunekit import onnx_runtime
    from tunekit.errors import ConfigError

    monkeypatch.setattr(onnx_runtime, "default_threads", lambda: 4)
    split = onnx_runtime.serving_threads
    assert split() == (4, 1) and split(workers=1) == (1, 4) and split(threads=2) == (2, 2)
    assert split(workers=3) == (3, 1) and split(workers=2, threads=3) == (2, 3)
    for bad in ({"workers": 0}, {"threads": -1}, {"workers": 1.5}, {"threads": True}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            split(**bad)


def test_exports_keep_the_residual_add_and_layer_norm_apart(tiny, tmp_path, monkeypatch):
    """onnxruntime's CPU SkipLayerNormalization is slower than Add + LayerNormalization:
    neither the export's fusions nor the session tunekit opens write it."""
    import onnx
    import onnxruntime as ort

    from tunekit.onnx_runtime import session_for

    run = train(tiny, "classify", "lora")
    path = tmp_path / "serving" / "model.onnx"
    run.export(tmp_path / "serving", format="onnx")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Attention", "LayerNormalization"} <= ops and "SkipLayerNormalization" not in ops

    opened = []
    real = ort.InferenceSession

    def spy(model, options, **kwargs):
        opened.append((options, kwargs))
        return real(model, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    session_for(path)
    options, kwargs = opened[0]

    def optimized(**kwargs) -> set[str]:
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        real(str(path), options, **kwargs)
        return {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}

    assert "SkipLayerNormalization" in optimized(providers=kwargs["providers"])  # by default
    assert "SkipLayerNormalization" not in optimized(**kwargs)


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_a_bi_encoder_export_encodes_and_compares_like_the_run(tiny, tmp_path, strategy):
    """The bi-encoder's export has an embedder graph: OnnxRun.encode / similarity give
    the PairRun's embeddings and similarities, gated for parity like the pair graph."""
    run = train(tiny, "pair-bi", strategy)
    served = tunekit.load(run.export(tmp_path / "onnx", format="onnx"))
    parity = served.info["parity"]
    assert parity["embedder_max_abs_diff"] <= 1e-4 and parity["embedder_min_cosine"] > 0.9999
    assert served.info["embedder"]["file"] == "embedder.onnx"
    assert "embedder.onnx" in json.loads((tmp_path / "onnx" / "manifest.json").read_text())["files"]
    texts = ["good great", "fine superb film", "awful dull", "the plot was boring cast", "lovely"]
    ours, theirs = run.encode(texts), served.encode(texts)
    assert theirs.shape == ours.shape and theirs.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.allclose(np.linalg.norm(theirs, axis=-1), 1.0, atol=1e-5)
    raw = served.encode(texts, normalize=False)
    assert np.abs(run.encode(texts, normalize=False) - raw).max() <= 1e-4
    assert served.encode("good great").shape == (ours.shape[1],)
    queries, docs = ["good great"] * 4, texts[1:]
    ranks, onnx_ranks = run.similarity(queries, docs), served.similarity(queries, docs)
    assert np.abs(ranks - onnx_ranks).max() <= 1e-4
    assert list(np.argsort(-ranks)) == list(np.argsort(-onnx_ranks))
    assert math.isclose(
        run.similarity("good great", "awful dull"),
        served.similarity("good great", "awful dull"),
        abs_tol=1e-4,
    )
    # the pair graph's own similarity is the cosine of the same embeddings
    pairs_ = [("good great", "fine superb"), ("good great", "awful dull")]
    for (a, b), prediction in zip(pairs_, served.predict(pairs_)):
        assert math.isclose(prediction["similarity"], served.similarity(a, b), abs_tol=1e-4)
    with pytest.raises(tunekit.errors.DataError, match="same length"):
        served.similarity(["a", "b"], ["c"])
    with pytest.raises(tunekit.errors.DataError, match="empty"):
        served.encode(["good", " "])
    # backend="onnx" serves from a temporary export that is gone once load returns: the
    # embedder graph must be open by then
    on_the_fly = tunekit.load(run.save(tmp_path / "bundle"), backend="onnx")
    assert np.abs(on_the_fly.encode(texts) - theirs).max() <= 1e-5


def test_a_cross_encoder_export_has_no_embedder(tiny, tmp_path):
    run = train(tiny, "pair-cross", "full", epochs=1)
    served = tunekit.load(run.export(tmp_path / "onnx", format="onnx"))
    assert served.info["embedder"] is None
    assert not (tmp_path / "onnx" / "embedder.onnx").exists()
    with pytest.raises(tunekit.errors.ConfigError, match="cross-encoder reads both texts"):
        served.encode(["good great"])


def test_an_int8_bi_encoder_quantizes_its_embedder_too(tiny, tmp_path):
    run = train(tiny, "pair-bi", "full", epochs=4)
    path = run.export(tmp_path / "int8", format="onnx", quantize="int8", max_drop=100.0)
    served = tunekit.load(path)
    quant, size = served.info["quantization"], served.info["size"]
    print(f"int8 bi-encoder: {quant} {size}")
    assert size["embedder_int8_bytes"] < size["embedder_fp32_bytes"]
    assert 0.9 < quant["embedder_min_cosine"] <= quant["embedder_median_cosine"] <= 1.0 + 1e-6
    texts = ["good great", "awful dull", "fine superb"]
    cosines = (run.encode(texts) * served.encode(texts)).sum(-1)
    assert cosines.min() > 0.9  # int8 embeddings point where the fp32 ones do


def test_target_must_be_absent_or_empty(tiny, tmp_path):
    run = train(tiny, "classify", "full", epochs=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="empty directory"):
        run.export(tmp_path / "full", format="onnx")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    path = run.export(tmp_path / "empty", format="onnx")
    with pytest.raises(BundleError, match="not signed"):  # a signature check is never skipped
        tunekit.load(path, verify_key=b"team secret")
    model = tmp_path / "empty" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="altered: model.onnx"):
        tunekit.load(path)


def test_bundle_loads_with_the_onnx_backend_and_the_cli_exports(
    tiny, tmp_path, monkeypatch, capsys
):
    from tunekit import onnx_run
    from tunekit.cli import main

    run = train(tiny, "ner-crf", "lora")
    bundle = run.save(tmp_path / "bundle")
    inputs = CASES["ner-crf"][1]
    served = tunekit.load(bundle, backend="onnx")
    assert type(served).__name__ == "OnnxRun"
    assert served.predict(inputs) == tunekit.load(bundle).predict(inputs)
    latency = tunekit.load(bundle, backend="onnx", workers=1, threads=2, spin=True)
    assert (latency.workers, latency.threads, latency.spin) == (1, 2, True)
    assert latency.predict(inputs) == served.predict(inputs)
    with pytest.raises(ConfigError, match="workers / threads / spin set how an ONNX export"):
        tunekit.load(bundle, workers=2)
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sentences(8, seed=5)))
    code = main(["export", bundle, str(tmp_path / "cli"), "--format", "onnx", "--data", str(data)])
    assert code == 0
    info = json.loads((tmp_path / "cli" / "tunekit_onnx.json").read_text())
    assert info["parity"]["held_out_records"] == 8 and info["parity"]["agreement"] == 1.0
    # the CLI serves the export with --workers / --threads / --spin, and refuses them for a
    # torch bundle
    served_args = ["--workers", "1", "--threads", "2", "--spin"]
    loaded = []
    real_load_onnx = onnx_run.load_onnx

    def spy(path, **serving):
        loaded.append(serving)
        return real_load_onnx(path, **serving)

    monkeypatch.setattr(onnx_run, "load_onnx", spy)
    capsys.readouterr()
    words = json.dumps(inputs[0])  # a pre-split sentence: JSON on the command line
    assert main(["predict", str(tmp_path / "cli"), words, *served_args]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == json.loads(json.dumps(served.predict(inputs[:1]), default=str))
    assert main(["evaluate", str(tmp_path / "cli"), "--data", str(data), "--workers", "2"]) == 0
    assert "f1" in capsys.readouterr().out
    assert loaded == [
        {"workers": 1, "threads": 2, "spin": True},
        {"workers": 2, "threads": None, "spin": False},
    ]
    assert main(["predict", bundle, words, "--workers", "2"]) != 0
    assert "workers / threads / spin set how an ONNX export serves" in capsys.readouterr().err


def test_serving_imports_no_training_library(tiny, tmp_path):
    run = train(tiny, "pair-bi", "lora")
    path = run.export(tmp_path / "onnx", format="onnx")
    expected = run.predict(CASES["pair-bi"][1])
    script = textwrap.dedent(
        f"""
        import json, sys
        import tunekit
        served = tunekit.load({str(path)!r})
        print(json.dumps(served.predict({CASES["pair-bi"][1]!r})))
        print(json.dumps(sorted(m for m in ("peft", "accelerate", "datasets") if m in sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert json.loads(out[-1]) == []
    assert_same(expected, json.loads(out[-2]))


def test_crf_viterbi_in_numpy_matches_the_head():
    from tunekit_tagging.heads import CRFHead

    from tunekit.onnx_postprocess import crf_viterbi_tags

    torch.manual_seed(0)
    allowed = [[True, True, False], [True, True, True], [True, False, True]]
    head = CRFHead(8, 3, allowed=allowed, allowed_start=[True, True, False]).eval()
    with torch.no_grad():
        head.crf.transitions.normal_()
    hidden = torch.randn(4, 7, 8)
    starts = torch.tensor([[0, 1, 1, 0, 1, 1, 0]] * 3 + [[0] * 7])
    batch = {"word_starts": starts, "sentence_start": torch.tensor([1, 0, 1, 1])}
    with torch.no_grad():
        out = head(hidden, batch)
    arrays = {k: np.asarray(v) for k, v in head.decoding_arrays().items()}
    tags = crf_viterbi_tags(
        out["logits"].numpy(),
        arrays,
        word_starts=starts.numpy(),
        sentence_start=batch["sentence_start"].numpy(),
    )
    assert (tags == out["tags"].numpy()).all() and (tags[3] == -1).all()


def test_sessions_do_not_spin_unless_asked(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from tunekit.onnx_runtime import session_for

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    key = "session.intra_op.allow_spinning"
    quiet = session_for(path, threads=2)
    assert quiet.get_session_options().get_session_config_entry(key) == "0"
    assert (
        session_for(path, threads=2, spin=True).get_session_options().get_session_config_entry(key)
        == "1"
    )
    out = quiet.run(["y"], {"x": np.array([-1.0, 2.0], dtype=np.float32)})[0]
    assert out.tolist() == [0.0, 2.0]
