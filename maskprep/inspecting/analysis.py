"""Analysing one batch of rows: per-row numbers (widths, real and trained token counts, the
padding seen) and one flag per row and position-by-position check.

Every check turns the flat arrays of :mod:`.kernels` into a flag per position (``labels !=
IGNORE_INDEX`` where ``attention_mask == 0``, …) and folds those flags into a flag per row.
:mod:`.gathered` folds each batch's rows into totals that do not grow with the rows, and
:mod:`.conclude` settles the checks from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import check_columns, outside_ids
from ..columns import IGNORE_INDEX
from ..errors import DataError
from ..reading.lists import (
    int_column,
    list_column,
    row_starts,
    segment_any,
    segment_extreme,
    segment_sum,
)
from ..reading.shards import missing_columns
from .specs import (
    DOCUMENT_START_LABEL,
    EOS_MASKED_BY_VALUE,
    IDS_IN_VOCABULARY,
    LABELS_MATCH_INPUTS,
    LABELS_ON_PADDING,
    LENGTH_MATCHES_MASK,
    LIST_LENGTHS,
    MASK_BINARY,
    POSITION_IDS_RESTART,
    SEQ_LENS_SUM,
)

# Per-row flags that analyse() computes position by position.
ROW_FLAGS = (
    LIST_LENGTHS,
    MASK_BINARY,
    LENGTH_MATCHES_MASK,
    LABELS_ON_PADDING,
    LABELS_MATCH_INPUTS,
    SEQ_LENS_SUM,
    POSITION_IDS_RESTART,
    DOCUMENT_START_LABEL,
    EOS_MASKED_BY_VALUE,
    IDS_IN_VOCABULARY,
)

# Per-row code of where a row's padding is: which padding sides its mask is consistent with.
SIDE_ANY, SIDE_RIGHT, SIDE_LEFT, SIDE_NEITHER = 0, 1, 2, 3
# Stand-ins for "no padded position" in the per-row min/max of padded ids.
NO_PAD_MIN = np.int64(np.iinfo(np.int64).max)
NO_PAD_MAX = np.int64(np.iinfo(np.int64).min)
#: No attended pad id at the edge of a row's real run (see :func:`_pad_at_edges`).
NO_EDGE = np.int64(np.iinfo(np.int64).min)
#: Token ids past this are left out of the search for the pad == EOS trap (no vocabulary is that
#: large; the vocabulary check flags them), so its table of trained ids stays small.
ID_LIMIT = 1 << 24
_NONE = np.zeros(0, np.int64)


@dataclass(frozen=True)
class ScanFacts:
    """What is known about the data before reading it; ``None`` is unknown. ``pad_id`` counts
    only when given or recorded (a pad id inferred from the data is known only at the end)."""

    eos_id: int | None = None
    pad_id: int | None = None
    bos_id: int | None = None
    vocab_size: int | None = None


@dataclass
class PartStats:
    """Per-row numbers of one analysed batch; ``row_ids`` (ascending) place its rows in the whole
    data set.

    ``attended_end``/``attended_start`` flag rows whose mask is all ones over a run of the known
    pad id at their end/start (see :func:`_attended_padding`). ``hole_ids``/``hole_rows`` and
    ``trained_ids`` are gathered only when the EOS id is unknown, to find the pad == EOS trap from
    the pad id instead (see :func:`_value_holes`). ``several_documents`` flags unpacked rows that
    hold documents one after another (see :func:`_several_documents`); ``edge_end`` /
    ``edge_start`` hold, per padded row whose real run ends (starts) with the very id its padding
    holds, that id, else :data:`NO_EDGE` (see :func:`_pad_at_edges`).
    """

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
    has_length: bool = True
    attended_end: np.ndarray = field(default_factory=lambda: _NONE.astype(bool))
    attended_start: np.ndarray = field(default_factory=lambda: _NONE.astype(bool))
    hole_ids: np.ndarray = field(default_factory=lambda: _NONE)
    hole_rows: np.ndarray = field(default_factory=lambda: _NONE)
    trained_ids: np.ndarray = field(default_factory=lambda: _NONE)
    several_documents: np.ndarray = field(default_factory=lambda: _NONE.astype(bool))
    edge_end: np.ndarray = field(default_factory=lambda: _NONE)
    edge_start: np.ndarray = field(default_factory=lambda: _NONE)


def analyse(
    batch: pa.RecordBatch, row_ids: np.ndarray, facts: ScanFacts = ScanFacts()
) -> list[PartStats]:
    """Per-row numbers and per-row check flags of one batch whose rows are ``row_ids``: one part,
    or two when some rows' lists do not line up (those are counted from their own lists).

    Raises :class:`DataError` when a contract column is missing or not a list of integers. A
    shard without ``length`` (written by another tool) is checked with ``length`` computed from
    ``attention_mask``.
    """
    missing = missing_columns(batch.schema.names)
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}")
    row_ids = np.asarray(row_ids, np.int64)
    check_columns(batch, row_ids)  # a column at fault is named with its row in the data
    ids = list_column(batch, columns.INPUT_IDS)
    widths = np.diff(ids.offsets)
    aligned = np.ones(len(widths), bool)
    for name in (columns.ATTENTION_MASK, columns.LABELS, columns.POSITION_IDS):
        if name in batch.schema.names:
            aligned &= np.diff(list_column(batch, name).offsets) == widths
    if aligned.all():
        return [_analyse_aligned(batch, row_ids, facts)]
    # Position-by-position checks need the lists to line up; run them on the rows that do and
    # count the others from their own lists.
    keep = np.flatnonzero(aligned)
    parts = [_analyse_misaligned(batch.take(np.flatnonzero(~aligned)), row_ids[~aligned], facts)]
    if keep.size:
        parts.append(_analyse_aligned(batch.take(keep), row_ids[keep], facts))
    return parts


def _lengths(batch: pa.RecordBatch, mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The ``length`` column, or the sum of ``attention_mask`` where the shard has none."""
    if columns.LENGTH in batch.schema.names:
        return int_column(batch, columns.LENGTH)
    return segment_sum(mask, offsets)


def _ids_outside(ids: np.ndarray, offsets: np.ndarray, vocab_size: int | None) -> np.ndarray:
    """Per row: an input id that is no token id (below 0, past the int32 maximum), or at or
    past ``vocab_size`` when it is known."""
    return segment_any(outside_ids(ids, vocab_size), offsets)


def _analyse_misaligned(batch: pa.RecordBatch, row_ids: np.ndarray, facts: ScanFacts) -> PartStats:
    n = batch.num_rows
    ids = list_column(batch, columns.INPUT_IDS)
    mask = list_column(batch, columns.ATTENTION_MASK)
    labels = list_column(batch, columns.LABELS)
    flags = {name: np.zeros(n, bool) for name in ROW_FLAGS}
    flags[LIST_LENGTHS][:] = True
    flags[IDS_IN_VOCABULARY] = _ids_outside(ids.values, ids.offsets, facts.vocab_size)
    packed = columns.SEQ_LENS in batch.schema.names
    documents = None
    if packed:
        seq = list_column(batch, columns.SEQ_LENS)
        documents = segment_sum(seq.values > 0, seq.offsets)
    return PartStats(
        row_ids=row_ids,
        width=np.diff(ids.offsets),
        real=segment_sum(mask.values != 0, mask.offsets),
        length=_lengths(batch, mask.values, mask.offsets),
        trained=segment_sum(labels.values != IGNORE_INDEX, labels.offsets),
        documents=documents,
        side=np.full(n, SIDE_ANY, np.int8),
        pad_min=np.full(n, NO_PAD_MIN, np.int64),
        pad_max=np.full(n, NO_PAD_MAX, np.int64),
        eos_untrained=np.zeros(n, bool),
        flags=flags,
        packed=packed,
        has_length=columns.LENGTH in batch.schema.names,
        attended_end=np.zeros(n, bool),
        attended_start=np.zeros(n, bool),
    )


def _analyse_aligned(batch: pa.RecordBatch, row_ids: np.ndarray, facts: ScanFacts) -> PartStats:
    names = batch.schema.names
    id_list = list_column(batch, columns.INPUT_IDS)
    offsets = id_list.offsets
    n = len(offsets) - 1
    ids = id_list.values
    mask = list_column(batch, columns.ATTENTION_MASK).values
    labels = list_column(batch, columns.LABELS).values
    length = _lengths(batch, mask, offsets)
    width = np.diff(offsets)
    eos_id = facts.eos_id

    real_pos = mask != 0
    trained_pos = labels != IGNORE_INDEX
    real = segment_sum(real_pos, offsets)
    flags = {name: np.zeros(n, bool) for name in ROW_FLAGS}
    flags[MASK_BINARY] = segment_any(real_pos & (mask != 1), offsets)
    flags[LENGTH_MATCHES_MASK] = length != segment_sum(mask, offsets)
    flags[LABELS_ON_PADDING] = segment_any(~real_pos & trained_pos, offsets)
    flags[LABELS_MATCH_INPUTS] = segment_any(real_pos & trained_pos & (labels != ids), offsets)
    flags[IDS_IN_VOCABULARY] = _ids_outside(ids, offsets, facts.vocab_size)

    side = _padding_sides(real_pos, offsets)
    # The smallest and largest id on each row's padded positions: one pad id means min == max.
    pad_min = segment_extreme(np.where(real_pos, NO_PAD_MIN, ids), offsets, np.minimum, NO_PAD_MIN)
    pad_max = segment_extreme(np.where(real_pos, NO_PAD_MAX, ids), offsets, np.maximum, NO_PAD_MAX)

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
        hole[row_starts(offsets)] = False
        hole[doc_starts] = False
        flags[EOS_MASKED_BY_VALUE] = segment_any(hole, offsets)

    part = PartStats(
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
        has_length=columns.LENGTH in names,
    )
    part.attended_end, part.attended_start = _attended_padding(ids, offsets, real, width, facts)
    part.edge_end, part.edge_start = _pad_at_edges(ids, offsets, real, side, pad_min, pad_max)
    if not packed:
        part.several_documents = _several_documents(ids, offsets, real_pos, trained_pos, facts)
    if eos_id is None:
        _value_holes(part, ids, offsets, real_pos, trained_pos, doc_starts, facts.pad_id)
    return part


def _attended_padding(
    ids: np.ndarray, offsets: np.ndarray, real: np.ndarray, width: np.ndarray, facts: ScanFacts
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the mask is all ones and the row ends (starts) with a run of the pad id, i.e. its
    padding is attended. A document may end with EOS (or start with BOS), so where the pad id may
    be that token, one of it is not enough: the run must be two long."""
    n = len(width)
    end, start = np.zeros(n, bool), np.zeros(n, bool)
    pad = facts.pad_id
    full = np.flatnonzero((real == width) & (width > 0))
    if pad is None or not full.size:
        return end, start
    first, last = offsets[:-1][full], offsets[1:][full] - 1
    two = last > first
    end_run = ids[last] == pad
    start_run = ids[first] == pad
    if facts.eos_id is None or facts.eos_id == pad:
        end_run &= two & (ids[np.where(two, last - 1, last)] == pad)
    if facts.bos_id is None or facts.bos_id == pad:
        start_run &= two & (ids[np.where(two, first + 1, first)] == pad)
    end[full], start[full] = end_run, start_run
    return end, start


def _pad_at_edges(
    ids: np.ndarray,
    offsets: np.ndarray,
    real: np.ndarray,
    side: np.ndarray,
    pad_min: np.ndarray,
    pad_max: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the id its padding holds where the real position next to that padding holds it
    too, else :data:`NO_EDGE`; for right-padded rows at the end of the real run, for left-padded
    rows at its start. That is one pad the mask marks as real: ``[P P P a b]`` with the mask
    ``[0 0 1 1 1]`` lets ``a`` and ``b`` see a pad. Whether the id is the pad id, and whether it
    may be a real EOS (BOS) there, is settled once the layout is (:mod:`.conclude`)."""
    n = len(real)
    end, start = np.full(n, NO_EDGE), np.full(n, NO_EDGE)
    width = np.diff(offsets)
    one_pad = (pad_min == pad_max) & (real > 0) & (real < width)
    right = np.flatnonzero(one_pad & (side == SIDE_RIGHT))
    left = np.flatnonzero(one_pad & (side == SIDE_LEFT))
    last = offsets[:-1][right] + real[right] - 1
    first = offsets[1:][left] - real[left]
    hit_end = ids[last] == pad_min[right]
    hit_start = ids[first] == pad_min[left]
    end[right[hit_end]] = pad_min[right[hit_end]]
    start[left[hit_start]] = pad_min[left[hit_start]]
    return end, start


def _several_documents(
    ids: np.ndarray,
    offsets: np.ndarray,
    real_pos: np.ndarray,
    trained_pos: np.ndarray,
    facts: ScanFacts,
) -> np.ndarray:
    """Per row of rows without pack columns: it holds several documents one after another, as a
    pack does, and is trained as plain text. A document ends at an EOS (or starts at a BOS)
    strictly inside the row's real run; plain text trains every real token but the first of
    each document, which a pack leaves untrained. Prompt/completion and chat rows, whose
    untrained prompts and user turns lie inside documents, are not flagged: a turn of a chat may
    end with EOS. A BOS that doubles as EOS opening the row (GPT-2) ends nothing.

    Worked on the few positions that matter (real EOS and BOS, untrained real tokens), not on
    every position: a batch without a document boundary inside a row costs two comparisons."""
    rows = np.zeros(len(offsets) - 1, bool)
    ends = _inside_runs(ids, offsets, real_pos, facts.eos_id)
    opens = _inside_runs(ids, offsets, real_pos, facts.bos_id)
    if not (ends.size or opens.size):
        return rows
    rows[np.searchsorted(offsets, np.concatenate((ends, opens)), side="right") - 1] = True
    # Untrained real tokens, unless they open a document (the first of a run, the token after
    # an inner EOS, an inner BOS): a prompt, a user turn.
    loose = np.flatnonzero(real_pos & ~trained_pos)
    row = np.searchsorted(offsets, loose, side="right") - 1
    run_start = (loose == offsets[row]) | ~real_pos[np.maximum(loose - 1, 0)]
    opening = run_start | _members(loose - 1, ends) | _members(loose, opens)
    rows[row[~opening]] = False
    return rows


def _inside_runs(
    ids: np.ndarray, offsets: np.ndarray, real_pos: np.ndarray, token: int | None
) -> np.ndarray:
    """Flat positions (sorted) of ``token`` strictly inside a row's real run: a real token on
    both sides, in the same row."""
    if token is None or not len(ids):
        return np.zeros(0, np.int64)
    at = np.flatnonzero((ids == token) & real_pos)
    row = np.searchsorted(offsets, at, side="right") - 1
    at = at[(at > offsets[row]) & (at < offsets[row + 1] - 1)]
    return at[real_pos[at - 1] & real_pos[at + 1]]


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Per value: whether it is in ``sorted_set`` (ascending)."""
    if not sorted_set.size:
        return np.zeros(len(values), bool)
    slot = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[slot] == values


def _value_holes(
    part: PartStats,
    ids: np.ndarray,
    offsets: np.ndarray,
    real_pos: np.ndarray,
    trained_pos: np.ndarray,
    doc_starts: np.ndarray,
    pad_id: int | None,
) -> None:
    """With the EOS id unknown, what finds the pad == EOS trap from the pad id: for each id, the
    rows where it stands untrained right after a trained token (``hole_ids``, ``hole_rows``;
    only the pad id's when it is known), and which ids are trained anywhere (``trained_ids``).
    An id that is never trained although it follows trained tokens, and that pads the rows, is
    the mark of ``labels[input_ids == pad_id] = -100`` with pad == EOS."""
    hole = np.zeros(len(ids), bool)
    hole[1:] = real_pos[1:] & ~trained_pos[1:] & trained_pos[:-1]
    hole[row_starts(offsets)] = False
    hole[doc_starts] = False
    trained_ids = ids[real_pos & trained_pos]
    if pad_id is not None:
        hole &= ids == pad_id
        trained_ids = np.asarray([pad_id] if (trained_ids == pad_id).any() else [], np.int64)
    else:
        trained_ids = trained_ids[(trained_ids >= 0) & (trained_ids < ID_LIMIT)]
        trained_ids = np.flatnonzero(np.bincount(trained_ids)) if trained_ids.size else _NONE
    at = np.flatnonzero(hole)
    rows = np.searchsorted(offsets, at, side="right") - 1
    pairs = np.unique(np.stack((ids[at].astype(np.int64), rows)), axis=1)
    part.hole_ids, part.hole_rows = pairs[0], part.row_ids[pairs[1]]
    part.trained_ids = trained_ids


def _padding_sides(real_pos: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row: which padding side its mask fits. Right padding is ``1…1 0…0`` (no rise from
    padding into a real token inside the row), left padding ``0…0 1…1`` (no fall)."""
    rise = np.zeros(len(real_pos), bool)
    fall = np.zeros(len(real_pos), bool)
    rise[1:] = real_pos[1:] & ~real_pos[:-1]
    fall[1:] = ~real_pos[1:] & real_pos[:-1]
    starts = row_starts(offsets)
    rise[starts] = False
    fall[starts] = False
    fits_right = ~segment_any(rise, offsets)
    fits_left = ~segment_any(fall, offsets)
    side = np.full(len(offsets) - 1, SIDE_NEITHER, np.int8)
    side[fits_right & fits_left] = SIDE_ANY
    side[fits_right & ~fits_left] = SIDE_RIGHT
    side[~fits_right & fits_left] = SIDE_LEFT
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
    labels = list_column(batch, columns.LABELS).values
    positions = list_column(batch, columns.POSITION_IDS).values
    seq = list_column(batch, columns.SEQ_LENS)
    doc_lens = seq.values.astype(np.int64)
    docs_per_row = np.diff(seq.offsets)
    negative = segment_any(doc_lens < 0, seq.offsets)
    seq_sum = segment_sum(doc_lens, seq.offsets)
    flags[SEQ_LENS_SUM] = (seq_sum != length) | negative

    # Documents can be placed only where they tile the real run exactly.
    placeable = (seq_sum == real) & ~negative & (side != SIDE_NEITHER)
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
