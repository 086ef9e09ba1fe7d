"""mkdocs hooks: drop nav entries whose page does not exist (yet).

Task pages (``docs/pair.md``, ``docs/qa.md``...) land with their plugins; listing them in
``mkdocs.yml`` ahead of time must not break ``mkdocs build --strict``. The docs-coverage
test (``tests/test_docs_coverage.py``) checks the other direction: every page is in nav.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _prune(items: list[Any], docs: Path) -> list[Any]:
    kept = []
    for item in items:
        if isinstance(item, dict):
            (title, value), *_ = item.items()
            if isinstance(value, list):
                value = _prune(value, docs)
                if value:
                    kept.append({title: value})
            elif "://" in str(value) or (docs / str(value)).is_file():
                kept.append(item)
        elif "://" in str(item) or (docs / str(item)).is_file():
            kept.append(item)
    return kept


def on_config(config: Any) -> Any:
    if config.get("nav"):
        config["nav"] = _prune(config["nav"], Path(config["docs_dir"]))
    return config
