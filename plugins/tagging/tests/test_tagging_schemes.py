"""Tag schemes: detection, conversion round trips, repair, allowed transitions, constrained CRF."""

import random

import pytest
import torch
from tunekit_tagging import (
    CRFHead,
    allowed_transitions,
    convert,
    detect_scheme,
    is_valid,
    spans_to_tags,
    tags_to_spans,
)
from tunekit_tagging.schemes import SCHEMES, scheme_tags


def random_spans(rng, length, types=("PER", "LOC")):
    spans, i = [], 0
    while i < length:
        if rng.random() < 0.4:
            end = min(length, i + rng.randint(1, 3))
            spans.append((i, end, rng.choice(types)))
            i = end
        else:
            i += 1
    return spans


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_round_trips_spans_and_is_detected(scheme):
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(1, 12)
        spans = random_spans(rng, n)
        tags = spans_to_tags(spans, n, scheme)
        assert tags_to_spans(tags) == spans
        assert is_valid(tags, scheme)
        for other in SCHEMES:  # conversion to any scheme keeps the entities
            assert tags_to_spans(convert(tags, other)) == spans
    sample = [spans_to_tags(random_spans(rng, 12), 12, scheme) for _ in range(50)]
    assert detect_scheme(sample) == (
        scheme
        if scheme != "bmes"
        else "bmes"
        if any("M-" in t for s in sample for t in s)
        else "bioes"
    )


def test_known_conversions_and_untyped_bmes():
    assert convert(["B-PER", "I-PER", "O", "B-LOC"], "bioes") == ["B-PER", "E-PER", "O", "S-LOC"]
    assert convert(["I-PER", "I-PER", "B-PER", "O"], "iob2") == [
        "B-PER",
        "I-PER",
        "B-PER",
        "O",
    ]  # IOB1 → IOB2
    assert convert(["B-PER", "I-PER", "B-PER"], "iob1") == ["I-PER", "I-PER", "B-PER"]
    assert convert(["B", "M", "E", "S", "S"], "iob2") == [
        "B",
        "I",
        "I",
        "B",
        "B",
    ]  # word segmentation
    assert convert(["U-LOC", "B-PER", "L-PER"], "bioes") == [
        "S-LOC",
        "B-PER",
        "E-PER",
    ]  # BILOU read as BIOES
    assert detect_scheme([["S", "B", "E"]]) == "bmes"
    assert detect_scheme([["O", "I-PER", "O"]]) == "iob1"


@pytest.mark.parametrize(
    ("broken", "scheme", "fixed"),
    [
        (["O", "I-PER", "I-PER"], "iob2", ["O", "B-PER", "I-PER"]),
        (["B-PER", "I-LOC"], "iob2", ["B-PER", "B-LOC"]),
        (["B-PER", "O"], "bioes", ["S-PER", "O"]),
        (["I-LOC", "E-LOC", "E-LOC"], "bioes", ["B-LOC", "E-LOC", "S-LOC"]),
        (["B-PER", "E-LOC"], "bmes", ["S-PER", "S-LOC"]),
        (["M-PER", "M-PER"], "bmes", ["B-PER", "E-PER"]),
    ],
)
def test_invalid_sequences_are_repaired(broken, scheme, fixed):
    assert not is_valid(broken, scheme)
    assert convert(broken, scheme) == fixed and is_valid(fixed, scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_any_tag_soup_converts_to_a_valid_sequence(scheme):
    rng = random.Random(2)
    labels = scheme_tags(["PER", "LOC"], scheme)
    for _ in range(300):
        soup = [rng.choice(labels) for _ in range(rng.randint(1, 10))]
        assert is_valid(convert(soup, scheme), scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_crf_viterbi_never_outputs_an_invalid_transition(scheme):
    labels = scheme_tags(["PER", "LOC", "ORG"], scheme)
    matrix, start, end = allowed_transitions(labels, scheme)
    torch.manual_seed(0)
    head = CRFHead(16, len(labels), allowed=matrix, allowed_start=start, allowed_end=end).eval()
    with torch.no_grad():  # make invalid transitions attractive: the constraint must still hold
        head.crf.transitions.copy_(torch.randn(len(labels), len(labels)) * 5)
    starts = torch.ones(64, 9, dtype=torch.long)
    starts[::3, 1::2] = 0  # continuation subwords are skipped
    batch = {
        "word_starts": starts,
        "sentence_start": torch.ones(64),
        "sentence_end": torch.ones(64),
    }
    tags = head(torch.randn(64, 9, 16) * 10, batch)["tags"]
    for row, mask in zip(tags, starts):
        assert (row[mask == 0] == -1).all()
        path = [labels[i] for i in row[mask == 1].tolist()]
        assert is_valid(path, scheme), path
    # unconstrained, the same CRF does produce invalid paths (so the test can fail)
    free = CRFHead(16, len(labels)).eval()
    free.load_state_dict(head.state_dict())
    paths = free(torch.randn(64, 9, 16) * 10, batch)["tags"]
    assert any(
        not is_valid([labels[i] for i in r[m == 1].tolist()], scheme) for r, m in zip(paths, starts)
    )


def test_crf_nll_is_finite_for_gold_paths_and_learns():
    labels = scheme_tags(["PER"], "iob2")  # O, B-PER, I-PER
    matrix, start, end = allowed_transitions(labels, "iob2")
    torch.manual_seed(0)
    head = CRFHead(8, 3, allowed=matrix, allowed_start=start, allowed_end=end, dropout=0.0)
    hidden = torch.randn(4, 6, 8)
    gold = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    batch = {
        "word_starts": torch.ones(4, 6),
        "labels": gold,
        "sentence_start": torch.ones(4),
        "sentence_end": torch.ones(4),
    }
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss = head(hidden, batch)["nll"].mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad(), loss.backward(), opt.step()
    final = float(loss.detach())
    assert final < first / 10 and final < 100  # far below the forbidden penalty
    assert head.eval()(hidden, batch)["tags"].tolist() == gold.tolist()
