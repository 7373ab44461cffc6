"""The strategies that make one row per fitted piece: ``pad`` (every row ``max_length``),
``bucket`` (each row the smallest bucket that holds it) and ``none`` (each row exactly its
piece, no padding)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..config import ShapeConfig
from ..tokenizing.encoder import EncodedDoc
from .fit import ShapeStats, fit
from .rows import RowBatch, pad_ragged, pad_rows


class PadShaper:
    """The ``pad`` strategy: one row per piece, every row exactly ``max_length`` long."""

    def __init__(self, config: ShapeConfig, pad_id: int, padding_side: str) -> None:
        self.config = config
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.stats = ShapeStats()

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit and pad a batch of documents; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if pieces:
            yield pad_rows(pieces, self.config.max_length, self.pad_id, self.padding_side)

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input (none for padding)."""
        return iter(())


class BucketShaper:
    """The ``bucket`` strategy: one row per piece, padded to the smallest bucket that holds it."""

    def __init__(self, config: ShapeConfig, pad_id: int, padding_side: str) -> None:
        self.config = config
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.buckets = np.asarray(config.buckets, dtype=np.int64)
        self.stats = ShapeStats()

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit each document and pad it to its bucket; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if not pieces:
            return
        lengths = np.fromiter((len(p.ids) for p in pieces), dtype=np.int64, count=len(pieces))
        # fit() keeps every piece within max_length, the largest bucket.
        widths = self.buckets[np.searchsorted(self.buckets, lengths, side="left")]
        yield pad_ragged(pieces, widths, self.pad_id, self.padding_side)

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input (none for buckets)."""
        return iter(())


class UnpaddedShaper:
    """The ``none`` strategy: one row per piece, exactly as long as the piece, no padding."""

    def __init__(self, config: ShapeConfig, pad_id: int) -> None:
        self.config = config
        self.pad_id = pad_id
        self.stats = ShapeStats()

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit each document into one unpadded row; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if pieces:
            widths = np.fromiter((len(p.ids) for p in pieces), np.int64, count=len(pieces))
            yield pad_ragged(pieces, widths, self.pad_id, "right")

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input (none without padding)."""
        return iter(())
