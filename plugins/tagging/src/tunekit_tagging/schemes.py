"""Tag schemes (IOB1, IOB2, BIOES, BMES): detect, parse into spans, write back, repair.

Every scheme is read by one lenient parser (:func:`tags_to_spans`) into entity spans
``(start, end, type)`` over tokens (``end`` exclusive), and written by
:func:`spans_to_tags`. Converting between schemes is parse-then-write; repairing an
invalid predicted sequence (``I-PER`` after ``O``, ``E-LOC`` after ``B-PER``) is the same
round trip in the training scheme, so decoded tags are always well formed.

Untyped tags (``B``/``M``/``E``/``S`` for Chinese word segmentation) are spans whose type
is ``""``.

Example::

    >>> tags_to_spans(["B-PER", "I-PER", "O", "I-LOC"])
    [(0, 2, 'PER'), (3, 4, 'LOC')]
    >>> convert(["B-PER", "I-PER", "O", "B-LOC"], "bioes")
    ['B-PER', 'E-PER', 'O', 'S-LOC']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

SCHEMES = ("iob1", "iob2", "bioes", "bmes")
Span = tuple[int, int, str]

#: prefixes accepted on input; BILOU's L/U are read as BIOES's E/S
_PREFIX_ALIASES = {"B": "B", "I": "I", "M": "M", "E": "E", "S": "S", "L": "E", "U": "S"}
_ENTITY_TAG = re.compile(r"^(?:O|[BIMESLU](?:[-_].+)?)$")


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` → ``("B", "PER")``; ``"O"`` → ``("O", "")``; ``"S"`` → ``("S", "")``.

    ``L``/``U`` (BILOU) come back as ``E``/``S``; a ``M`` is returned as is.
    """
    if tag == "O":
        return "O", ""
    prefix, rest = tag[0], tag[2:] if len(tag) > 1 else ""
    return _PREFIX_ALIASES.get(prefix, prefix), rest


def is_entity_tagset(tags: Iterable[str]) -> bool:
    """Whether every tag looks like an entity tag (``O``, ``B-X``, ``I-X``, ``S``...)."""
    return all(_ENTITY_TAG.match(t) for t in tags)


def detect_scheme(sequences: Iterable[Sequence[str]]) -> str:
    """The scheme a set of tag sequences is written in.

    ``M`` prefixes (or untyped ``B``/``E``/``S``) → ``bmes``; ``E``/``S`` (or BILOU ``L``/``U``) → ``bioes``; otherwise
    ``iob1`` when some entity starts with ``I-`` (after ``O`` or another type), else ``iob2``.
    """
    prefixes: set[str] = set()
    types: set[str] = set()
    iob1 = False
    for seq in sequences:
        prev_prefix, prev_type = "O", ""
        for tag in seq:
            prefix, type_ = split_tag(tag)
            prefixes.add(prefix)
            types.add(type_)
            if prefix == "I" and (prev_prefix == "O" or prev_type != type_):
                iob1 = True
            prev_prefix, prev_type = prefix, type_
    if "M" in prefixes or (prefixes & {"E", "S"} and types <= {""}):
        return "bmes"  # untyped B/E/S (word segmentation) is BMES even when no M occurs
    if prefixes & {"E", "S"}:
        return "bioes"
    return "iob1" if iob1 else "iob2"


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of a tag sequence in any scheme (lenient: repairs as it reads).

    ``B`` starts an entity; ``I``/``M`` continue an open entity of the same type or start
    one; ``E`` closes it (or is a one-token entity); ``S`` is a one-token entity; ``O``
    closes. This reads IOB1, IOB2, BIOES, BILOU and BMES alike.
    """
    spans: list[Span] = []
    start, current = -1, None
    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag)
        if prefix == "O":
            if current is not None:
                spans.append((start, i, current))
            current = None
        elif prefix == "S":
            if current is not None:
                spans.append((start, i, current))
            spans.append((i, i + 1, type_))
            current = None
        elif prefix == "B" or current != type_:  # B, or I/M/E that cannot continue
            if current is not None:
                spans.append((start, i, current))
            start, current = i, type_
            if prefix == "E":
                spans.append((i, i + 1, type_))
                current = None
        elif prefix == "E":
            spans.append((start, i + 1, current))
            current = None
        # I/M continuing the open entity: nothing to do
    if current is not None:
        spans.append((start, len(tags), current))
    return spans


def _tag(prefix: str, type_: str) -> str:
    return f"{prefix}-{type_}" if type_ else prefix


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Write spans as a tag sequence of *length* tokens in *scheme*."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    tags = ["O"] * length
    previous_end, previous_type = -1, None
    for start, end, type_ in sorted(spans):
        if scheme == "iob2":
            tags[start:end] = [_tag("B", type_)] + [_tag("I", type_)] * (end - start - 1)
        elif scheme == "iob1":
            first = "B" if previous_end == start and previous_type == type_ else "I"
            tags[start:end] = [_tag(first, type_)] + [_tag("I", type_)] * (end - start - 1)
        else:
            inside = "I" if scheme == "bioes" else "M"
            if end - start == 1:
                tags[start] = _tag("S", type_)
            else:
                tags[start:end] = (
                    [_tag("B", type_)]
                    + [_tag(inside, type_)] * (end - start - 2)
                    + [_tag("E", type_)]
                )
        previous_end, previous_type = end, type_
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """Rewrite *tags* (any scheme, possibly invalid) as a valid sequence in *scheme*."""
    return spans_to_tags(tags_to_spans(tags), len(tags), scheme)


def scheme_tags(types: Iterable[str], scheme: str) -> list[str]:
    """Every tag of *scheme* over entity *types*: ``O`` first, then by type."""
    prefixes = {"iob1": "BI", "iob2": "BI", "bioes": "BIES", "bmes": "BMES"}[scheme]
    return ["O"] + [_tag(p, t) for t in sorted(set(types)) for p in prefixes]


def allowed_transitions(
    labels: Sequence[str], scheme: str
) -> tuple[list[list[bool]], list[bool], list[bool]]:
    """Which tag may follow which in *scheme* (``matrix[from][to]``), which tags may start
    and which may end a sentence. Used to constrain CRF decoding to well-formed sequences.

    - IOB2: ``I-X`` only after ``B-X``/``I-X``; never first.
    - IOB1: ``B-X`` only right after ``B-X``/``I-X`` (it splits two same-type entities).
    - BIOES/BMES: ``I``/``M``/``E-X`` only after ``B-X`` or ``I``/``M-X``; ``O``/``B``/``S``
      only after ``O``/``E``/``S``; a sentence starts with ``O``/``B``/``S`` and ends
      with ``O``/``E``/``S``.
    Plain tags (POS) allow everything.
    """
    parts = [split_tag(t) for t in labels]

    def follows(a: tuple[str, str], b: tuple[str, str]) -> bool:
        (pa, ta), (pb, tb) = a, b
        same_open = pa in ("B", "I", "M") and ta == tb
        if scheme == "iob2":
            return same_open if pb == "I" else True
        if scheme == "iob1":
            return same_open if pb == "B" else True
        if pb in ("I", "M", "E"):
            return same_open and pa != "E"
        return pa in ("O", "E", "S")

    matrix = [[follows(a, b) for b in parts] for a in parts]
    if scheme == "iob2":
        start = [p != "I" for p, _ in parts]
        end = [True] * len(parts)
    elif scheme == "iob1":
        start = [p != "B" for p, _ in parts]
        end = [True] * len(parts)
    else:
        start = [p in ("O", "B", "S") for p, _ in parts]
        end = [p in ("O", "E", "S") for p, _ in parts]
    return matrix, start, end


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether *tags* is a well-formed sequence in *scheme* (see :func:`allowed_transitions`)."""
    if not tags:
        return True
    labels = sorted(set(tags))
    index = {t: i for i, t in enumerate(labels)}
    matrix, start, end = allowed_transitions(labels, scheme)
    ids = [index[t] for t in tags]
    return start[ids[0]] and end[ids[-1]] and all(matrix[a][b] for a, b in zip(ids, ids[1:]))
