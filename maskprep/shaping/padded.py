"""One row per fitted piece, padded to the width its strategy picks: ``pad`` (every row
``max_length``), ``bucket`` (the smallest bucket that holds the piece) or ``none`` (the piece's own
length: no padding at all)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..config import ShapeConfig
from ..tokenizing.encoder import EncodedDoc
from .fit import ShapeStats, fit
from .rows import RowBatch, pad_ragged


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
