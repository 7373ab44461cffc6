"""How full rows are: real tokens against positions, per strategy and per bucket.

One way to count it for everyone: a :class:`BucketFill` (rows of one width and the real tokens they
hold) is what a build counts as it writes (:func:`count_buckets`, vectorised over a batch), what
``inspect`` reports per bucket of the shards it reads, and, summed with :meth:`Fill.sum`, what a
merge records; :func:`ratio` is the rounding every fraction maskprep reports uses. The other
share a build reports beside the fill: the tokens it read and lost to ``overflow``
(:class:`LostTokens`), held to ``max_truncated``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from .. import columns
from ..config import ShapeConfig
from ..errors import DataError
from .fit import ShapeStats
from .rows import RowBatch


def ratio(part: int | float, whole: int | float) -> float:
    """``part / whole`` rounded to 6 digits, 0.0 when ``whole`` is 0: every fraction maskprep
    records or reports (fill, pad and label fractions)."""
    return round(part / whole, 6) if whole else 0.0


@dataclass(frozen=True)
class BucketFill:
    """Rows of one width (one bucket) and the real tokens they hold."""

    length: int
    rows: int = 0
    positions: int = 0
    real_tokens: int = 0

    @property
    def fill(self) -> float:
        """Real tokens over positions."""
        return ratio(self.real_tokens, self.positions)

    def __add__(self, other: BucketFill) -> BucketFill:
        if other.length != self.length:
            raise ValueError(f"cannot add bucket {other.length} to bucket {self.length}")
        return BucketFill(
            self.length,
            self.rows + other.rows,
            self.positions + other.positions,
            self.real_tokens + other.real_tokens,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the manifest: the fields, then the fill."""
        return {**asdict(self), "fill": self.fill}


def count_buckets(widths: np.ndarray, real: np.ndarray) -> dict[int, BucketFill]:
    """Rows grouped by width: for rows of widths ``widths`` holding ``real`` real tokens each,
    one :class:`BucketFill` per distinct width."""
    widths = np.asarray(widths, dtype=np.int64)
    sizes, inverse, counts = np.unique(widths, return_inverse=True, return_counts=True)
    tokens = np.bincount(inverse, weights=np.asarray(real, np.float64), minlength=len(sizes))
    return {
        size: BucketFill(size, count, count * size, int(total))
        for size, count, total in zip(sizes.tolist(), counts.tolist(), tokens.tolist(), strict=True)
    }


def add_buckets(*groups: Mapping[int, BucketFill]) -> dict[int, BucketFill]:
    """Buckets of several counts summed width by width, sorted by width."""
    summed: dict[int, BucketFill] = {}
    for group in groups:
        for length, bucket in group.items():
            summed[length] = summed[length] + bucket if length in summed else bucket
    return dict(sorted(summed.items()))


@dataclass(frozen=True)
class Fill:
    """How full a build's rows are, as the manifest records it: ``documents`` counts the pieces
    placed in rows (several per packed row); ``buckets`` (strategy ``bucket`` only, else
    ``None``) lists every configured bucket, shortest first, including empty ones."""

    strategy: str
    rows: int
    documents: int
    positions: int
    real_tokens: int
    buckets: tuple[BucketFill, ...] | None = None

    @property
    def fill(self) -> float:
        """Real tokens over positions."""
        return ratio(self.real_tokens, self.positions)

    @property
    def documents_per_row(self) -> float:
        """Documents (pieces) per row."""
        return ratio(self.documents, self.rows)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the manifest, with the derived fractions."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "rows": self.rows,
            "documents": self.documents,
            "positions": self.positions,
            "real_tokens": self.real_tokens,
            "fill": self.fill,
            "documents_per_row": self.documents_per_row,
        }
        if self.buckets is not None:
            data["buckets"] = [b.as_dict() for b in self.buckets]
        return data

    @classmethod
    def sum(cls, items: Sequence[Fill]) -> Fill:
        """The fill of the parts ``items`` of one build taken together (``merge``)."""
        buckets = None
        if items[0].buckets is not None:
            groups = [{b.length: b for b in item.buckets or ()} for item in items]
            buckets = tuple(add_buckets(*groups).values())
        return cls(
            items[0].strategy,
            sum(i.rows for i in items),
            sum(i.documents for i in items),
            sum(i.positions for i in items),
            sum(i.real_tokens for i in items),
            buckets,
        )


@dataclass
class FillStats:
    """Fill counted while a build writes: ``documents`` (pieces placed in rows) and, for strategy
    ``bucket``, rows per width. Rows, positions and real tokens overall are the written shards'
    (see :meth:`result`)."""

    strategy: str
    documents: int = 0
    buckets: dict[int, BucketFill] = field(default_factory=dict)

    @classmethod
    def for_shape(cls, config: ShapeConfig) -> FillStats:
        """Empty counts for a build shaped by ``config``, with every configured bucket listed."""
        return cls(config.strategy, buckets={s: BucketFill(s) for s in config.buckets or ()})

    def add(self, batch: RowBatch) -> None:
        """Count one batch of rows."""
        seq_lens = batch.extra.get(columns.SEQ_LENS)
        self.documents += batch.num_rows if seq_lens is None else len(pc.list_flatten(seq_lens))
        if self.strategy == "bucket":
            widths = np.diff(batch.offsets.astype(np.int64))
            self.buckets = add_buckets(self.buckets, count_buckets(widths, batch.length))

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON (for a resumed build)."""
        return {
            "documents": self.documents,
            "buckets": [
                [b.length, b.rows, b.positions, b.real_tokens] for b in self.buckets.values()
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take up the counts :meth:`snapshot` gave."""
        self.documents = int(state["documents"])
        self.buckets = {int(s): BucketFill(int(s), int(r), int(p), int(t))
                        for s, r, p, t in state["buckets"]}  # fmt: skip

    def result(self, rows: int, positions: int, real_tokens: int) -> Fill:
        """The :class:`Fill` of the build, given its row, position and real-token totals."""
        buckets = tuple(self.buckets.values()) if self.strategy == "bucket" else None
        return Fill(self.strategy, rows, self.documents, positions, real_tokens, buckets)


@dataclass(frozen=True)
class LostTokens:
    """The tokens a build read and lost to ``overflow``: cut by truncation, or dropped with their
    documents. ``read`` is every token of every document written or dropped (the frame
    included), as encoded: the real tokens written plus those lost (with ``overflow`` split no
    token is lost)."""

    lost: int
    read: int
    documents_truncated: int
    documents_dropped: int

    @classmethod
    def of(cls, shape: ShapeStats, real_tokens: int) -> LostTokens:
        """What ``shape`` (the fitting counts) lost of ``real_tokens`` written plus the lost."""
        lost = shape.tokens_truncated + shape.tokens_dropped
        return cls(lost, real_tokens + lost, shape.documents_truncated, shape.documents_dropped)

    @property
    def share(self) -> float:
        """Lost over read (0 when nothing was read)."""
        return ratio(self.lost, self.read)

    def past(self, limit: float) -> bool:
        """Whether more than ``limit`` (a fraction) of the tokens read were lost."""
        return self.lost > limit * self.read

    def describe(self, max_length: int) -> str:
        """One line: how much was lost, how, and at what length."""
        how = []
        if self.documents_truncated:
            how.append(f"{self.documents_truncated:,} documents truncated")
        if self.documents_dropped:
            how.append(f"{self.documents_dropped:,} dropped as too long")
        return (
            f"{self.share:.1%} of the tokens read ({self.lost:,} of {self.read:,}) were lost to "
            f"max_length {max_length} ({', '.join(how)})"
        )


class TruncationPastLimit(DataError):
    """More of the tokens read were lost to ``overflow`` than ``max_truncated`` allows: the build
    fails as a bad record under the ``fail`` policy does (no manifest; its complete shards stay
    for a resume)."""


def check_truncation(config: ShapeConfig, lost: LostTokens, where: str) -> None:
    """Raise :class:`TruncationPastLimit` when more tokens were lost than the limit allows."""
    limit = config.max_truncated
    if limit is None or not lost.past(limit):
        return
    raise TruncationPastLimit(
        f"{where}: {lost.describe(config.max_length)}, more than the max_truncated limit "
        f"of {100 * limit:g}%; the output is left unfinished (no manifest)"
    )
