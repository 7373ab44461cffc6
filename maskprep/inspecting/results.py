"""What ``maskprep inspect`` returns: :class:`InspectResult`, the summary of what the rows hold
(:func:`data_stats`), the manifest's facts about the build (:func:`build_facts`) and rows decoded
for display (:func:`decode_row`)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from .. import columns
from ..columns import IGNORE_INDEX
from ..output.manifest import Manifest
from ..shaping.fill import BucketFill, ratio
from .checks import CheckResult, failures
from .layout import Layout
from .stats import ColumnStats

Role = Literal["trained", "prompt", "padding"]


@dataclass(frozen=True)
class BuildFacts:
    """What the manifest says about the build that wrote the data."""

    maskprep_version: str | None
    documents_read: int | None
    documents_truncated: int | None
    documents_dropped: int | None
    documents_split: int | None
    records_rejected: int | None
    tokens_lost: int | None
    tokenizer: dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """A run of one row's tokens with one role, inside one packed document (``document`` is its
    number within the row; ``None`` for padding and for unpacked rows)."""

    role: Role
    document: int | None
    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class DecodedRow:
    """One row shown as decoded segments; ``index`` is its row number in the whole data."""

    index: int
    width: int
    real_tokens: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class InspectResult:
    """Everything ``maskprep inspect`` reports. ``rows_total`` rows exist; ``rows`` of them
    were inspected (fewer when sampled)."""

    source: str
    shards: tuple[str, ...]
    rows_total: int
    sampled: bool
    layout: Layout
    stats: DataStats
    build: BuildFacts | None
    checks: tuple[CheckResult, ...]
    decoded: tuple[DecodedRow, ...]
    elapsed_s: float

    def failures(self, strict: bool = False) -> list[CheckResult]:
        """Checks that failed; with ``strict``, warnings too."""
        return failures(self.checks, strict)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed), as ``maskprep inspect`` exits 0."""
        return not self.failures()

    def passes(self, strict: bool = False) -> bool:
        """True when no check failed and, with ``strict``, none warned."""
        return not self.failures(strict)


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


def build_facts(manifest: Manifest) -> BuildFacts:
    """What the manifest says about the build that wrote the data."""
    totals = manifest.totals
    tokenizer = asdict(manifest.tokenizer)
    keep = (
        "name_or_path",
        "revision",
        "tokenizer_class",
        "vocab_size",
        "fingerprint",
        "pad_token",
        "pad_token_id",
        "eos_token",
        "eos_token_id",
        "bos_token_id",
        "padding_side",
    )
    return BuildFacts(
        maskprep_version=manifest.maskprep_version,
        documents_read=totals.records_read,
        documents_truncated=totals.shape.documents_truncated,
        documents_dropped=totals.shape.documents_dropped,
        documents_split=totals.shape.documents_split,
        records_rejected=totals.records_rejected,
        tokens_lost=totals.shape.tokens_truncated + totals.shape.tokens_dropped,
        tokenizer={k: tokenizer[k] for k in keep if k in tokenizer},
    )


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
