"""What the rows hold: positions, real, padded and trained tokens, length distributions and
histograms, and fill per bucket."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shaping.fill import count_buckets, ratio
from .analysis import PartStats
from .layout import Layout


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


def length_stats(values: np.ndarray) -> LengthStats | None:
    """min, mean, percentiles and max of a per-row count; ``None`` for no rows."""
    if len(values) == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LengthStats(
        min=int(values.min()),
        mean=round(float(values.mean()), 3),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        max=int(values.max()),
    )


def histogram(values: np.ndarray, lo: int, hi: int, bins: int = 16) -> tuple[HistogramBin, ...]:
    """Rows per length range over ``[lo, hi]`` in at most ``bins`` integer-aligned bins."""
    if len(values) == 0 or hi < lo:
        return ()
    step = max(1, -(-(hi - lo + 1) // bins))
    edges = np.arange(lo, hi + step + 1, step)
    counts, _ = np.histogram(values, bins=edges)
    return tuple(
        HistogramBin(int(a), int(min(b - 1, hi)), int(c))
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    )


def data_stats(data: PartStats, layout: Layout) -> DataStats:
    positions = int(data.width.sum())
    real_tokens = int(data.real.sum())
    label_tokens = int(data.trained.sum())
    top = int(data.width.max()) if len(data.width) else 0
    buckets: list[BucketStats] = []
    if layout.strategy == "bucket":
        previous = 0
        for width, bucket in count_buckets(data.width, data.real).items():
            reals = data.real[data.width == width]
            lengths = length_stats(reals)
            assert lengths is not None
            buckets.append(
                BucketStats(
                    width=width,
                    rows=bucket.rows,
                    positions=bucket.positions,
                    real_tokens=bucket.real_tokens,
                    fill=bucket.fill,
                    lengths=lengths,
                    histogram=histogram(reals, min(previous + 1, width), width, 8),
                )
            )
            previous = width
    documents = data.documents if data.packed else None
    return DataStats(
        rows=len(data.row_ids),
        positions=positions,
        real_tokens=real_tokens,
        pad_tokens=positions - real_tokens,
        pad_fraction=ratio(positions - real_tokens, positions),
        label_tokens=label_tokens,
        label_fraction=ratio(label_tokens, real_tokens),
        lengths=length_stats(data.real),
        histogram=histogram(data.real, 0, top),
        documents=int(documents.sum()) if documents is not None else None,
        documents_per_row=length_stats(documents) if documents is not None else None,
        buckets=tuple(buckets),
    )
