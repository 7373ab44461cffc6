"""How full the written rows are: real tokens against positions, per strategy and per bucket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from .. import columns
from ..config import ShapeConfig
from .rows import RowBatch


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


@dataclass
class BucketFill:
    """Rows of one length (one bucket) and the real tokens they hold."""

    rows: int = 0
    positions: int = 0
    real_tokens: int = 0


@dataclass
class FillStats:
    """What fill adds to a build's totals: ``documents`` counts the pieces placed in rows (several
    per packed row); ``buckets`` splits the rows by length, kept for strategy ``bucket``. Rows,
    positions and real tokens overall are the build's :class:`~maskprep.pipeline.Totals`."""

    strategy: str
    documents: int = 0
    buckets: dict[int, BucketFill] = field(default_factory=dict)

    @classmethod
    def for_shape(cls, config: ShapeConfig) -> FillStats:
        """Empty counts for a build shaped by ``config``, with every configured bucket listed."""
        return cls(config.strategy, buckets={size: BucketFill() for size in config.buckets or ()})

    def add(self, batch: RowBatch) -> None:
        """Count one batch of rows."""
        seq_lens = batch.extra.get(columns.SEQ_LENS)
        self.documents += batch.num_rows if seq_lens is None else len(pc.list_flatten(seq_lens))
        if self.strategy != "bucket":
            return
        widths = np.diff(batch.offsets.astype(np.int64))
        sizes, inverse, counts = np.unique(widths, return_inverse=True, return_counts=True)
        real = np.bincount(inverse, weights=batch.length, minlength=len(sizes))
        for size, count, tokens in zip(sizes.tolist(), counts.tolist(), real.tolist(), strict=True):
            bucket = self.buckets.setdefault(size, BucketFill())
            bucket.rows += count
            bucket.positions += count * size
            bucket.real_tokens += int(tokens)

    def as_dict(self, rows: int, positions: int, real_tokens: int) -> dict[str, Any]:
        """Plain dict for the manifest, given the build's row, position and real-token totals:
        counts, ``fill`` (real / positions), documents per row, and for buckets one entry per
        configured bucket, shortest first."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "rows": rows,
            "documents": self.documents,
            "positions": positions,
            "real_tokens": real_tokens,
            "fill": _ratio(real_tokens, positions),
            "documents_per_row": _ratio(self.documents, rows),
        }
        if self.strategy == "bucket":
            data["buckets"] = [
                {
                    "length": size,
                    "rows": b.rows,
                    "positions": b.positions,
                    "real_tokens": b.real_tokens,
                    "fill": _ratio(b.real_tokens, b.positions),
                }
                for size, b in sorted(self.buckets.items())
            ]
        return data
