"""What the rows hold: positions, real, padded and trained tokens, length distributions and
histograms, and fill per bucket."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shaping.fill import BucketFill, ratio
from .layout import Layout
from .stats import ColumnStats


@dataclass(frozen=True)
class LengthStats:
    """Distribution of a per-row count (real tokens per row, documents per row)."""

    min: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: int


@dataclass(frozen=True)
class HistogramBin:
    """Rows whose real-token count lies in ``[lo, hi]``."""

    lo: int
    hi: int
    rows: int


@dataclass(frozen=True)
class BucketStats:
    """Rows of one width in bucketed data: how full they are and how their lengths spread."""

    width: int
    rows: int
    positions: int
    real_tokens: int
    fill: float
    lengths: LengthStats
    histogram: tuple[HistogramBin, ...]


@dataclass(frozen=True)
class DataStats:
    """What the rows hold. ``pad_fraction`` is padding over all positions (compute spent on
    nothing), ``label_fraction`` trained tokens over real tokens. ``lengths`` are real tokens per
    row. ``documents`` fields are set for packed rows only."""

    rows: int
    positions: int
    real_tokens: int
    pad_tokens: int
    pad_fraction: float
    label_tokens: int
    label_fraction: float
    lengths: LengthStats | None
    histogram: tuple[HistogramBin, ...]
    documents: int | None
    documents_per_row: LengthStats | None
    buckets: tuple[BucketStats, ...]


def percentiles(values: np.ndarray, counts: np.ndarray, q: list[float]) -> list[float]:
    """``np.percentile(data, q)`` (linear interpolation) of the data in which each of the sorted
    ``values`` occurs ``counts`` times, without making that data: the same arithmetic as NumPy's,
    so the same floats."""
    n = int(counts.sum())
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    # NumPy's virtual index for the linear method, written as NumPy writes it.
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = n - 1
    following[above] = n - 1
    gamma = virtual - np.floor(virtual)
    ends = np.cumsum(counts)
    low = values[np.searchsorted(ends, previous.astype(np.int64), side="right")]
    high = values[np.searchsorted(ends, following.astype(np.int64), side="right")]
    diff = high - low
    result = low + diff * gamma
    result = np.where(gamma >= 0.5, high - diff * (1 - gamma), result)
    return [float(x) for x in result]


def length_stats(values: np.ndarray, counts: np.ndarray) -> LengthStats | None:
    """min, mean, percentiles and max of a per-row count, from the sorted distinct ``values``
    and how many rows have each; ``None`` for no rows. The same numbers as computed from every
    row (NumPy's linear percentiles)."""
    keep = counts > 0
    values, counts = values[keep].astype(np.int64), counts[keep]
    if not len(values):
        return None
    p50, p90, p99 = percentiles(values, counts, [50, 90, 99])
    total = int((values * counts).sum())
    return LengthStats(
        min=int(values[0]),
        mean=round(total / int(counts.sum()), 3),
        p50=p50,
        p90=p90,
        p99=p99,
        max=int(values[-1]),
    )


def histogram(
    values: np.ndarray, counts: np.ndarray, lo: int, hi: int, bins: int = 16
) -> tuple[HistogramBin, ...]:
    """Rows per length range over ``[lo, hi]`` in at most ``bins`` integer-aligned bins, from the
    distinct ``values`` and how many rows have each."""
    if not int(counts.sum()) or hi < lo:
        return ()
    step = max(1, -(-(hi - lo + 1) // bins))
    edges = np.arange(lo, hi + step + 1, step)
    # Every value lies below the last edge, so each bin is [a, b): as np.histogram counts them.
    inside = (values >= edges[0]) & (values < edges[-1])
    slot = np.searchsorted(edges, values[inside], side="right") - 1
    per_bin = np.bincount(slot, weights=counts[inside], minlength=len(edges) - 1)
    return tuple(
        HistogramBin(int(a), int(min(b - 1, hi)), int(c))
        for a, b, c in zip(edges[:-1], edges[1:], per_bin, strict=True)
    )


def _by_value(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts summed per distinct value, values sorted."""
    distinct, where = np.unique(values, return_inverse=True)
    return distinct, np.bincount(where, weights=counts, minlength=len(distinct)).astype(np.int64)


def _bucket(width: int, reals: np.ndarray, counts: np.ndarray, low: int) -> BucketStats:
    """The rows of one width: ``reals`` (distinct real-token counts) held by ``counts`` rows."""
    rows = int(counts.sum())
    fill = BucketFill(width, rows, rows * width, int((reals * counts).sum()))
    lengths = length_stats(reals, counts)
    assert lengths is not None
    return BucketStats(
        width=width,
        rows=fill.rows,
        positions=fill.positions,
        real_tokens=fill.real_tokens,
        fill=fill.fill,
        lengths=lengths,
        histogram=histogram(reals, counts, min(low, width), width, 8),
    )


def data_stats(stats: ColumnStats, layout: Layout) -> DataStats:
    """What the rows read hold, for the summary."""
    width, real, rows = stats.shape_counts()
    positions, real_tokens, label_tokens = stats.positions, stats.real_tokens, stats.label_tokens
    top = int(width.max()) if len(width) else 0
    buckets: list[BucketStats] = []
    if layout.strategy == "bucket":
        previous = 0
        for size in np.unique(width).tolist():
            reals, counts = _by_value(real[width == size], rows[width == size])
            buckets.append(_bucket(size, reals, counts, previous + 1))
            previous = size
    reals, counts = _by_value(real, rows)
    documents = None
    documents_per_row = None
    if stats.packed:
        per_row = stats.documents.copy() if len(stats.documents) else np.zeros(1, np.int64)
        per_row[0] += stats.rows - int(stats.documents.sum())  # rows of unpacked shards hold none
        values = np.arange(len(per_row))
        documents = int((values * per_row).sum())
        documents_per_row = length_stats(values, per_row)
    return DataStats(
        rows=stats.rows,
        positions=positions,
        real_tokens=real_tokens,
        pad_tokens=positions - real_tokens,
        pad_fraction=ratio(positions - real_tokens, positions),
        label_tokens=label_tokens,
        label_fraction=ratio(label_tokens, real_tokens),
        lengths=length_stats(reals, counts),
        histogram=histogram(reals, counts, 0, top),
        documents=documents,
        documents_per_row=documents_per_row,
        buckets=tuple(buckets),
    )
