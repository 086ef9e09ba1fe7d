"""Reading sentence-pair data: two text columns (auto-detected or given) and a label.

Besides every source :func:`tunekit.plugin.read_table` takes, tab-separated files
(``.tsv``, ``.tab``, ``.txt``) are read here line by line, with or without a header
(LCQMC / AFQMC ship ``text_a \\t text_b \\t label`` with none), and without quote
handling, because pair corpora hold unbalanced quotes inside their texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunekit.plugin import DataError, close_matches_hint, find_column, is_path, read_table

#: Column pairs recognised without ``text_columns=`` (first match wins).
PAIR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("text_a", "text_b"),
    ("sentence1", "sentence2"),
    ("query", "title"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("sentence_a", "sentence_b"),
    ("text1", "text2"),
    ("query", "document"),
    ("query", "passage"),
    ("s1", "s2"),
)
LABEL_COLUMNS = (
    "label",
    "labels",
    "gold_label",
    "is_duplicate",
    "score",
    "similarity_score",
    "relatedness_score",
    "target",
    "class",
    "y",
)
#: Column names of headerless rows and of tuples: ``(text_a, text_b[, label])``.
HEADERLESS = ("text_a", "text_b", "label")
TAB_SUFFIXES = (".tsv", ".tab", ".txt")


def _known_names(extra: Sequence[str] = ()) -> set[str]:
    names = {c for pair in PAIR_COLUMNS for c in pair} | set(LABEL_COLUMNS) | {"text", "sentence"}
    return names | {str(e).lower() for e in extra}


def read_tab_file(path: Path, *, name: str, known: set[str]) -> list[dict[str, Any]]:
    """Rows of a tab-separated file; the first line is a header only if it names a known
    column. Each row keeps its line number under ``_line`` for error messages."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} file {path} is not UTF-8 (byte {exc.start}); re-save it as UTF-8 (e.g. iconv -f gbk -t utf-8)"
        ) from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise DataError(f"{name} file {path} is empty")
    first = [f.strip() for f in numbered[0][1].split("\t")]
    if any(f.lower() in known for f in first):
        columns, body = first, numbered[1:]
    else:
        width = len(first)
        if width not in (2, 3):
            raise DataError(
                f"{name} file {path} line {numbered[0][0]} has {width} tab-separated fields and no header; "
                f"a headerless pair file has 'text_a<TAB>text_b<TAB>label' (or two fields to predict). "
                f"Add a header line naming the columns."
            )
        columns, body = list(HEADERLESS[:width]), numbered
    rows = []
    for lineno, line in body:
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{name} file {path} line {lineno} has {len(fields)} tab-separated fields, expected "
                f"{len(columns)} ({', '.join(columns)}); a text with a tab in it, or a missing field?"
            )
        row: dict[str, Any] = dict(zip(columns, fields))
        row["_line"] = lineno
        rows.append(row)
    if not rows:
        raise DataError(f"{name} file {path} has a header but no records")
    return rows


def read_rows(
    source: Any, *, name: str, text_columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Row dicts of *source*: tab files read here (header optional), everything else
    through :func:`tunekit.plugin.read_table` (tuples are ``(text_a, text_b[, label])``)."""
    if is_path(source) and Path(source).suffix.lower() in TAB_SUFFIXES and Path(source).is_file():
        if Path(source).stat().st_size == 0:
            raise DataError(f"{name} file {source} is empty")
        return read_tab_file(Path(source), name=name, known=_known_names(text_columns or ()))
    return read_table(source, name=name, tuple_columns=HEADERLESS)


def find_text_columns(
    columns: Sequence[str], wanted: Sequence[str] | None, *, name: str
) -> tuple[str, str]:
    """The two text columns: *wanted* (both must exist) or the first known pair present."""
    if wanted is not None:
        if isinstance(wanted, str) or len(wanted) != 2:
            raise DataError(
                f"text_columns={wanted!r} must name two columns, e.g. text_columns=('q', 'd')"
            )
        return (
            find_column(
                columns, wanted[0], (), role="first text", name=name, option="text_columns"
            ),
            find_column(
                columns, wanted[1], (), role="second text", name=name, option="text_columns"
            ),
        )
    lowered = {str(c).lower(): c for c in columns}
    for a, b in PAIR_COLUMNS:
        if a in lowered and b in lowered:
            return lowered[a], lowered[b]
    shown = ", ".join("/".join(p) for p in PAIR_COLUMNS)
    raise DataError(
        f"{name} has no pair of text columns: looked for {shown}; columns are: "
        f"{', '.join(map(str, columns))}. Name them with text_columns=('first', 'second')"
        f"{close_matches_hint('text_a', columns)}"
    )


def _where(row: dict[str, Any], index: int, name: str) -> str:
    line = row.get("_line")
    return f"{name} record {index} (line {line})" if line is not None else f"{name} record {index}"


def _text(row: dict[str, Any], column: str, where: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"{where} has {'no' if value is None or value == '' else 'an empty or non-text'} value in text column "
            f"{column!r} ({value!r}); every record needs both texts of its pair: fill it in or remove the record"
        )
    return value


def read_pairs(
    source: Any,
    *,
    name: str = "data",
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    with_labels: bool = True,
) -> list[dict[str, Any]]:
    """Pair records ``{"text_a", "text_b", "label", "where"}`` from any accepted source.

    *where* names the record (and its line in a tab file) for later error messages.
    Raises :class:`~tunekit.plugin.DataError` naming the record for a missing text or
    label.

    Example::

        read_pairs([("今天天气怎么样", "今天天气如何", 1)])
        # [{'text_a': '今天天气怎么样', 'text_b': '今天天气如何', 'label': 1, 'where': 'data record 0'}]
    """
    rows = read_rows(source, name=name, text_columns=text_columns)
    columns = [c for c in rows[0] if c != "_line"]
    col_a, col_b = find_text_columns(columns, text_columns, name=name)
    label_col = None
    if with_labels:
        label_col = find_column(
            [c for c in columns if c not in (col_a, col_b)],
            label_column,
            LABEL_COLUMNS,
            role="label",
            name=name,
            option="label_column",
        )
    records = []
    for i, row in enumerate(rows):
        where = _where(row, i, name)
        record = {
            "text_a": _text(row, col_a, where),
            "text_b": _text(row, col_b, where),
            "where": where,
        }
        if label_col is not None:
            label = row.get(label_col)
            if (
                label is None
                or (isinstance(label, float) and label != label)
                or (isinstance(label, str) and not label.strip())
            ):
                raise DataError(
                    f"{where} has no label in column {label_col!r}; fill it in or remove the record "
                    f"(predict() takes unlabelled pairs)"
                )
            record["label"] = label.strip() if isinstance(label, str) else label
        records.append(record)
    return records
