"""How full the written rows are: real tokens against positions, per strategy and per bucket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from . import columns
from .config import ShapeConfig
from .shaping import RowBatch


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
    """Fill of the rows a build wrote. ``documents`` counts the pieces placed in rows (several
    per packed row); ``buckets`` splits the counts by row length, kept for strategy ``bucket``."""

    strategy: str
    rows: int = 0
    documents: int = 0
    positions: int = 0
    real_tokens: int = 0
    buckets: dict[int, BucketFill] = field(default_factory=dict)

    @classmethod
    def for_shape(cls, config: ShapeConfig) -> FillStats:
        """Empty counts for a build shaped by ``config``, with every configured bucket listed."""
        return cls(config.strategy, buckets={size: BucketFill() for size in config.buckets or ()})

    def add(self, batch: RowBatch) -> None:
        """Count one batch of rows."""
        widths = np.diff(batch.offsets.astype(np.int64))
        self.rows += batch.num_rows
        self.positions += int(widths.sum())
        self.real_tokens += int(batch.length.sum())
        seq_lens = batch.extra.get(columns.SEQ_LENS)
        self.documents += batch.num_rows if seq_lens is None else len(pc.list_flatten(seq_lens))
        if self.strategy != "bucket":
            return
        sizes, inverse, counts = np.unique(widths, return_inverse=True, return_counts=True)
        real = np.bincount(inverse, weights=batch.length, minlength=len(sizes))
        for size, count, tokens in zip(sizes.tolist(), counts.tolist(), real.tolist(), strict=True):
            bucket = self.buckets.setdefault(size, BucketFill())
            bucket.rows += count
            bucket.positions += count * size
            bucket.real_tokens += int(tokens)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the manifest: counts, ``fill`` (real / positions), documents per row,
        and for buckets one entry per configured bucket, shortest first."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "rows": self.rows,
            "documents": self.documents,
            "positions": self.positions,
            "real_tokens": self.real_tokens,
            "fill": _ratio(self.real_tokens, self.positions),
            "documents_per_row": _ratio(self.documents, self.rows),
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
