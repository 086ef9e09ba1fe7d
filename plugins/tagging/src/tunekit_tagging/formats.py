"""Readers for tagging data: CoNLL columns, JSON Lines (tokens + tags, or text + spans),
character-per-line Chinese files, and in-memory rows.

Every reader returns *raw sentences*: ``{"tokens": [...], "tags": [...] | None, "text":
str | None, "offsets": [(start, end), ...] | None, "where": "data file x.conll line 12",
"lines": [line number of each token] | None}``. Errors are :class:`~tunekit.plugin.DataError`
naming the file and line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunekit.plugin import DataError

CJK = "\u3400-\u9fff\uf900-\ufaff"
#: a CJK character alone, a run of other word characters, or one punctuation mark
WORD = re.compile(rf"[{CJK}]|(?:(?![{CJK}])\w)+|[^\w\s]")
TOKEN_FIELDS = ("tokens", "words", "chars", "characters")
TAG_FIELDS = ("tags", "ner_tags", "pos_tags", "labels", "label", "ner", "pos")
TEXT_FIELDS = ("text", "sentence", "content")
SPAN_FIELDS = ("spans", "entities", "label", "labels")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def split_words(text: str, cuts: Sequence[int] = ()) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into words with character offsets: each CJK character is a word
    (Chinese is tagged per character), other word characters group, punctuation stands
    alone. Words are also cut at every offset in *cuts* (entity boundaries)."""
    cut = set(cuts)
    words, offsets = [], []
    for m in WORD.finditer(text):
        start = m.start()
        for i in range(m.start() + 1, m.end()):
            if i in cut:
                words.append(text[start:i])
                offsets.append((start, i))
                start = i
        words.append(text[start : m.end()])
        offsets.append((start, m.end()))
    return words, offsets


def read_conll(
    path: Path, *, name: str, token_column: int = 0, tag_column: int = -1
) -> list[dict[str, Any]]:
    """CoNLL-style columns: one token per line, a blank line between sentences,
    ``-DOCSTART-`` lines skipped. Columns split on tabs when the line has one, else on
    whitespace. Also reads character-per-line Chinese files (``字 B-LOC``)."""
    sentences: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    where = f"{name} file {path}"
    # columns a line must have: a token and a tag, at the (possibly negative) positions given
    need = max(2, *(c + 1 if c >= 0 else -c for c in (token_column, tag_column)))

    def flush() -> None:
        if tokens:
            sentences.append(
                {
                    "tokens": list(tokens),
                    "tags": list(tags),
                    "text": None,
                    "offsets": None,
                    "where": f"{where} line {lines[0]}",
                    "lines": list(lines),
                    "file": str(path),
                }
            )
        tokens.clear(), tags.clear(), lines.clear()

    with open(path, encoding="utf-8-sig") as fh:
        try:
            for number, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    flush()
                    continue
                columns = line.split("\t") if "\t" in line else line.split()
                if columns[0] == "-DOCSTART-":
                    flush()
                    continue
                if len(columns) < need:
                    raise DataError(
                        f"{where} line {number} is malformed: {line!r} has {len(columns)} column(s), but the token "
                        f"is column {token_column} and the tag column {tag_column}. Each line needs a token and a tag "
                        f"separated by a tab or spaces; sentences are separated by a blank line (set token_column= / "
                        f"tag_column= for other layouts)"
                    )
                tokens.append(columns[token_column].strip())
                tags.append(columns[tag_column].strip())
                lines.append(number)
        except UnicodeDecodeError as exc:
            raise DataError(f"{where} is not UTF-8 text ({exc}); re-save it as UTF-8") from None
    flush()
    return sentences


def read_jsonl(path: Path, *, name: str, options: Any) -> list[dict[str, Any]]:
    """JSON Lines: ``{"tokens": [...], "tags": [...]}`` or ``{"text": ..., "spans":
    [[start, end, label], ...]}`` per line (a ``.json`` file may hold a list of them)."""
    where = f"{name} file {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where} is not UTF-8 text ({exc}); re-save it as UTF-8") from None
    rows: list[tuple[Any, str]] = []
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not valid JSON: {exc}") from None
        rows = [(item, f"{where} record {i}") for i, item in enumerate(items)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((json.loads(line), f"{where} line {number}"))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where} line {number} is not valid JSON ({exc.msg}): {line[:80]!r}"
                ) from None
    return [from_row(row, where=w, options=options) for row, w in rows]


def read_rows(rows: Sequence[Any], *, name: str, options: Any) -> list[dict[str, Any]]:
    """In-memory rows: dicts (as in JSON Lines), ``(tokens, tags)`` pairs or ``(text, spans)``."""
    out = []
    for i, row in enumerate(rows):
        where = f"{name} record {i}"
        if isinstance(row, (tuple, list)) and len(row) == 2:
            first = row[0]
            row = (
                {"text": first, "spans": row[1]}
                if isinstance(first, str)
                else {"tokens": first, "tags": row[1]}
            )
        out.append(from_row(row, where=where, options=options))
    return out


def _field(row: Mapping[str, Any], chosen: str | None, candidates: Sequence[str]) -> str | None:
    if chosen:
        return chosen if chosen in row else None
    return next((c for c in candidates if c in row), None)


def from_row(row: Any, *, where: str, options: Any) -> dict[str, Any]:
    """One raw sentence from a dict with tokens + tags, or text + character spans."""
    if not isinstance(row, Mapping):
        raise DataError(
            f"{where} is a {type(row).__name__}, not an object with 'tokens' and 'tags' (or 'text' and 'spans')"
        )
    token_key = _field(row, options.tokens_field, TOKEN_FIELDS)
    if token_key is not None and not isinstance(row[token_key], str):
        tokens = row[token_key]
        if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{where}: {token_key!r} must be a list of strings, not {tokens!r:.80}")
        tokens = list(tokens)
        if not tokens:
            raise DataError(f"{where} is an empty sentence ({token_key!r} is []); remove it")
        tag_key = _field(row, options.tags_field, TAG_FIELDS)
        if tag_key is None:
            raise DataError(
                f"{where} has tokens but no tags; expected one of {', '.join(TAG_FIELDS)} (or set tags_field=). "
                f"Fields: {', '.join(map(str, row))}"
            )
        tags = [_tag_name(t, options.tag_names, where) for t in row[tag_key]]
        if len(tags) != len(tokens):
            raise DataError(
                f"{where} has {len(tokens)} tokens but {len(tags)} tags; every token needs exactly one tag"
            )
        return {
            "tokens": tokens,
            "tags": tags,
            "text": None,
            "offsets": None,
            "where": where,
            "lines": None,
        }
    text_key = _field(row, options.text_field, TEXT_FIELDS)
    if text_key is None or not isinstance(row[text_key], str):
        raise DataError(
            f"{where} has neither a token list ({', '.join(TOKEN_FIELDS)}) nor a text ({', '.join(TEXT_FIELDS)}); "
            f"fields: {', '.join(map(str, row))}"
        )
    text = row[text_key]
    if not text.strip():
        raise DataError(f"{where} is an empty sentence ({text_key!r} is {text!r}); remove it")
    span_key = next((c for c in SPAN_FIELDS if c in row and c != text_key), None)
    if span_key is None:
        raise DataError(
            f"{where} has a text but no spans; give [[start, end, label], ...] under 'spans' or 'entities'"
        )
    spans = []
    for span in row[span_key] or []:
        if isinstance(span, Mapping):
            span = (span.get("start"), span.get("end"), span.get("label", span.get("type")))
        if not (
            isinstance(span, (list, tuple))
            and len(span) == 3
            and all(isinstance(v, int) for v in span[:2])
        ):
            raise DataError(
                f"{where}: span {span!r} is not [start, end, label] with integer character offsets"
            )
        start, end, label = span
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"{where}: span {list(span)!r} lies outside the text (length {len(text)}) or is empty"
            )
        spans.append((start, end, str(label)))
    words, offsets = split_words(text, [x for s in spans for x in s[:2]])
    tags = ["O"] * len(words)
    for start, end, label in sorted(spans):
        inside = [i for i, (a, b) in enumerate(offsets) if a >= start and b <= end]
        if not inside:
            raise DataError(
                f"{where}: span {[start, end, label]!r} ({text[start:end]!r}) covers no word"
            )
        for k, i in enumerate(inside):
            if tags[i] != "O":
                raise DataError(
                    f"{where}: span {[start, end, label]!r} overlaps another span; nested spans are not supported"
                )
            tags[i] = f"{'B' if k == 0 else 'I'}-{label}"
    return {
        "tokens": words,
        "tags": tags,
        "text": text,
        "offsets": offsets,
        "where": where,
        "lines": None,
    }


def _tag_name(tag: Any, names: Sequence[str] | None, where: str) -> str:
    if isinstance(tag, str):
        return tag
    if isinstance(tag, int) and names:
        if not 0 <= tag < len(names):
            raise DataError(
                f"{where}: tag id {tag} is out of range for tag_names ({len(names)} names)"
            )
        return names[tag]
    if isinstance(tag, int):
        raise DataError(
            f"{where} has integer tag {tag}; pass tag_names=[...] to name them (e.g. the dataset's ClassLabel names)"
        )
    raise DataError(f"{where}: tag {tag!r} is not a string")


def read_path(path: str | os.PathLike, *, name: str, options: Any) -> list[dict[str, Any]]:
    """Read a file in whichever format its suffix says (JSON Lines, else CoNLL columns)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{name} file not found: {path}. Check the path (relative paths start at {Path.cwd()})."
        )
    if path.is_dir():
        raise DataError(f"{name} path {path} is a directory; pass a data file")
    if path.suffix.lower() in JSON_SUFFIXES:
        sentences = read_jsonl(path, name=name, options=options)
    else:
        sentences = read_conll(
            path, name=name, token_column=options.token_column, tag_column=options.tag_column
        )
    if not sentences:
        raise DataError(f"{name} file {path} has no sentences")
    return sentences


def is_path_like(source: Any) -> bool:
    """A ``str`` / ``os.PathLike`` naming a file (texts are never passed to ``read()``)."""
    return isinstance(source, (str, os.PathLike))
