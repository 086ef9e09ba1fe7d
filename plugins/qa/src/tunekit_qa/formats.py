"""Reading question-answering data into records.

Accepted sources:

- **SQuAD nested JSON** (v1.1 and v2.0, also CMRC 2018 / DRCD, which use the same
  layout): ``{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ...,
  "question": ..., "answers": [{"text": ..., "answer_start": 17}], "is_impossible":
  false}]}]}]}`` — as a ``.json`` file or the loaded dict;
- **flat records** (JSON Lines, a JSON list, a ``datasets.Dataset`` such as 🤗 ``squad``, a
  DataFrame or a list of dicts): ``question``, ``context`` and ``answers`` either in the
  🤗 form ``{"text": [...], "answer_start": [...]}`` or as a list of ``{"text",
  "answer_start"}``; ``id`` is optional.

Every record becomes ``{"id", "question", "context", "answers": [{"text", "start"}],
"where"}`` where *where* names the file / line / record / question id for error messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunekit.plugin import DataError

Record = dict[str, Any]


def is_path_like(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and not isinstance(source, bytes)


def is_squad_nested(obj: Any) -> bool:
    """Whether *obj* is a SQuAD-style ``{"data": [{"paragraphs": [...]}]}`` object."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("data"), list):
        return False
    return all(isinstance(a, Mapping) and "paragraphs" in a for a in obj["data"][:5])


def read_source(source: Any, *, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``(where, raw_row)`` pairs from any accepted source (rows not yet validated)."""
    if source is None:
        raise DataError(
            f"{name} is required: pass a SQuAD JSON / JSON Lines file, a list of "
            "{'question', 'context', 'answers'} dicts or a Dataset"
        )
    if is_path_like(source):
        return _read_path(Path(source), name=name)
    if isinstance(source, Mapping):
        if is_squad_nested(source):
            return _squad_rows(source, where=name)
        if "question" in source and "context" in source:
            return [(f"{name} record 0", source)]
        raise DataError(
            f"{name} is a dict that is neither SQuAD JSON ({{'data': [{{'paragraphs': ...}}]}}) nor one "
            f"record with 'question' and 'context' (keys: {', '.join(map(str, list(source)[:8]))})"
        )
    from tunekit.plugin import in_memory_rows

    source = in_memory_rows(source, name=name, accepts="a list of dicts", unit="questions")
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for i, item in enumerate(source):
        if is_squad_nested(item):
            rows += _squad_rows(item, where=f"{name} record {i}")
        elif isinstance(item, Mapping) and "paragraphs" in item:  # one SQuAD article
            rows += _squad_rows({"data": [item]}, where=f"{name} record {i}")
        elif isinstance(item, Mapping):
            rows.append((f"{name} record {i}", item))
        else:
            raise DataError(
                f"{name} record {i} is a {type(item).__name__}; expected a dict with 'question', 'context' "
                "and 'answers'"
            )
    return rows


def _read_path(path: Path, *, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    if not path.is_file():
        raise DataError(
            f"{name} file not found: {path}. Check the path (relative paths start at {Path.cwd()})."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} file {path} is not UTF-8 (byte {exc.start}); re-save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{name} file {path} is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _json_lines(text, path=path, name=name)
    if suffix != ".json":
        raise DataError(
            f"{name} file {path} has format {suffix!r}; question answering reads SQuAD .json or "
            ".jsonl (one {'question', 'context', 'answers'} per line)"
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n{" in text.strip():  # a JSON Lines file named .json
            return _json_lines(text, path=path, name=name)
        raise DataError(
            f"{name} file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    if is_squad_nested(obj):
        return _squad_rows(obj, where=f"{name} file {path}")
    if isinstance(obj, Mapping):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{name} file {path} is a JSON object that is not SQuAD ({{'data': [{{'paragraphs': ...}}]}}) "
                "and holds no single list of records"
            )
        obj = lists[0]
    if not isinstance(obj, list) or not obj:
        raise DataError(f"{name} file {path} holds no questions")
    return [(f"{name} file {path} record {i}", row) for i, row in enumerate(obj)]


def _json_lines(text: str, *, path: Path, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{name} file {path} line {lineno} is not valid JSON: {exc.msg}"
            ) from None
        where = f"{name} file {path} line {lineno}"
        if is_squad_nested(row):
            rows += _squad_rows(row, where=where)
        elif isinstance(row, Mapping):
            rows.append((where, row))
        else:
            raise DataError(f"{where} is a {type(row).__name__}; expected a JSON object")
    if not rows:
        raise DataError(f"{name} file {path} holds no questions")
    return rows


def _squad_rows(obj: Mapping[str, Any], *, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    rows = []
    for a, article in enumerate(obj["data"]):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph.get("qas") or []):
                qid = qa.get("id")
                label = (
                    f"question id {qid!r}"
                    if qid is not None
                    else f"data[{a}].paragraphs[{p}].qas[{q}]"
                )
                rows.append((f"{where} {label}", {**qa, "context": context}))
    if not rows:
        raise DataError(
            f"{where} is SQuAD JSON without any question (paragraphs[].qas[] are empty)"
        )
    return rows


def _answers(raw: Mapping[str, Any], where: str) -> list[tuple[str, Any]]:
    """(text, answer_start) pairs from the accepted answer layouts."""
    answers = raw.get("answers")
    if answers is None and "answer" in raw:  # one answer: {"answer": ..., "answer_start": ...}
        answers = (
            []
            if raw["answer"] in (None, "")
            else [{"text": raw["answer"], "answer_start": raw.get("answer_start")}]
        )
    if answers is None:
        return []
    if isinstance(answers, str):
        try:
            answers = json.loads(answers)  # a CSV / DataFrame cell holding JSON
        except json.JSONDecodeError:
            raise DataError(
                f"{where}: 'answers' is the string {answers[:60]!r}; give {{'text': [...], 'answer_start': [...]}} "
                "or a list of {'text', 'answer_start'}"
            ) from None
    if isinstance(answers, Mapping):
        texts = answers.get("text", [])
        starts = answers.get("answer_start", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        starts = [starts] if isinstance(starts, int) else list(starts)
        if len(texts) != len(starts):
            raise DataError(
                f"{where}: answers has {len(texts)} texts but {len(starts)} answer_start values; give one start per text"
            )
        return list(zip(texts, starts))
    if isinstance(answers, Sequence):
        out = []
        for j, ans in enumerate(answers):
            if not isinstance(ans, Mapping) or "text" not in ans:
                raise DataError(
                    f"{where}: answers[{j}] is {ans!r:.60}; expected {{'text': ..., 'answer_start': ...}}"
                )
            out.append((ans["text"], ans.get("answer_start", ans.get("start"))))
        return out
    raise DataError(f"{where}: 'answers' has unsupported type {type(answers).__name__}")


def normalise(
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    fix_answer_start: bool,
    allow_unanswerable: bool,
) -> list[Record]:
    """Validate raw rows into records; bad rows raise :class:`DataError` naming them."""
    records = []
    for index, (where, raw) in enumerate(rows):
        qid = raw.get("id")
        if qid is not None and not isinstance(qid, (str, int)):
            qid = str(qid)
        question = raw.get("question")
        context = raw.get("context")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where} has no question (field 'question' is {question!r:.40})")
        if not isinstance(context, str) or not context.strip():
            raise DataError(
                f"{where} has an empty context (field 'context' is {context!r:.40}); every question needs "
                "the passage its answer is taken from"
            )
        answers = []
        for text, start in _answers(raw, where):
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{where}: an answer text is empty ({text!r}); drop it or give the text"
                )
            answers.append(
                {
                    "text": text,
                    "start": _check_start(text, start, context, where, fix=fix_answer_start),
                }
            )
        impossible = bool(raw.get("is_impossible", False))
        if impossible:
            answers = []
        if not answers and not allow_unanswerable:
            raise DataError(
                f"{where} has no answer{' (is_impossible)' if impossible else ''}. For SQuAD 2.0-style data with "
                "unanswerable questions pass allow_unanswerable=True; otherwise give the answer's text and answer_start"
            )
        records.append(
            {
                "id": qid if qid is not None else str(index),
                "question": question,
                "context": context,
                "answers": answers,
                "where": where,
            }
        )
    return records


def _check_start(text: str, start: Any, context: str, where: str, *, fix: bool) -> int:
    valid = (
        isinstance(start, int)
        and not isinstance(start, bool)
        or (isinstance(start, float) and start.is_integer())
    )
    start = int(start) if valid else None
    # a negative start slices from the end of the context: never a valid offset
    if start is not None and start >= 0 and context[start : start + len(text)] == text:
        return start
    found = [i for i in _occurrences(context, text)]
    if fix and found:
        # the occurrence nearest the given start (or the first when none was given)
        return min(found, key=lambda i: abs(i - start)) if start is not None else found[0]
    at = (
        "answer_start is missing"
        if start is None
        else "answer_start is negative; character offsets count from 0"
        if start < 0
        else f"context[{start}:{start + len(text)}] is {context[start : start + len(text)]!r}"
    )
    if not found:
        raise DataError(
            f"{where}: the answer {text!r} does not occur in the context ({at}); fix the answer text"
        )
    raise DataError(
        f"{where}: answer_start={start!r} does not point at the answer {text!r} ({at}; the text occurs at "
        f"{', '.join(map(str, found[:5]))}). Fix answer_start, or pass fix_answer_start=True to use the "
        "occurrence nearest the given start"
    )


def _occurrences(context: str, text: str):
    i = context.find(text)
    while i >= 0:
        yield i
        i = context.find(text, i + 1)
