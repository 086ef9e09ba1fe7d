"""Reading user data into records (lists of dicts), through 🤗 datasets' builtin loaders.

Accepted sources: a path (CSV, TSV, JSON Lines, JSON, Parquet, plain text), a
``datasets.Dataset`` / ``DatasetDict`` (its ``train`` split), a pandas DataFrame, or a
list of dicts / tuples / strings.
"""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}


#: column names :func:`find_column` tries, in order, for a text (``role="text"``)
TEXT_COLUMNS = (
    "text",
    "sentence",
    "review",
    "content",
    "document",
    "comment",
    "tweet",
    "snippet",
    "body",
    "input",
    "query",
)
#: column names :func:`find_column` tries, in order, for a label
LABEL_COLUMNS = (
    "label",
    "labels",
    "target",
    "class",
    "category",
    "sentiment",
    "score",
    "y",
    "rating",
)


def is_path(source: Any) -> bool:
    """Whether *source* names a file (a ``str`` or ``os.PathLike``, not bytes)."""
    return isinstance(source, (str, os.PathLike)) and not isinstance(source, bytes)


def read_table(
    source: Any, *, name: str = "data", tuple_columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Read *source* into a list of row dicts.

    *tuple_columns* names the columns of tuple/list rows (``[("text", "label"), ...]``).
    Raises :class:`DataError` naming the file / argument for a missing file, an unknown
    format, unreadable content or no rows.
    """
    if source is None:
        raise DataError(
            f"{name} is required: pass a file path, a datasets.Dataset, a DataFrame or a list of records"
        )
    if is_path(source):
        rows = _read_file(Path(source), name=name)
    elif _is_dataset_dict(source):
        if "train" not in source:
            raise DataError(
                f"{name} is a DatasetDict without a 'train' split (splits: {list(source)}); pass one split"
            )
        rows = dataset_rows(source["train"])
    elif _is_dataset(source):
        rows = dataset_rows(source)
    elif _is_dataframe(source):
        _refuse_duplicate_columns([str(c) for c in source.columns], where=f"{name} (a DataFrame)")
        rows = source.to_dict(orient="records")
    elif isinstance(source, (list, tuple)):
        rows = _rows_from_list(list(source), name=name, tuple_columns=tuple_columns)
    else:
        raise DataError(
            f"{name} has an unsupported type {type(source).__name__}; pass a path (.csv/.tsv/.jsonl/.json/"
            f".parquet/.txt), a datasets.Dataset, a pandas DataFrame or a list of dicts/tuples"
        )
    if not rows:
        raise DataError(f"{name} is empty ({_describe(source)}): it has no records")
    return rows


def _read_file(path: Path, *, name: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError(
            f"{name} file not found: {path}. Check the path (relative paths start at {Path.cwd()})."
        )
    if path.is_dir():
        raise DataError(f"{name} path {path} is a directory; pass a data file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{name} file {path} has an unknown format {path.suffix!r}; use one of "
            f"{', '.join(sorted(FORMATS))} (or load it yourself and pass a DataFrame / list of dicts)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{name} file {path} is empty")
    _check_utf8(path, name=name, fmt=fmt)
    import datasets

    kwargs: dict[str, Any] = {}
    builder = fmt
    if fmt in ("csv", "tsv"):
        _check_table_shape(path, name=name, delimiter="\t" if fmt == "tsv" else ",")
        # 'NA', 'null', 'None'... are labels and texts, not missing values; an empty
        # field still reads as "" and is reported by the task as missing
        kwargs = {"keep_default_na": False}
    if fmt == "tsv":
        builder, kwargs = "csv", {**kwargs, "delimiter": "\t"}
    if fmt == "json" and path.suffix.lower() == ".json":
        kwargs["field"] = _json_field(path)
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # datasets raises many types for bad content
        if fmt in ("csv", "tsv") and _data_lines(path) == 0:
            raise DataError(
                f"{name} file {path} has a header but no records; add data rows below it"
            ) from None
        if fmt == "json" and path.suffix.lower() != ".json":
            _check_json_lines(path, name=name)
        raise DataError(
            f"{name} file {path} could not be read as {fmt}: {type(exc).__name__}: {exc}"
        ) from exc
    return ds.to_list()


def _check_table_shape(path: Path, *, name: str, delimiter: str) -> None:
    """Refuse a CSV/TSV whose header repeats a column name or whose row has another number
    of fields than the header, naming the line (pandas would keep the first duplicate
    column, pad short rows with missing values and fail on long ones without a line)."""
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header: list[str] | None = None
        line = 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines are skipped by the reader too
            if header is None:
                header = row
                _refuse_duplicate_columns(header, where=f"{name} file {path} (line {start})")
                continue
            if len(row) != len(header):
                kind, sep = ("TSV", "a tab") if delimiter == "\t" else ("CSV", "a comma")
                raise DataError(
                    f"{name} file {path} line {start} has {len(row)} fields but the header has "
                    f"{len(header)} ({', '.join(header)}); fix that row (a field holding {sep} "
                    f"must be quoted in a {kind} file)"
                )


def _refuse_duplicate_columns(columns: Sequence[str], *, where: str) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataError(
                f"{where} has two columns named {column!r}; rename one of them so each column "
                f"has its own name (which one would be used is ambiguous)"
            )
        seen.add(column)


def _check_json_lines(path: Path, *, name: str) -> None:
    """Name the first line of a JSON Lines file that is not one JSON object."""
    import json

    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{name} file {path} line {lineno} is not valid JSON ({exc.msg}, column "
                    f"{exc.colno}): {line.strip()[:80]!r}; fix that line (JSON Lines holds one "
                    f"object per line)"
                ) from None
            if not isinstance(value, dict):
                raise DataError(
                    f"{name} file {path} line {lineno} is a JSON {type(value).__name__}, not an "
                    f"object; JSON Lines holds one {{...}} record per line"
                )


def _data_lines(path: Path) -> int:
    """Non-blank lines after the first (the header) of a text table."""
    with path.open(encoding="utf-8") as fh:
        return max(sum(1 for line in fh if line.strip()) - 1, 0)


def _json_field(path: Path) -> str | None:
    """A JSON file holding ``{"data": [...]}`` is read from that list; a top-level list as is."""
    import json

    with path.open(encoding="utf-8") as fh:
        try:
            obj = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
            ) from exc
    if isinstance(obj, dict):
        lists = [k for k, v in obj.items() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        raise DataError(
            f"file {path} is a JSON object; expected a list of records or one key holding a list"
        )
    return None


def _check_utf8(path: Path, *, name: str, fmt: str) -> None:
    if fmt == "parquet":
        return
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{name} file {path} is not UTF-8 (line {lineno}, byte {exc.start}); "
                    f"re-save it as UTF-8 (e.g. iconv -f gbk -t utf-8)"
                ) from None


def _rows_from_list(
    items: list[Any], *, name: str, tuple_columns: Sequence[str] | None
) -> list[dict[str, Any]]:
    rows = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            rows.append(dict(item))
        elif isinstance(item, (tuple, list)):
            cols = list(tuple_columns or [f"column_{j}" for j in range(len(item))])
            if len(item) > len(cols):
                raise DataError(
                    f"{name} record {i} has {len(item)} fields; expected at most {len(cols)} ({', '.join(cols)})"
                )
            rows.append(dict(zip(cols, item)))
        elif isinstance(item, str):
            rows.append({"text": item})
        else:
            raise DataError(
                f"{name} record {i} is a {type(item).__name__}; expected a dict, tuple or string"
            )
    return rows


def dataset_rows(dataset: Any) -> list[dict[str, Any]]:
    """The rows of a 🤗 ``Dataset``, with ``ClassLabel`` columns (and sequences of them) as
    their label names (``"pos"``, not ``1``), so a model trained on them predicts names.

    Example::

        ds = Dataset.from_dict({"text": ["good"], "label": [1]},
                               features=Features({"text": Value("string"),
                                                  "label": ClassLabel(names=["neg", "pos"])}))
        dataset_rows(ds)   # [{"text": "good", "label": "pos"}]
    """
    rows = dataset.to_list()
    features = getattr(dataset, "features", None) or {}
    names: dict[str, Any] = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
        if type(feature).__name__ == "ClassLabel":
            names[column] = (feature, False)
        elif type(inner).__name__ == "ClassLabel":
            names[column] = (inner, True)
    for row in rows:
        for column, (label, many) in names.items():
            value = row.get(column)
            if value is None or (not many and (not isinstance(value, int) or value < 0)):
                continue  # -1: no label (a test split)
            row[column] = [label.int2str(v) for v in value] if many else label.int2str(value)
    return rows


def _is_dataset(obj: Any) -> bool:
    return type(obj).__name__ in ("Dataset", "IterableDataset") and hasattr(obj, "to_list")


def _is_dataset_dict(obj: Any) -> bool:
    return type(obj).__name__ == "DatasetDict"


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_dict")


def _describe(source: Any) -> str:
    return str(source) if is_path(source) else type(source).__name__


def find_column(
    columns: Sequence[str],
    wanted: str | None,
    candidates: Sequence[str],
    *,
    role: str,
    name: str,
    option: str,
) -> str:
    """The column for *role*: *wanted* if given (must exist), else the first candidate present."""
    if wanted is not None:
        if wanted not in columns:
            from .errors import close_matches_hint

            raise DataError(
                f"{name} has no column {wanted!r} (given as {option}=){close_matches_hint(wanted, columns)}; "
                f"columns are: {', '.join(map(str, columns))}"
            )
        return wanted
    lowered = {str(c).lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    raise DataError(
        f"{name} has no {role} column: looked for {', '.join(candidates)}; columns are: "
        f"{', '.join(map(str, columns))}. Name it with {option}=..."
    )


def read_columns(
    source: Any,
    *,
    name: str = "data",
    candidates: Mapping[str, Sequence[str]] | None = None,
    **wanted: str | None,
) -> list[dict[str, Any]]:
    """Rows of *source* (anything :func:`read_table` reads; tuple rows in the order of the
    roles) as dicts keyed by role. Each keyword names a role and the column the user asked
    for (``None``: auto-detect among the role's *candidates*, by default
    :data:`TEXT_COLUMNS` for ``text`` and :data:`LABEL_COLUMNS` for ``label``); columns are
    found with :func:`find_column` (user option ``<role>_column``). A missing or blank value
    is a DataError naming the record and column.

    Example::

        read_columns("reviews.csv", text=None, label="stars")
        # [{"text": "what a wonderful film", "label": 5}, ...]
    """
    known = {"text": TEXT_COLUMNS, "label": LABEL_COLUMNS, **(candidates or {})}
    rows = read_table(source, name=name, tuple_columns=tuple(wanted))
    if is_path(source):
        name = f"{name} file {os.fspath(source)}"
    found = {
        role: find_column(
            list(rows[0]),
            given,
            known.get(role, (role,)),
            role=role,
            name=name,
            option=f"{role}_column",
        )
        for role, given in wanted.items()
    }
    records = []
    for i, row in enumerate(rows):
        record = {role: row.get(column) for role, column in found.items()}
        for role, value in record.items():
            if is_missing(value) or (isinstance(value, str) and not value.strip()):
                raise DataError(
                    f"{name} record {i} has no {role} in column {found[role]!r}; remove the "
                    f"record or fill in its {role}"
                )
        records.append(record)
    return records


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: ``None`` or NaN (what pandas and 🤗 datasets give)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_inputs(inputs: Any, *, what: str = "predict input") -> list[dict[str, str]]:
    """Records ``{"text": ...}`` from one text, a list of texts or of ``{"text": ...}``
    dicts — the predict inputs of single-text tasks. An empty or non-string item is a
    DataError naming its position (``what`` names the kind of item in the message)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    records = []
    for i, item in enumerate(inputs):
        text = item.get("text") if isinstance(item, Mapping) else item
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{what} {i} is empty or not a string ({text!r}); pass non-empty texts")
        records.append({"text": text})
    return records


def in_memory_rows(source: Any, *, name: str, accepts: str, unit: str) -> list[Any] | tuple:
    """*source* as a non-empty list of rows: a Dataset or DataFrame is read with
    :func:`read_table`, a list or tuple is kept. Another type is a DataError naming what the
    task ``accepts`` (e.g. ``"a list of dicts"``); an empty one says it has no ``unit``
    (e.g. ``"questions"``)."""
    if hasattr(source, "to_list") or hasattr(source, "to_dict"):
        source = read_table(source, name=name)
    if not isinstance(source, (list, tuple)):
        raise DataError(
            f"{name} has an unsupported type {type(source).__name__}; pass a path, {accepts} or a Dataset"
        )
    if not source:
        raise DataError(f"{name} is empty: it has no {unit}")
    return source


def split_records(
    records: Sequence[dict[str, Any]],
    *,
    fraction: float,
    seed: int,
    key: Callable[[dict[str, Any]], Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded (stratified where *key* gives a value) split into (train, eval).

    Every stratum keeps at least one training example; small strata may give none to eval.
    """
    rng = random.Random(seed)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        k = key(rec)
        groups[k if k is not None else "__all__"].append(i)
    eval_idx: list[int] = []
    for k in sorted(groups, key=repr):
        idx = groups[k]
        rng.shuffle(idx)
        n_eval = min(len(idx) - 1, round(len(idx) * fraction))
        eval_idx += idx[: max(n_eval, 0)]
    chosen = set(eval_idx)
    train = [r for i, r in enumerate(records) if i not in chosen]
    evals = [r for i, r in enumerate(records) if i in chosen]
    if not evals:
        raise DataError(
            f"eval_split={fraction} of {len(records)} records leaves no evaluation data; "
            f"pass eval_data=..., a larger eval_split, or eval_split=0 to train without evaluation"
        )
    return train, evals
