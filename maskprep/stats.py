"""Mask statistics and the data contract's invariant checks, vectorised over whole columns.

Rows arrive as Arrow record batches and are read as flat NumPy arrays plus list offsets: row ``i``
of ``input_ids`` is ``ids[offsets[i]:offsets[i + 1]]``. Every check turns the flat arrays into a
flag per position (``labels != IGNORE_INDEX`` where ``attention_mask == 0``, …) and folds those
flags into a flag per row, so a batch of millions of positions costs a handful of NumPy passes and
no Python loop per token or per row.

The work is split in two so that any amount of data streams through in bounded memory:

* :func:`analyse` reads one batch and keeps only per-row numbers (widths, real and trained token
  counts, the padding seen, one flag per row and check): a few bytes per row.
* :func:`conclude` joins the per-row numbers of every batch, settles what the whole data set must
  agree on (strategy, bucket widths, padding side, pad id: from what the build recorded, else from
  the data), and turns the flags into :class:`CheckResult` objects and :class:`DataStats`.

:func:`check_table` does both for one in-memory table; tests and ``maskprep verify`` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from . import columns
from .columns import IGNORE_INDEX
from .errors import DataError

STRATEGIES = ("pad", "bucket", "pack", "none")
PADDING_SIDES = ("left", "right")

Status = Literal["pass", "fail", "warn", "skip"]
Kind = Literal["invariant", "warning"]

# Check names: stable, they are part of the JSON output.
SHARDS_MATCH_MANIFEST = "shards_match_manifest"
LIST_LENGTHS = "list_lengths"
MASK_BINARY = "mask_binary"
LENGTH_MATCHES_MASK = "length_matches_mask"
LABELS_ON_PADDING = "labels_on_padding"
LABELS_MATCH_INPUTS = "labels_match_inputs"
PADDING_CONTIGUOUS = "padding_contiguous"
PADDING_HOLDS_PAD_ID = "padding_holds_pad_id"
ROW_WIDTH = "row_width"
SEQ_LENS_SUM = "seq_lens_sum"
POSITION_IDS_RESTART = "position_ids_restart"
DOCUMENT_START_LABEL = "document_start_label"
EOS_MASKED_BY_VALUE = "eos_masked_by_value"
EOS_NEVER_TRAINED = "eos_never_trained"
ROWS_WITHOUT_LABELS = "rows_without_labels"
PAD_FRACTION = "pad_fraction"
LABEL_FRACTION = "label_fraction"


@dataclass(frozen=True)
class CheckSpec:
    """What a check asserts; ``invariant`` is its number in the data contract (DESIGN.md)."""

    name: str
    kind: Kind
    invariant: int | None
    description: str


#: Every check, in report order.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        SHARDS_MATCH_MANIFEST, "invariant", None, "shard files are the ones the manifest lists"
    ),
    CheckSpec(LIST_LENGTHS, "invariant", 1, "list columns of a row have one length"),
    CheckSpec(MASK_BINARY, "invariant", 1, "attention_mask holds only 0 and 1"),
    CheckSpec(LENGTH_MATCHES_MASK, "invariant", 1, "length == sum(attention_mask)"),
    CheckSpec(LABELS_ON_PADDING, "invariant", 2, "labels are -100 wherever attention_mask is 0"),
    CheckSpec(LABELS_MATCH_INPUTS, "invariant", 2, "labels are -100 or the input id"),
    CheckSpec(PADDING_CONTIGUOUS, "invariant", 3, "real tokens are one run opposite the padding"),
    CheckSpec(PADDING_HOLDS_PAD_ID, "invariant", 3, "padded positions hold the pad id"),
    CheckSpec(ROW_WIDTH, "invariant", 3, "each row is as wide as its strategy demands"),
    CheckSpec(SEQ_LENS_SUM, "invariant", 4, "sum(seq_lens) == length, no negative length"),
    CheckSpec(POSITION_IDS_RESTART, "invariant", 4, "position_ids count 0,1,2,… per document"),
    CheckSpec(DOCUMENT_START_LABEL, "invariant", 4, "the first label of every document is -100"),
    CheckSpec(
        EOS_MASKED_BY_VALUE, "invariant", 5, "no real EOS left untrained after a trained token"
    ),
    CheckSpec(EOS_NEVER_TRAINED, "warning", None, "EOS in the inputs is trained somewhere"),
    CheckSpec(ROWS_WITHOUT_LABELS, "warning", None, "every row trains at least one token"),
    CheckSpec(PAD_FRACTION, "warning", None, "pad fraction at most the allowed maximum"),
    CheckSpec(LABEL_FRACTION, "warning", None, "label fraction at least the required minimum"),
)
SPECS = {spec.name: spec for spec in CHECKS}

# Per-row flags that analyse() computes position by position.
_ROW_FLAGS = (
    LIST_LENGTHS,
    MASK_BINARY,
    LENGTH_MATCHES_MASK,
    LABELS_ON_PADDING,
    LABELS_MATCH_INPUTS,
    SEQ_LENS_SUM,
    POSITION_IDS_RESTART,
    DOCUMENT_START_LABEL,
    EOS_MASKED_BY_VALUE,
)

# Per-row code of where a row's padding is: which padding sides its mask is consistent with.
_SIDE_ANY, _SIDE_RIGHT, _SIDE_LEFT, _SIDE_NEITHER = 0, 1, 2, 3
# Stand-ins for "no padded position" in the per-row min/max of padded ids.
_NO_PAD_MIN = np.int64(np.iinfo(np.int64).max)
_NO_PAD_MAX = np.int64(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class CheckResult:
    """One check over the data: ``status`` is pass/fail (invariants), pass/warn (warnings) or skip
    (does not apply, or a fact it needs is unknown). ``count`` offending rows, the first of them in
    ``rows`` (indices into the whole data set), and a one-line ``detail``."""

    name: str
    kind: Kind
    status: Status
    count: int
    rows: tuple[int, ...]
    detail: str


@dataclass(frozen=True)
class LayoutHints:
    """Facts about the data known before reading it (from a manifest or the caller); ``None``
    fields are inferred from the data."""

    strategy: str | None = None
    max_length: int | None = None
    buckets: tuple[int, ...] | None = None
    padding_side: str | None = None
    pad_id: int | None = None
    eos_id: int | None = None
    strategy_source: str = "given"
    pad_id_source: str = "given"


@dataclass(frozen=True)
class Layout:
    """The shape the checks held the data to, and where each fact came from."""

    strategy: str
    strategy_source: str
    max_length: int | None
    buckets: tuple[int, ...] | None
    padding_side: str | None
    pad_id: int | None
    pad_id_source: str
    eos_id: int | None


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


@dataclass(frozen=True)
class Thresholds:
    """Limits for the practitioner's warnings; ``None`` leaves that warning off."""

    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None


@dataclass
class PartStats:
    """Per-row numbers of one analysed batch; ``row_ids`` place its rows in the whole data set."""

    row_ids: np.ndarray
    width: np.ndarray
    real: np.ndarray
    length: np.ndarray
    trained: np.ndarray
    documents: np.ndarray | None
    side: np.ndarray
    pad_min: np.ndarray
    pad_max: np.ndarray
    eos_untrained: np.ndarray
    flags: dict[str, np.ndarray]
    eos_real_tokens: int = 0
    eos_trained_tokens: int = 0
    packed: bool = False


# ----------------------------------------------------------------------------- reading batches


@dataclass(frozen=True)
class _List:
    """A list column as flat values and offsets rebased to start at 0."""

    values: np.ndarray
    offsets: np.ndarray


def _list_column(batch: pa.RecordBatch, name: str) -> _List:
    array = batch.column(name)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        raise DataError(f"column {name}: expected a list of integers, found {array.type}")
    if not pa.types.is_integer(array.type.value_type) and not pa.types.is_boolean(
        array.type.value_type
    ):
        raise DataError(f"column {name}: expected a list of integers, found {array.type}")
    if array.null_count:
        first = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"column {name}: row {first} is null")
    offsets = array.offsets.to_numpy().astype(np.int64)
    # .values ignores a slice's offset; cutting it by the offsets keeps zero-copy reads.
    values = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if values.null_count:
        raise DataError(f"column {name}: holds null values")
    return _List(values.to_numpy(zero_copy_only=False), offsets - offsets[0])


def _int_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    array = batch.column(name)
    if not pa.types.is_integer(array.type):
        raise DataError(f"column {name}: expected integers, found {array.type}")
    if array.null_count:
        first = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"column {name}: row {first} is null")
    return array.to_numpy(zero_copy_only=False).astype(np.int64)


def missing_columns(names: Sequence[str]) -> list[str]:
    """The contract's required columns absent from ``names``."""
    return [name for name in columns.REQUIRED_COLUMNS if name not in names]


# ----------------------------------------------------------------------------- vector helpers


def _uniform_width(offsets: np.ndarray) -> int | None:
    """The common width when every row has the same non-zero width (pad rows), else ``None``."""
    if len(offsets) < 2:
        return None
    width = int(offsets[1] - offsets[0])
    if width <= 0 or int(offsets[-1]) != width * (len(offsets) - 1):
        return None
    return width if bool((np.diff(offsets) == width).all()) else None


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-row sums of flat ``values`` cut at ``offsets`` (empty rows sum to 0)."""
    n = len(offsets) - 1
    out = np.zeros(n, np.int64)
    if n <= 0 or len(values) == 0:
        return out
    if values.dtype == bool:
        # Counting bytes is several times faster than summing booleans into int64.
        values = values.view(np.uint8)
    width = _uniform_width(offsets)
    if width is not None:
        # Equal widths (pad rows): a 2D sum along rows beats reduceat by about 5x.
        small = values.dtype == np.uint8 and width < np.iinfo(np.int32).max
        total = values.reshape(n, width).sum(axis=1, dtype=np.int32 if small else np.int64)
        return total.astype(np.int64, copy=False)
    nonempty = offsets[1:] > offsets[:-1]
    # reduceat gives an empty segment the value at its start, so only non-empty rows go in;
    # their starts still cut the flat array at the right places.
    out[nonempty] = np.add.reduceat(values, offsets[:-1][nonempty], dtype=np.int64)
    return out


def segment_any(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-row "any flag set"; fast when flags are rare, as offenders usually are."""
    out = np.zeros(len(offsets) - 1, bool)
    hits = np.flatnonzero(flags)
    if hits.size:
        out[np.searchsorted(offsets, hits, side="right") - 1] = True
    return out


def _segment_extreme(
    values: np.ndarray, offsets: np.ndarray, ufunc: np.ufunc, empty: int
) -> np.ndarray:
    width = _uniform_width(offsets)
    if width is not None:
        return ufunc.reduce(values.reshape(len(offsets) - 1, width), axis=1).astype(np.int64)
    out = np.full(len(offsets) - 1, empty, np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if nonempty.any():
        out[nonempty] = ufunc.reduceat(values, offsets[:-1][nonempty])
    return out


def _row_starts(offsets: np.ndarray) -> np.ndarray:
    """Flat index of the first position of every non-empty row."""
    return offsets[:-1][offsets[1:] > offsets[:-1]]


# ----------------------------------------------------------------------------- analyse


def analyse(batch: pa.RecordBatch, row_ids: np.ndarray, eos_id: int | None) -> PartStats:
    """Per-row numbers and per-row check flags of one batch whose rows are ``row_ids``.

    Raises :class:`DataError` when a contract column is missing or not a list of integers.
    """
    missing = missing_columns(batch.schema.names)
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}")
    row_ids = np.asarray(row_ids, np.int64)
    ids = _list_column(batch, columns.INPUT_IDS)
    widths = np.diff(ids.offsets)
    aligned = np.ones(len(widths), bool)
    for name in (columns.ATTENTION_MASK, columns.LABELS, columns.POSITION_IDS):
        if name in batch.schema.names:
            aligned &= np.diff(_list_column(batch, name).offsets) == widths
    if aligned.all():
        return _analyse_aligned(batch, row_ids, eos_id)
    # Position-by-position checks need the lists to line up; run them on the rows that do and
    # count the others from their own lists.
    keep = np.flatnonzero(aligned)
    parts = [_analyse_misaligned(batch.take(np.flatnonzero(~aligned)), row_ids[~aligned])]
    if keep.size:
        parts.append(_analyse_aligned(batch.take(keep), row_ids[keep], eos_id))
    return _merge(parts)


def _analyse_misaligned(batch: pa.RecordBatch, row_ids: np.ndarray) -> PartStats:
    n = batch.num_rows
    ids = _list_column(batch, columns.INPUT_IDS)
    mask = _list_column(batch, columns.ATTENTION_MASK)
    labels = _list_column(batch, columns.LABELS)
    flags = {name: np.zeros(n, bool) for name in _ROW_FLAGS}
    flags[LIST_LENGTHS][:] = True
    packed = columns.SEQ_LENS in batch.schema.names
    documents = None
    if packed:
        seq = _list_column(batch, columns.SEQ_LENS)
        documents = segment_sum(seq.values > 0, seq.offsets)
    return PartStats(
        row_ids=row_ids,
        width=np.diff(ids.offsets),
        real=segment_sum(mask.values != 0, mask.offsets),
        length=_int_column(batch, columns.LENGTH),
        trained=segment_sum(labels.values != IGNORE_INDEX, labels.offsets),
        documents=documents,
        side=np.full(n, _SIDE_ANY, np.int8),
        pad_min=np.full(n, _NO_PAD_MIN, np.int64),
        pad_max=np.full(n, _NO_PAD_MAX, np.int64),
        eos_untrained=np.zeros(n, bool),
        flags=flags,
        packed=packed,
    )


def _analyse_aligned(batch: pa.RecordBatch, row_ids: np.ndarray, eos_id: int | None) -> PartStats:
    names = batch.schema.names
    id_list = _list_column(batch, columns.INPUT_IDS)
    offsets = id_list.offsets
    n = len(offsets) - 1
    ids = id_list.values
    mask = _list_column(batch, columns.ATTENTION_MASK).values
    labels = _list_column(batch, columns.LABELS).values
    length = _int_column(batch, columns.LENGTH)
    width = np.diff(offsets)

    real_pos = mask != 0
    trained_pos = labels != IGNORE_INDEX
    real = segment_sum(real_pos, offsets)
    flags = {name: np.zeros(n, bool) for name in _ROW_FLAGS}
    flags[MASK_BINARY] = segment_any(real_pos & (mask != 1), offsets)
    flags[LENGTH_MATCHES_MASK] = length != segment_sum(mask, offsets)
    flags[LABELS_ON_PADDING] = segment_any(~real_pos & trained_pos, offsets)
    flags[LABELS_MATCH_INPUTS] = segment_any(real_pos & trained_pos & (labels != ids), offsets)

    side = _padding_sides(real_pos, offsets)
    # The smallest and largest id on each row's padded positions: one pad id means min == max.
    pad_min = _segment_extreme(
        np.where(real_pos, _NO_PAD_MIN, ids), offsets, np.minimum, _NO_PAD_MIN
    )
    pad_max = _segment_extreme(
        np.where(real_pos, _NO_PAD_MAX, ids), offsets, np.maximum, _NO_PAD_MAX
    )

    packed = columns.POSITION_IDS in names or columns.SEQ_LENS in names
    documents = None
    doc_starts = np.empty(0, np.int64)
    if packed:
        if columns.POSITION_IDS not in names or columns.SEQ_LENS not in names:
            present = columns.POSITION_IDS if columns.POSITION_IDS in names else columns.SEQ_LENS
            raise DataError(
                f"packed rows need both {columns.POSITION_IDS} and {columns.SEQ_LENS}; "
                f"only {present} is present"
            )
        documents, doc_starts = _pack_checks(
            batch, offsets, real_pos, trained_pos, real, length, side, flags
        )

    eos_untrained = np.zeros(n, bool)
    eos_real_tokens = eos_trained_tokens = 0
    if eos_id is not None:
        eos_real = real_pos & (ids == eos_id)
        eos_real_tokens = int(np.count_nonzero(eos_real))
        eos_trained_tokens = int(np.count_nonzero(eos_real & trained_pos))
        untrained = eos_real & ~trained_pos
        eos_untrained = segment_any(untrained, offsets)
        # A real EOS left untrained right after a trained token is a hole punched into the
        # trained span by value, the mark of `labels[input_ids == pad_id] = -100` with
        # pad == eos. A document's first token follows another document, so it does not count.
        hole = np.zeros(len(ids), bool)
        hole[1:] = untrained[1:] & trained_pos[:-1]
        hole[_row_starts(offsets)] = False
        hole[doc_starts] = False
        flags[EOS_MASKED_BY_VALUE] = segment_any(hole, offsets)

    return PartStats(
        row_ids=row_ids,
        width=width,
        real=real,
        length=length,
        trained=segment_sum(trained_pos, offsets),
        documents=documents,
        side=side,
        pad_min=pad_min,
        pad_max=pad_max,
        eos_untrained=eos_untrained,
        flags=flags,
        eos_real_tokens=eos_real_tokens,
        eos_trained_tokens=eos_trained_tokens,
        packed=packed,
    )


def _padding_sides(real_pos: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row: which padding side its mask fits. Right padding is ``1…1 0…0`` (no rise from
    padding into a real token inside the row), left padding ``0…0 1…1`` (no fall)."""
    rise = np.zeros(len(real_pos), bool)
    fall = np.zeros(len(real_pos), bool)
    rise[1:] = real_pos[1:] & ~real_pos[:-1]
    fall[1:] = ~real_pos[1:] & real_pos[:-1]
    starts = _row_starts(offsets)
    rise[starts] = False
    fall[starts] = False
    fits_right = ~segment_any(rise, offsets)
    fits_left = ~segment_any(fall, offsets)
    side = np.full(len(offsets) - 1, _SIDE_NEITHER, np.int8)
    side[fits_right & fits_left] = _SIDE_ANY
    side[fits_right & ~fits_left] = _SIDE_RIGHT
    side[~fits_right & fits_left] = _SIDE_LEFT
    return side


def _pack_checks(
    batch: pa.RecordBatch,
    offsets: np.ndarray,
    real_pos: np.ndarray,
    trained_pos: np.ndarray,
    real: np.ndarray,
    length: np.ndarray,
    side: np.ndarray,
    flags: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Invariant 4 on packed rows. Returns documents per row and the flat index of every
    document's first token (for rows whose documents could be placed).

    Documents lie in order over a row's real positions, which are one run (padding only at one
    end): a row ``[a b c d e P P]`` with ``seq_lens [2, 3]`` holds ``a b`` and ``c d e``; its
    ``position_ids`` must read ``[0 1 0 1 2 …]`` over the real run and ``labels`` at ``a`` and
    ``c`` must be -100.
    """
    n = len(offsets) - 1
    width = np.diff(offsets)
    labels = _list_column(batch, columns.LABELS).values
    positions = _list_column(batch, columns.POSITION_IDS).values
    seq = _list_column(batch, columns.SEQ_LENS)
    doc_lens = seq.values.astype(np.int64)
    docs_per_row = np.diff(seq.offsets)
    negative = segment_any(doc_lens < 0, seq.offsets)
    seq_sum = segment_sum(doc_lens, seq.offsets)
    flags[SEQ_LENS_SUM] = (seq_sum != length) | negative

    # Documents can be placed only where they tile the real run exactly.
    placeable = (seq_sum == real) & ~negative & (side != _SIDE_NEITHER)
    first_is_real = np.zeros(n, bool)
    nonempty = width > 0
    first_is_real[nonempty] = real_pos[offsets[:-1][nonempty]]
    run_start = offsets[:-1] + np.where(first_is_real, 0, width - real)
    doc_row = np.repeat(np.arange(n), docs_per_row)
    ends = np.concatenate(([0], np.cumsum(doc_lens)))
    within_row = ends[:-1] - ends[seq.offsets[:-1]][doc_row]
    doc_start = run_start[doc_row] + within_row
    use = placeable[doc_row] & (doc_lens > 0)
    starts = doc_start[use]

    bad_first = np.zeros(n, bool)
    bad_first[doc_row[use][trained_pos[starts]]] = True
    flags[DOCUMENT_START_LABEL] = bad_first

    # Expected position id = distance from the latest document start at or before a position.
    index_type = np.int32 if len(labels) < np.iinfo(np.int32).max else np.int64
    marks = np.zeros(len(labels), index_type)
    marks[starts] = starts
    expected = np.arange(len(labels), dtype=index_type) - np.maximum.accumulate(marks)
    covered = real_pos & np.repeat(placeable, width)
    flags[POSITION_IDS_RESTART] = segment_any(covered & (positions != expected), offsets)
    return segment_sum(doc_lens > 0, seq.offsets), starts


def _merge(parts: list[PartStats]) -> PartStats:
    """Join parts into one, ordered by row id."""
    if len(parts) == 1:
        return parts[0]
    row_ids = np.concatenate([p.row_ids for p in parts])
    order = np.argsort(row_ids, kind="stable")

    def cat(get: str) -> np.ndarray:
        return np.concatenate([getattr(p, get) for p in parts])[order]

    packed = any(p.packed for p in parts)
    documents = None
    if packed:
        documents = np.concatenate(
            [
                p.documents if p.documents is not None else np.zeros(len(p.row_ids), np.int64)
                for p in parts
            ]
        )[order]
    return PartStats(
        row_ids=row_ids[order],
        width=cat("width"),
        real=cat("real"),
        length=cat("length"),
        trained=cat("trained"),
        documents=documents,
        side=cat("side"),
        pad_min=cat("pad_min"),
        pad_max=cat("pad_max"),
        eos_untrained=cat("eos_untrained"),
        flags={name: np.concatenate([p.flags[name] for p in parts])[order] for name in _ROW_FLAGS},
        eos_real_tokens=sum(p.eos_real_tokens for p in parts),
        eos_trained_tokens=sum(p.eos_trained_tokens for p in parts),
        packed=packed,
    )


# ----------------------------------------------------------------------------- conclude


def resolve_layout(data: PartStats, hints: LayoutHints) -> Layout:
    """Settle the strategy, widths, padding side and pad id: from ``hints`` where given, else
    from the data (pack columns mean ``pack``; one width ``pad``; no padding at all ``none``;
    several widths ``bucket`` with the widths seen as buckets)."""
    width, real = data.width, data.real
    if hints.strategy is not None:
        strategy, source = hints.strategy, hints.strategy_source
    elif data.packed:
        strategy, source = "pack", "inferred"
    elif len(width) == 0 or (width == width[0]).all():
        strategy, source = "pad", "inferred"
    elif (width == real).all():
        strategy, source = "none", "inferred"
    else:
        strategy, source = "bucket", "inferred"
    if strategy == "pack" and not data.packed:
        raise DataError(
            f"the data is said to be packed but has no {columns.POSITION_IDS}/{columns.SEQ_LENS}"
        )
    max_length = hints.max_length
    if max_length is None and len(width) and strategy in ("pad", "pack"):
        max_length = int(np.bincount(width).argmax())
    buckets = hints.buckets
    if strategy == "bucket" and buckets is None:
        buckets = tuple(int(w) for w in np.unique(width))
    if strategy == "bucket" and hints.buckets is None and max_length is not None:
        # The largest bucket is the row length the build was given, even if no row reached it.
        buckets = tuple(sorted({*(buckets or ()), max_length}))

    padding_side = hints.padding_side
    if padding_side is None:
        right = int(np.count_nonzero(data.side == _SIDE_RIGHT))
        left = int(np.count_nonzero(data.side == _SIDE_LEFT))
        padding_side = None if right == left == 0 else ("right" if right >= left else "left")

    pad_id, pad_source = hints.pad_id, hints.pad_id_source
    if pad_id is None:
        pad_source = "inferred"
        uniform = (data.pad_min == data.pad_max) & (data.pad_min != _NO_PAD_MIN)
        if uniform.any():
            values, counts = np.unique(data.pad_min[uniform], return_counts=True)
            pad_id = int(values[counts.argmax()])
        else:
            pad_source = "unknown"
    return Layout(
        strategy=strategy,
        strategy_source=source,
        max_length=max_length,
        buckets=buckets,
        padding_side=padding_side,
        pad_id=pad_id,
        pad_id_source=pad_source,
        eos_id=hints.eos_id,
    )


def _result(
    name: str, bad: np.ndarray | None, row_ids: np.ndarray, listed: int, detail: str = ""
) -> CheckResult:
    """A pass/fail (or pass/warn) result from a per-row offender flag; ``None`` means skipped."""
    spec = SPECS[name]
    if bad is None:
        return CheckResult(name, spec.kind, "skip", 0, (), detail)
    count = int(np.count_nonzero(bad))
    rows = tuple(int(r) for r in row_ids[np.flatnonzero(bad)[:listed]])
    status: Status = "pass" if count == 0 else ("fail" if spec.kind == "invariant" else "warn")
    return CheckResult(name, spec.kind, status, count, rows, detail or spec.description)


def _row_width_offenders(data: PartStats, layout: Layout) -> tuple[np.ndarray | None, str]:
    width, real = data.width, data.real
    if layout.strategy in ("pad", "pack"):
        if layout.max_length is None:
            return None, "row width unknown"
        return width != layout.max_length, f"every row is {layout.max_length} wide"
    if layout.strategy == "none":
        return width != real, "rows hold no padding (strategy none)"
    buckets = np.asarray(sorted(layout.buckets or ()), np.int64)
    if buckets.size == 0:
        return None, "no bucket widths known"
    slot = np.searchsorted(buckets, real, side="left")
    too_long = slot >= len(buckets)
    smallest = buckets[np.minimum(slot, len(buckets) - 1)]
    listed = ",".join(str(b) for b in buckets)
    return too_long | (width != smallest), f"each row is the smallest bucket that fits ({listed})"


def conclude(
    parts: Sequence[PartStats],
    hints: LayoutHints = LayoutHints(),
    thresholds: Thresholds = Thresholds(),
    listed: int = 5,
    shards_check: CheckResult | None = None,
) -> tuple[Layout, DataStats, tuple[CheckResult, ...]]:
    """Turn the analysed parts into the data's layout, statistics and one result per check.

    ``shards_check`` is the result of comparing the shard files with their manifest, which only
    the caller can do (the rows do not know where they came from); without one it is skipped.
    """
    data = _merge(list(parts)) if parts else _empty_part()
    layout = resolve_layout(data, hints)
    ids = data.row_ids
    stats = _data_stats(data, layout)
    results: dict[str, CheckResult] = {
        SHARDS_MATCH_MANIFEST: shards_check
        or CheckResult(SHARDS_MATCH_MANIFEST, "invariant", "skip", 0, (), "no manifest")
    }
    for name in (LIST_LENGTHS, MASK_BINARY, LENGTH_MATCHES_MASK, LABELS_ON_PADDING):
        results[name] = _result(name, data.flags[name], ids, listed)
    results[LABELS_MATCH_INPUTS] = _result(
        LABELS_MATCH_INPUTS, data.flags[LABELS_MATCH_INPUTS], ids, listed
    )

    side_bad = data.side == _SIDE_NEITHER
    if layout.padding_side == "right":
        side_bad |= data.side == _SIDE_LEFT
    elif layout.padding_side == "left":
        side_bad |= data.side == _SIDE_RIGHT
    where = f"on the {layout.padding_side} side" if layout.padding_side else "at one end"
    side_text = f"real tokens are one run, padding {where}"
    results[PADDING_CONTIGUOUS] = _result(PADDING_CONTIGUOUS, side_bad, ids, listed, side_text)

    has_padding = data.pad_min != _NO_PAD_MIN
    if layout.pad_id is None:
        results[PADDING_HOLDS_PAD_ID] = _result(
            PADDING_HOLDS_PAD_ID, None, ids, listed, "no padding, or pad id unknown"
        )
    else:
        pad_bad = has_padding & ((data.pad_min != layout.pad_id) | (data.pad_max != layout.pad_id))
        text = f"padded positions hold pad id {layout.pad_id} ({layout.pad_id_source})"
        results[PADDING_HOLDS_PAD_ID] = _result(PADDING_HOLDS_PAD_ID, pad_bad, ids, listed, text)

    width_bad, width_text = _row_width_offenders(data, layout)
    results[ROW_WIDTH] = _result(ROW_WIDTH, width_bad, ids, listed, width_text)

    for name in (SEQ_LENS_SUM, POSITION_IDS_RESTART, DOCUMENT_START_LABEL):
        if data.packed:
            results[name] = _result(name, data.flags[name], ids, listed)
        else:
            results[name] = _result(name, None, ids, listed, "rows are not packed")

    if layout.eos_id is None:
        for name in (EOS_MASKED_BY_VALUE, EOS_NEVER_TRAINED):
            results[name] = _result(name, None, ids, listed, "EOS id unknown")
    else:
        results[EOS_MASKED_BY_VALUE] = _result(
            EOS_MASKED_BY_VALUE, data.flags[EOS_MASKED_BY_VALUE], ids, listed
        )
        never = data.eos_real_tokens > 0 and data.eos_trained_tokens == 0
        text = (
            f"EOS ({layout.eos_id}) appears {data.eos_real_tokens} times in attended inputs and "
            f"is trained {data.eos_trained_tokens} times"
        )
        results[EOS_NEVER_TRAINED] = _result(
            EOS_NEVER_TRAINED, data.eos_untrained & never, ids, listed, text
        )

    results[ROWS_WITHOUT_LABELS] = _result(ROWS_WITHOUT_LABELS, data.trained == 0, ids, listed)
    results[PAD_FRACTION] = _fraction_result(
        PAD_FRACTION,
        stats.pad_fraction,
        thresholds.max_pad_fraction,
        above=True,
        per_row=np.divide(
            data.width - data.real, data.width, out=np.zeros(len(ids)), where=data.width > 0
        ),
        row_ids=ids,
        listed=listed,
    )
    results[LABEL_FRACTION] = _fraction_result(
        LABEL_FRACTION,
        stats.label_fraction,
        thresholds.min_label_fraction,
        above=False,
        per_row=np.divide(data.trained, data.real, out=np.zeros(len(ids)), where=data.real > 0),
        row_ids=ids,
        listed=listed,
    )
    return layout, stats, tuple(results[spec.name] for spec in CHECKS)


def _fraction_result(
    name: str,
    overall: float,
    limit: float | None,
    *,
    above: bool,
    per_row: np.ndarray,
    row_ids: np.ndarray,
    listed: int,
) -> CheckResult:
    """A data-set-wide fraction against a limit; when it is crossed, the rows crossing the limit
    themselves are the ones listed."""
    if limit is None:
        return _result(name, None, row_ids, listed, "no limit set")
    crossed = overall > limit if above else overall < limit
    word = "above the maximum" if above else "below the minimum"
    detail = (
        f"{name.replace('_', ' ')} {overall:.4f} {'is' if crossed else 'is not'} {word} {limit}"
    )
    if not crossed:
        return _result(name, np.zeros(len(row_ids), bool), row_ids, listed, detail)
    rows_bad = per_row > limit if above else per_row < limit
    return CheckResult(
        name,
        "warning",
        "warn",
        int(np.count_nonzero(rows_bad)),
        tuple(int(r) for r in row_ids[np.flatnonzero(rows_bad)[:listed]]),
        detail,
    )


def _empty_part() -> PartStats:
    empty = np.zeros(0, np.int64)
    return PartStats(
        row_ids=empty,
        width=empty,
        real=empty,
        length=empty,
        trained=empty,
        documents=None,
        side=np.zeros(0, np.int8),
        pad_min=empty,
        pad_max=empty,
        eos_untrained=np.zeros(0, bool),
        flags={name: np.zeros(0, bool) for name in _ROW_FLAGS},
    )


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


def _data_stats(data: PartStats, layout: Layout) -> DataStats:
    positions = int(data.width.sum())
    real_tokens = int(data.real.sum())
    label_tokens = int(data.trained.sum())
    top = int(data.width.max()) if len(data.width) else 0
    buckets: list[BucketStats] = []
    if layout.strategy == "bucket":
        previous = 0
        for width in np.unique(data.width):
            in_bucket = data.width == width
            reals = data.real[in_bucket]
            rows = int(np.count_nonzero(in_bucket))
            lengths = length_stats(reals)
            assert lengths is not None
            buckets.append(
                BucketStats(
                    width=int(width),
                    rows=rows,
                    positions=rows * int(width),
                    real_tokens=int(reals.sum()),
                    fill=round(float(reals.sum()) / (rows * int(width)), 6) if width else 0.0,
                    lengths=lengths,
                    histogram=histogram(reals, min(previous + 1, int(width)), int(width), 8),
                )
            )
            previous = int(width)
    documents = data.documents if data.packed else None
    return DataStats(
        rows=len(data.row_ids),
        positions=positions,
        real_tokens=real_tokens,
        pad_tokens=positions - real_tokens,
        pad_fraction=round((positions - real_tokens) / positions, 6) if positions else 0.0,
        label_tokens=label_tokens,
        label_fraction=round(label_tokens / real_tokens, 6) if real_tokens else 0.0,
        lengths=length_stats(data.real),
        histogram=histogram(data.real, 0, top),
        documents=int(documents.sum()) if documents is not None else None,
        documents_per_row=length_stats(documents) if documents is not None else None,
        buckets=tuple(buckets),
    )


def check_table(
    table: pa.Table | pa.RecordBatch,
    hints: LayoutHints = LayoutHints(),
    thresholds: Thresholds = Thresholds(),
    listed: int = 5,
) -> tuple[CheckResult, ...]:
    """Every check on an in-memory table; rows are numbered from 0."""
    if isinstance(table, pa.Table):
        batches = table.combine_chunks().to_batches()
        batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    else:
        batch = table
    part = analyse(batch, np.arange(batch.num_rows), hints.eos_id)
    return conclude([part], hints, thresholds, listed)[2]


def failures(results: Sequence[CheckResult], strict: bool = False) -> list[CheckResult]:
    """The results that fail: ``fail`` always, ``warn`` too when ``strict``."""
    bad = {"fail", "warn"} if strict else {"fail"}
    return [r for r in results if r.status in bad]
