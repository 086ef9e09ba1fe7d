"""tunekit plugin ``tunekit-tagging``: token tagging (NER, POS, Chinese BMES) with subword
alignment, sliding windows, tag-scheme conversion, an optional CRF and seqeval metrics."""

from .heads import CRFHead, TokenClassifierHead
from .schemes import (
    SCHEMES,
    allowed_transitions,
    convert,
    detect_scheme,
    is_valid,
    spans_to_tags,
    tags_to_spans,
)
from .task import TaggingConfig, TaggingTask, entity_metrics

__all__ = [
    "SCHEMES",
    "CRFHead",
    "TaggingConfig",
    "TaggingTask",
    "TokenClassifierHead",
    "allowed_transitions",
    "convert",
    "detect_scheme",
    "entity_metrics",
    "is_valid",
    "spans_to_tags",
    "tags_to_spans",
]
