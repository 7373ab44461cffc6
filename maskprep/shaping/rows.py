"""Rows as flat Arrow-ready arrays, and padding fitted pieces into them.

A padded row of ``max_length`` 6 holding a 4-token document, right and left padded (P = pad id)::

    right:  input_ids [c a t s P P]   attention_mask [1 1 1 1 0 0]   labels [c a t s -100 -100]
    left:   input_ids [P P c a t s]   attention_mask [0 0 1 1 1 1]   labels [-100 -100 -100 a t s]

Labels come from positions (the mask and the document's trained span), never from comparing ids
with the pad id: with ``pad_token == eos_token`` that would also hide every real EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import columns
from ..columns import IGNORE_INDEX
from .fit import Piece


@dataclass(frozen=True)
class RowBatch:
    """Rows as flat Arrow-ready arrays: row ``i`` spans ``offsets[i]:offsets[i + 1]``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    length: np.ndarray
    extra: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows in the batch."""
        return len(self.length)

    def to_arrow(self) -> pa.RecordBatch:
        """The batch as an Arrow record batch following :func:`maskprep.columns.schema`."""
        arrays = {
            columns.INPUT_IDS: columns.list_array(self.offsets, self.input_ids, np.int32),
            columns.ATTENTION_MASK: columns.list_array(self.offsets, self.attention_mask, np.int8),
            columns.LABELS: columns.list_array(self.offsets, self.labels, np.int32),
            columns.LENGTH: columns.from_numpy(self.length, np.int32),
            **self.extra,
        }
        schema = columns.schema(packed=columns.POSITION_IDS in self.extra)
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in schema], schema=schema)


def flatten_pieces(pieces: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lengths of the pieces, and their ids and trained flags concatenated."""
    lengths = np.fromiter((len(p.ids) for p in pieces), dtype=np.int64, count=len(pieces))
    if not pieces:
        return lengths, np.empty(0, np.int32), np.empty(0, bool)
    flat_ids = np.concatenate([p.ids for p in pieces]).astype(np.int32, copy=False)
    flat_trained = np.concatenate([p.trained for p in pieces]).astype(bool, copy=False)
    return lengths, flat_ids, flat_trained


def run_starts(lengths: np.ndarray) -> np.ndarray:
    """Offset of each run in the concatenation of runs of these lengths."""
    return np.cumsum(lengths) - lengths


def pad_ragged(
    pieces: Sequence[Piece], widths: np.ndarray, pad_id: int, padding_side: str
) -> RowBatch:
    """One row per piece, row ``i`` padded to ``widths[i]`` (at least the piece's length).

    Bucketed rows pass their bucket as the width; unpadded rows (strategy ``none``) pass the
    pieces' own lengths. Vectorised: every real token is scattered to its flat position at once.
    """
    lengths, flat_ids, flat_trained = flatten_pieces(pieces)
    widths = np.asarray(widths, dtype=np.int64)
    if np.any(widths < lengths):
        raise AssertionError("internal error: a row is narrower than its document")
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    lead = widths - lengths if padding_side == "left" else np.zeros_like(lengths)
    total = int(lengths.sum())
    dest = (
        np.arange(total)
        - np.repeat(run_starts(lengths), lengths)
        + np.repeat(offsets[:-1] + lead, lengths)
    )
    size = int(offsets[-1])
    input_ids = np.full(size, pad_id, dtype=np.int32)
    attention_mask = np.zeros(size, dtype=np.int8)
    labels = np.full(size, IGNORE_INDEX, dtype=np.int32)
    input_ids[dest] = flat_ids
    attention_mask[dest] = 1
    labels[dest] = np.where(flat_trained, flat_ids, IGNORE_INDEX)
    if padding_side == "left":
        # The model predicts label i from position i - 1. Left padded, that position of the first
        # real token is a pad: training it would put a pad in the loss. (Right padded, label 0 is
        # never predicted, so it may stay.)
        labels[offsets[:-1][lengths > 0] + lead[lengths > 0]] = IGNORE_INDEX
    return RowBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        offsets=offsets.astype(np.int32),
        length=lengths.astype(np.int32),
    )
