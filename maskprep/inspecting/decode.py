"""Decoding a row for display: runs of one role (trained, prompt, padding) and one packed
document, each decoded as a whole."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .. import columns
from ..columns import IGNORE_INDEX
from .results import DecodedRow, Role, Segment


def decode_row(row: dict[str, Any], index: int, tokenizer: Any) -> DecodedRow:
    """Cut one row (a dict of its columns' values) into runs of one role and one document, and
    decode each run as a whole, so multi-byte characters split across tokens read correctly."""
    ids = np.asarray(row[columns.INPUT_IDS], np.int64)
    mask = np.asarray(row[columns.ATTENTION_MASK], np.int64)
    labels = np.asarray(row[columns.LABELS], np.int64)
    width = min(len(ids), len(mask), len(labels))
    ids, mask, labels = ids[:width], mask[:width], labels[:width]
    role = np.where(mask == 0, 2, np.where(labels != IGNORE_INDEX, 0, 1))
    document = np.full(width, -1, np.int64)
    seq_lens = row.get(columns.SEQ_LENS)
    real_at = np.flatnonzero(mask != 0)
    if seq_lens is not None and len(real_at):
        # Documents fill the real positions in order; anything beyond sum(seq_lens) is shown as
        # part of the last document so a broken row still displays every token.
        bounds = np.cumsum(np.maximum(np.asarray(seq_lens, np.int64), 0))
        numbers = np.searchsorted(bounds, np.arange(len(real_at)), side="right")
        document[real_at] = np.minimum(numbers, max(len(seq_lens) - 1, 0))
    change = np.flatnonzero((np.diff(role) != 0) | (np.diff(document) != 0)) + 1
    cuts = np.concatenate(([0], change, [width])).astype(int)
    names: tuple[Role, Role, Role] = ("trained", "prompt", "padding")
    segments = []
    for start, stop in itertools.pairwise(cuts):
        if start == stop:
            continue
        kind = names[int(role[start])]
        run = tuple(int(i) for i in ids[start:stop])
        text = "" if kind == "padding" else tokenizer.decode(list(run), skip_special_tokens=False)
        doc = int(document[start]) if seq_lens is not None and document[start] >= 0 else None
        segments.append(Segment(kind, doc, run, text))
    return DecodedRow(index, width, int(np.count_nonzero(mask)), tuple(segments))
