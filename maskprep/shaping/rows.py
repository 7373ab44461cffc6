"""Rows as flat Arrow-ready arrays, and padding fitted pieces into them: the ``pad``, ``bucket``
and ``none`` strategies (:class:`PaddedShaper`), one row per piece.

A padded row of ``max_length`` 6 holding a 4-token document, right and left padded (P = pad id)::

    right:  input_ids [c a t s P P]   attention_mask [1 1 1 1 0 0]   labels [c a t s -100 -100]
    left:   input_ids [P P c a t s]   attention_mask [0 0 1 1 1 1]   labels [-100 -100 -100 a t s]

Labels come from positions (the mask and the document's trained span), never from comparing ids
with the pad id: with ``pad_token == eos_token`` that would also hide every real EOS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns
from ..columns import IGNORE_INDEX
from ..config import ShapeConfig
from ..tokenizing.encoder import EncodedDoc
from .fit import Piece, ShapeStats, fit


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


class PaddedShaper:
    """The ``pad``, ``bucket`` and ``none`` strategies: each piece a row of its own, as wide as
    :meth:`widths` says, padded on ``padding_side``. Nothing is held back between batches."""

    def __init__(self, config: ShapeConfig, pad_id: int, padding_side: str) -> None:
        self.config = config
        self.pad_id = pad_id
        # An unpadded row has no padding to put on a side.
        self.padding_side = "right" if config.strategy == "none" else padding_side
        self.buckets = np.asarray(config.buckets or (), dtype=np.int64)
        self.stats = ShapeStats()

    def widths(self, lengths: np.ndarray) -> np.ndarray:
        """The width of the row for each piece length."""
        if self.config.strategy == "bucket":
            # fit() keeps every piece within max_length, the largest bucket.
            return self.buckets[np.searchsorted(self.buckets, lengths, side="left")]
        if self.config.strategy == "none":
            return lengths
        return np.full(len(lengths), self.config.max_length, dtype=np.int64)

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit a batch of documents and make their rows; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if pieces:
            lengths = np.fromiter((len(p.ids) for p in pieces), np.int64, count=len(pieces))
            yield pad_ragged(pieces, self.widths(lengths), self.pad_id, self.padding_side)

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input: none, every row is made at once."""
        return iter(())

    def snapshot(self) -> dict[str, Any]:
        """What this shaper holds between batches (for a resumed build, see
        :mod:`maskprep.resume`): its counts."""
        return {"stats": self.stats.as_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        """Take up a :meth:`snapshot`, as JSON gave it back."""
        self.stats = ShapeStats.from_dict(state["stats"])
