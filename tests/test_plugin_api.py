"""The public plugin API: every name of ``tunekit.plugin`` is documented in docs/plugins.md,
the example plugin stays small and its line-by-line walk-through quotes it exactly, and
the import contract that keeps plugins on the public modules is configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tunekit.plugin

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "plugin-ordinal" / "src" / "tunekit_ordinal" / "__init__.py"


def section(title: str) -> str:
    start = GUIDE.index(f"## {title}")
    end = GUIDE.find("\n## ", start + 3)
    return GUIDE[start : end if end != -1 else None]


def test_every_public_name_exists_and_is_documented_in_the_plugin_guide():
    names = tunekit.plugin.__all__
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert [n for n in names if not hasattr(tunekit.plugin, n)] == []
    reference = section("The plugin API: `tunekit.plugin`")
    undocumented = [n for n in names if not re.search(rf"^\| `{re.escape(n)}` \|", reference, re.M)]
    assert undocumented == [], (
        f"names of tunekit.plugin.__all__ missing in docs/plugins.md: {undocumented}"
    )
    documented = re.findall(r"^\| `(\w+)` \|", reference, re.M)
    assert sorted(documented) == sorted(names), "docs/plugins.md lists names tunekit.plugin lacks"


def test_public_callables_have_docstrings():
    missing = [
        n
        for n in tunekit.plugin.__all__
        if callable(getattr(tunekit.plugin, n))
        and not isinstance(getattr(tunekit.plugin, n), type(dict[str, int]))
        and not (getattr(tunekit.plugin, n).__doc__ or "").strip()
    ]
    assert missing == []


def code_lines(path: Path) -> int:
    """Non-blank lines that are not comments (docstrings count)."""
    return sum(
        1
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    )


def test_the_example_plugin_is_at_most_80_lines_of_code():
    sources = sorted((ROOT / "examples" / "plugin-ordinal" / "src").rglob("*.py"))
    assert sources == [EXAMPLE]
    assert code_lines(EXAMPLE) <= 80


def test_the_walk_through_quotes_the_example_exactly_and_covers_it():
    walk = section("The example, line by line")
    # ``{.python}`` fences: highlighted like ``python`` but left alone by ruff's markdown
    # formatting, which would dedent the method excerpts
    blocks = re.findall(r"```\{\.python\}\n(.*?)```", walk, re.S)
    source = EXAMPLE.read_text()
    assert len(blocks) >= 10
    for block in blocks:
        assert block in source, f"docs/plugins.md quotes code the example does not have:\n{block}"
    # every method and the hook are walked through
    for name in re.findall(r"^\s*def (\w+)", source, re.M):
        assert f"def {name}(" in walk, name


def test_the_import_contract_covers_every_plugin_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    packages = {p.name for p in ROOT.glob("plugins/*/src/*") if (p / "__init__.py").is_file()}
    packages.add(EXAMPLE.parent.name)
    (contract,) = [c for c in config["contracts"] if c["type"] == "forbidden"]
    assert packages == set(contract["source_modules"]) <= set(config["root_packages"])
    assert contract["forbidden_modules"] == ["tunekit.*"]
    assert set(contract["ignore_imports"]) == {"** -> tunekit.plugin", "** -> tunekit.testing"}


def test_map_batches_runs_longest_first_and_returns_feature_order():
    import torch

    from tunekit.plugin import map_batches

    model = torch.nn.Linear(1, 1).train()
    features = [{"input_ids": [7] * n, "n": n} for n in (2, 5, 1, 4, 3)]
    seen = []

    def collate(batch):
        seen.append([len(f["input_ids"]) for f in batch])
        return {"n": torch.tensor([[float(f["n"])] for f in batch])}

    def forward(batch):
        assert not model.training  # eval mode inside
        return {"twice": batch["n"][:, 0] * 2, "linear": model(batch["n"])}

    rows = map_batches(model, features, forward, collate=collate, batch_size=2)
    assert seen == [[5, 4], [3, 2], [1]]  # length-sorted batches, little padding
    assert [float(r["twice"]) for r in rows] == [4.0, 10.0, 2.0, 8.0, 6.0]
    assert model.training  # mode restored
    assert all(torch.is_inference(r["linear"]) for r in rows)
    kept = map_batches(
        model, features, forward, collate=collate, batch_size=3,
        keep=lambda feature, row: (feature["n"], row["linear"]), grad_mode=torch.no_grad,
    )  # fmt: skip
    assert [n for n, _ in kept] == [2, 5, 1, 4, 3]
    assert not any(torch.is_inference(t) for _, t in kept)  # usable as autograd inputs


def test_backbone_identity_follows_what_the_strategy_stores():
    import types

    from tunekit.plugin import backbone_identity, new_strategy

    backbone = types.SimpleNamespace(
        name="tiny",
        source="/models/tiny",
        config=types.SimpleNamespace(model_type="bert"),
        identity=lambda: {"name": "tiny", "source": "/models/tiny", "weights_sha256": "ab12"},
    )
    # frozen saves only what it trained: the bundle must find and check the same encoder
    frozen = backbone_identity(backbone, new_strategy("frozen"), adapted=None)
    assert frozen == {
        "name": "tiny",
        "source": "/models/tiny",
        "weights_sha256": "ab12",
        "adapted": None,
    }
    # full stores the encoder: no weights hash to check against a base model
    full = backbone_identity(backbone, new_strategy("full"))
    assert full == {"name": "tiny", "source": "/models/tiny", "model_type": "bert"}
