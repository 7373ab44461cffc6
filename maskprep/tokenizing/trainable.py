"""What a supervised record trains once it is fitted into ``max_length``: the indices truncation
keeps (the prompt cut from the left first), and the encode step's last word on each record: one
left with no trained token is a bad record, not a row."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from ..config import ShapeConfig
from ..sources.records import Record, Rejected
from .encoder import EncodedDoc


def truncation_keep(doc: EncodedDoc, max_length: int) -> tuple[np.ndarray, int]:
    """Indices of ``doc`` kept when truncating it to ``max_length``, and how many prompt tokens
    were cut from the left.

    The frame is kept whole. A supervised record (``doc.prompt`` set) loses its prompt from the
    left first, keeping the completion that carries the loss; only when the completion alone is
    too long is it cut from the right. A plain document is cut from the right.
    """
    n = len(doc.ids)
    budget = max_length - doc.head - doc.tail
    body_end = n - doc.tail
    excess = max(0, n - max_length)
    cut_left = min(excess, doc.prompt or 0)
    start = doc.head + cut_left
    keep = np.r_[0 : doc.head, start : min(start + budget, body_end), body_end:n]
    return keep, cut_left


def loses_all_labels(doc: EncodedDoc, config: ShapeConfig) -> bool:
    """Whether fitting (:func:`maskprep.shaping.fit.fit`) would write ``doc`` with no trained
    token left (only truncation can)."""
    if len(doc.ids) <= config.max_length or config.overflow != "truncate":
        return not doc.trained.any()
    keep, _ = truncation_keep(doc, config.max_length)
    return not doc.trained[keep].any()


def split_trainable(
    records: Sequence[Record], items: Sequence[EncodedDoc | Rejected], config: ShapeConfig
) -> tuple[list[EncodedDoc], list[Rejected]]:
    """Encoded supervised records (``items``, one per record) split into the documents to shape
    and the records rejected: those the encoder rejected, and those that fitting would leave
    without a trained token (a supervised row that trains nothing is a bad record, not a row)."""
    docs: list[EncodedDoc] = []
    rejected: list[Rejected] = []
    for record, item in zip(records, items, strict=True):
        if isinstance(item, Rejected):
            rejected.append(item)
        elif loses_all_labels(item, config):
            reason = f"no trained token left after truncation to max_length {config.max_length}"
            payload = record.payload.as_json() if record.payload is not None else {}
            raw = json.dumps(payload, ensure_ascii=False)
            rejected.append(Rejected(record.source, record.line, reason, raw, without_labels=True))
        else:
            docs.append(item)
    return docs, rejected
