"""The column statistics of every row ``inspect`` reads, in memory that does not grow with them.

:meth:`ColumnStats.add` reads a batch's contract columns as flat NumPy arrays (row ``i`` of
``input_ids`` is ``ids[offsets[i]:offsets[i + 1]]``), turns each rule into a flag per position
(``labels != IGNORE_INDEX`` where ``attention_mask == 0``, …), folds the flags into a flag per
row, and keeps of the flagged rows how many there are and the first few. A verdict that depends
on the layout, settled only once every row was read (:func:`~.layout.infer_layout`), is kept per
value of what it depends on: rows per (width, real tokens), per padding side, per id their
padding holds. Memory is bounded by the batch size and the number of distinct widths and ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import (
    ListColumn,
    int_values,
    list_column,
    outside_ids,
    row_starts,
    segment_any,
    segment_extreme,
    segment_sum,
)
from ..columns import IGNORE_INDEX
from ..errors import DataError
from ..reading.shards import missing_columns
from . import checks as c
from .checks import FlaggedRows, RowsByValue
from .layout import MIXED_PADDING, SIDE_ANY, SIDE_LEFT, SIDE_NEITHER, SIDE_RIGHT, LayoutHints
from .options import InspectOptions

#: Checks whose rows are flagged as the batches pass: their verdict needs no layout.
FLAGGED = (
    c.LIST_LENGTHS,
    c.MASK_BINARY,
    c.LENGTH_MATCHES_MASK,
    c.LABELS_ON_PADDING,
    c.LABELS_MATCH_INPUTS,
    c.IDS_IN_VOCABULARY,
    c.SEQ_LENS_SUM,
    c.POSITION_IDS_RESTART,
    c.DOCUMENT_START_LABEL,
    c.EOS_MASKED_BY_VALUE,  # with the EOS id known; else from the pad id, see ColumnStats.holes
    c.EOS_NEVER_TRAINED,  # rows with a real EOS left untrained
    c.UNDECLARED_PACKS,  # rows without pack columns that hold several documents
    c.ROWS_WITHOUT_LABELS,
    c.PAD_FRACTION,  # rows past the limit
    c.LABEL_FRACTION,
)
#: The padding of a row whose mask is all ones is attended at its end, its start (bits).
ATTENDED_END, ATTENDED_START = 1, 2
#: Token ids past this are left out of the search for the pad == EOS trap (no vocabulary is that
#: large; the vocabulary check flags them), so its table of trained ids stays small.
ID_LIMIT = 1 << 24
# Stand-ins for "no padded position" in the per-row min/max of padded ids.
_NO_PAD_MIN = np.int64(np.iinfo(np.int64).max)
_NO_PAD_MAX = np.int64(np.iinfo(np.int64).min)
_NONE = np.zeros(0, np.int64)


@dataclass
class ColumnStats:
    """Everything the checks and the summary need of the rows read so far.

    ``hints`` says what is known before reading (the EOS, pad and BOS ids, the vocabulary size),
    ``options`` the warning limits and how many rows a check lists.
    """

    hints: LayoutHints
    options: InspectOptions
    rows: int = 0
    positions: int = 0
    real_tokens: int = 0
    label_tokens: int = 0
    rows_with_length: int = 0
    #: Some rows are packs (they have ``seq_lens``): ``documents[k]`` of them hold ``k``.
    packed: bool = False
    documents: np.ndarray = field(default_factory=lambda: _NONE)
    eos_real_tokens: int = 0
    eos_trained_tokens: int = 0
    flagged: dict[str, FlaggedRows] = field(init=False)
    #: Rows per (width, real tokens) (:meth:`shape_counts`), per padding side (``SIDE_*``), per
    #: id their padding holds (:data:`~.layout.MIXED_PADDING` for several).
    shapes: RowsByValue = field(init=False)
    sides: RowsByValue = field(init=False)
    padding: RowsByValue = field(init=False)
    #: Rows of all-ones masks over a run of the known pad id at their end or start (bits).
    attended: RowsByValue = field(init=False)
    #: Padded rows whose real run ends (starts) with the id their padding holds, per that id.
    edge_end: RowsByValue = field(init=False)
    edge_start: RowsByValue = field(init=False)
    #: With the EOS id unknown: per id, the rows where it stands untrained right after a trained
    #: token; and which ids are trained at a real position (a flag per id).
    holes: RowsByValue = field(init=False)
    trained_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        listed = self.options.listed
        self.flagged = {name: FlaggedRows(listed) for name in FLAGGED}
        for name in ("shapes", "sides", "padding", "attended", "edge_end", "edge_start", "holes"):
            setattr(self, name, RowsByValue(listed))

    def shape_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (width, real tokens) pair seen, and how many rows have it."""
        keys = self.shapes.values
        return keys >> 32, keys & 0xFFFFFFFF, self.shapes.counts

    def trained(self, token: int) -> bool:
        """Whether ``token`` was trained at a real position anywhere (known for every id only
        while the EOS id is unknown)."""
        return 0 <= token < len(self.trained_ids) and bool(self.trained_ids[token])

    def add(self, batch: pa.RecordBatch | pa.Table, row_ids: np.ndarray) -> None:
        """Fold in one batch (or table) whose rows are ``row_ids`` (ascending) of the whole data.

        Raises :class:`DataError` when a contract column is missing or not a list of integers
        (naming the row). A shard without ``length`` (written by another tool) is checked with
        ``length`` computed from ``attention_mask``.
        """
        names = batch.schema.names
        missing = missing_columns(names)
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}")
        row_ids = np.asarray(row_ids, np.int64)
        lists = {
            name: list_column(batch, name, row_ids)
            for name in columns.LIST_COLUMNS
            if name in names
        }
        length = None
        if columns.LENGTH in names:
            length = int_values(batch.column(columns.LENGTH), columns.LENGTH, row_ids)
        width = np.diff(lists[columns.INPUT_IDS].offsets)
        aligned = np.ones(len(width), bool)
        for name in (columns.ATTENTION_MASK, columns.LABELS, columns.POSITION_IDS):
            if name in lists:
                aligned &= np.diff(lists[name].offsets) == width
        if aligned.all():
            self._add_aligned(lists, length, row_ids)
            return
        # Position-by-position checks need the lists to line up: they run on the rows that do,
        # and the others are counted from their own lists.
        self._add_misaligned(lists, row_ids, ~aligned, length is not None)
        keep = np.flatnonzero(aligned)
        if keep.size:
            self.add(batch.take(keep), row_ids[keep])

    def _count(
        self,
        row_ids: np.ndarray,
        width: np.ndarray,
        real: np.ndarray,
        trained: np.ndarray,
        has_length: bool,
    ) -> None:
        """What every row adds, whatever its lists: totals, its shape, the warnings' flags."""
        self.rows += len(row_ids)
        self.positions += int(width.sum())
        self.real_tokens += int(real.sum())
        self.label_tokens += int(trained.sum())
        self.rows_with_length += len(row_ids) if has_length else 0
        shape = (np.asarray(width, np.int64) << 32) | np.asarray(real, np.int64)
        self.shapes.add(shape, row_ids)
        self.flagged[c.ROWS_WITHOUT_LABELS].add(trained == 0, row_ids)
        if self.options.max_pad_fraction is not None:
            pad = np.divide(width - real, width, out=np.zeros(len(width)), where=width > 0)
            self.flagged[c.PAD_FRACTION].add(pad > self.options.max_pad_fraction, row_ids)
        if self.options.min_label_fraction is not None:
            label = np.divide(trained, real, out=np.zeros(len(real)), where=real > 0)
            self.flagged[c.LABEL_FRACTION].add(label < self.options.min_label_fraction, row_ids)

    def _add_documents(self, per_row: np.ndarray) -> None:
        self.packed = True
        found = np.bincount(per_row) if len(per_row) else _NONE
        if len(found) > len(self.documents):
            found[: len(self.documents)] += self.documents
            self.documents = found
        else:
            self.documents[: len(found)] += found

    def _add_misaligned(
        self, lists: dict[str, ListColumn], row_ids: np.ndarray, rows: np.ndarray, has_length: bool
    ) -> None:
        ids, mask = lists[columns.INPUT_IDS], lists[columns.ATTENTION_MASK]
        labels = lists[columns.LABELS]
        row_ids = row_ids[rows]
        self._count(
            row_ids,
            np.diff(ids.offsets)[rows],
            segment_sum(mask.values != 0, mask.offsets)[rows],
            segment_sum(labels.values != IGNORE_INDEX, labels.offsets)[rows],
            has_length,
        )
        self.sides.add(np.full(len(row_ids), SIDE_ANY), row_ids)
        self.flagged[c.LIST_LENGTHS].add(np.ones(len(row_ids), bool), row_ids)
        outside = segment_any(outside_ids(ids.values, self.hints.vocab_size), ids.offsets)
        self.flagged[c.IDS_IN_VOCABULARY].add(outside[rows], row_ids)
        if columns.SEQ_LENS in lists:
            seq = lists[columns.SEQ_LENS]
            self._add_documents(segment_sum(seq.values > 0, seq.offsets)[rows])

    def _add_aligned(
        self, lists: dict[str, ListColumn], length: np.ndarray | None, row_ids: np.ndarray
    ) -> None:
        hints = self.hints
        offsets = lists[columns.INPUT_IDS].offsets
        ids = lists[columns.INPUT_IDS].values
        mask = lists[columns.ATTENTION_MASK].values
        labels = lists[columns.LABELS].values
        width = np.diff(offsets)
        real_pos = mask != 0
        trained_pos = labels != IGNORE_INDEX
        real = segment_sum(real_pos, offsets)
        trained = segment_sum(trained_pos, offsets)
        not_binary = real_pos & (mask != 1)
        # Where every mask value is 0 or 1, as it should be, its sum is the count of its ones.
        mask_sum = segment_sum(mask, offsets) if not_binary.any() else real
        has_length = length is not None
        if length is None:
            length = mask_sum
        self._count(row_ids, width, real, trained, has_length)

        flags = {
            c.MASK_BINARY: segment_any(not_binary, offsets),
            c.LENGTH_MATCHES_MASK: length != mask_sum,
            c.LABELS_ON_PADDING: segment_any(~real_pos & trained_pos, offsets),
            c.LABELS_MATCH_INPUTS: segment_any(real_pos & trained_pos & (labels != ids), offsets),
            c.IDS_IN_VOCABULARY: segment_any(outside_ids(ids, hints.vocab_size), offsets),
        }
        side = _padding_sides(real_pos, offsets)
        self.sides.add(side, row_ids)
        # The smallest and largest id on each row's padded positions: one pad id if they agree.
        padded_ids = ids[~real_pos]
        padded_offsets = np.concatenate(([0], np.cumsum(width - real)))
        pad_min = segment_extreme(padded_ids, padded_offsets, np.minimum, _NO_PAD_MIN)
        pad_max = segment_extreme(padded_ids, padded_offsets, np.maximum, _NO_PAD_MAX)
        padded = pad_min != _NO_PAD_MIN
        value = np.where(pad_min == pad_max, pad_min, MIXED_PADDING)
        self.padding.add(value[padded], row_ids[padded])

        doc_starts = _NONE
        packed = columns.POSITION_IDS in lists or columns.SEQ_LENS in lists
        if packed:
            if columns.POSITION_IDS not in lists or columns.SEQ_LENS not in lists:
                present = (
                    columns.POSITION_IDS if columns.POSITION_IDS in lists else columns.SEQ_LENS
                )
                raise DataError(
                    f"packed rows need both {columns.POSITION_IDS} and {columns.SEQ_LENS}; "
                    f"only {present} is present"
                )
            documents, doc_starts = _pack_checks(
                lists, real_pos, trained_pos, real, length, side, flags
            )
            self._add_documents(documents)
        eos_real = None if hints.eos_id is None else real_pos & (ids == hints.eos_id)
        if eos_real is not None:
            untrained = eos_real & ~trained_pos
            self.eos_real_tokens += int(np.count_nonzero(eos_real))
            self.eos_trained_tokens += int(np.count_nonzero(eos_real & trained_pos))
            self.flagged[c.EOS_NEVER_TRAINED].add(segment_any(untrained, offsets), row_ids)
            # A real EOS left untrained right after a trained token is a hole punched into the
            # trained span by value, the mark of `labels[input_ids == pad_id] = -100` with
            # pad == eos. A document's first token follows another document: it does not count.
            flags[c.EOS_MASKED_BY_VALUE] = segment_any(
                _after_trained(untrained, trained_pos, offsets, doc_starts), offsets
            )
        else:
            self._add_holes(ids, offsets, real_pos, trained_pos, doc_starts, row_ids)
        for name, flagged in flags.items():
            self.flagged[name].add(flagged, row_ids)

        attended = _attended_padding(ids, offsets, real, width, hints)
        self.attended.add(attended[attended > 0], row_ids[attended > 0])
        end, start = _pad_at_edges(ids, offsets, real, side, pad_min, pad_max)
        self.edge_end.add(pad_min[end], row_ids[end])
        self.edge_start.add(pad_min[start], row_ids[start])
        if not packed:
            several = _several_documents(
                ids, offsets, real_pos, trained_pos, eos_real, hints.bos_id
            )
            self.flagged[c.UNDECLARED_PACKS].add(several, row_ids)

    def _add_holes(
        self,
        ids: np.ndarray,
        offsets: np.ndarray,
        real_pos: np.ndarray,
        trained_pos: np.ndarray,
        doc_starts: np.ndarray,
        row_ids: np.ndarray,
    ) -> None:
        """With the EOS id unknown, what finds the pad == EOS trap from the pad id: per id, the
        rows where it stands untrained right after a trained token (only the pad id's when it is
        known), and which ids are trained anywhere. An id never trained although it follows
        trained tokens, and that pads the rows, is the mark of ``labels[input_ids == pad_id] =
        -100`` with pad == EOS."""
        pad_id = self.hints.pad_id
        hole = _after_trained(real_pos & ~trained_pos, trained_pos, offsets, doc_starts)
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
        self.holes.add(pairs[0], row_ids[pairs[1]])
        if trained_ids.size:
            top = int(trained_ids.max()) + 1
            if top > len(self.trained_ids):
                grown = np.zeros(top, bool)
                grown[: len(self.trained_ids)] = self.trained_ids
                self.trained_ids = grown
            self.trained_ids[trained_ids] = True


def _after_trained(
    untrained: np.ndarray, trained_pos: np.ndarray, offsets: np.ndarray, doc_starts: np.ndarray
) -> np.ndarray:
    """The ``untrained`` positions right after a trained one in the same row and document."""
    hole = np.zeros(len(untrained), bool)
    hole[1:] = untrained[1:] & trained_pos[:-1]
    hole[row_starts(offsets)] = False
    hole[doc_starts] = False
    return hole


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
    lists: dict[str, ListColumn],
    real_pos: np.ndarray,
    trained_pos: np.ndarray,
    real: np.ndarray,
    length: np.ndarray,
    side: np.ndarray,
    flags: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Invariant 4 on packed rows, into ``flags``. Returns documents per row and the flat index
    of every document's first token (for rows whose documents could be placed).

    Documents lie in order over a row's real positions, which are one run (padding only at one
    end): a row ``[a b c d e P P]`` with ``seq_lens [2, 3]`` holds ``a b`` and ``c d e``; its
    ``position_ids`` must read ``[0 1 0 1 2 …]`` over the real run and ``labels`` at ``a`` and
    ``c`` must be -100.
    """
    offsets = lists[columns.INPUT_IDS].offsets
    n = len(offsets) - 1
    width = np.diff(offsets)
    positions = lists[columns.POSITION_IDS].values
    seq = lists[columns.SEQ_LENS]
    doc_lens = seq.values.astype(np.int64)
    negative = segment_any(doc_lens < 0, seq.offsets)
    seq_sum = segment_sum(doc_lens, seq.offsets)
    flags[c.SEQ_LENS_SUM] = (seq_sum != length) | negative

    # Documents can be placed only where they tile the real run exactly.
    placeable = (seq_sum == real) & ~negative & (side != SIDE_NEITHER)
    first_is_real = np.zeros(n, bool)
    nonempty = width > 0
    first_is_real[nonempty] = real_pos[offsets[:-1][nonempty]]
    run_start = offsets[:-1] + np.where(first_is_real, 0, width - real)
    doc_row = np.repeat(np.arange(n), np.diff(seq.offsets))
    ends = np.concatenate(([0], np.cumsum(doc_lens)))
    within_row = ends[:-1] - ends[seq.offsets[:-1]][doc_row]
    doc_start = run_start[doc_row] + within_row
    use = placeable[doc_row] & (doc_lens > 0)
    starts = doc_start[use]

    bad_first = np.zeros(n, bool)
    bad_first[doc_row[use][trained_pos[starts]]] = True
    flags[c.DOCUMENT_START_LABEL] = bad_first

    # Expected position id = distance from the latest document start at or before a position.
    index_type = np.int32 if len(positions) < np.iinfo(np.int32).max else np.int64
    marks = np.zeros(len(positions), index_type)
    marks[starts] = starts
    expected = np.arange(len(positions), dtype=index_type) - np.maximum.accumulate(marks)
    covered = real_pos & np.repeat(placeable, width)
    flags[c.POSITION_IDS_RESTART] = segment_any(covered & (positions != expected), offsets)
    return segment_sum(doc_lens > 0, seq.offsets), starts


def _attended_padding(
    ids: np.ndarray, offsets: np.ndarray, real: np.ndarray, width: np.ndarray, hints: LayoutHints
) -> np.ndarray:
    """Per row: :data:`ATTENDED_END` where the mask is all ones and the row ends with a run of
    the pad id (its padding is attended), :data:`ATTENDED_START` where it starts with one. A
    document may end with EOS (or start with BOS), so where the pad id may be that token, one of
    it is not enough: the run must be two long."""
    found = np.zeros(len(width), np.int64)
    pad = hints.pad_id
    full = np.flatnonzero((real == width) & (width > 0))
    if pad is None or not full.size:
        return found
    first, last = offsets[:-1][full], offsets[1:][full] - 1
    two = last > first
    end_run = ids[last] == pad
    start_run = ids[first] == pad
    if hints.eos_id is None or hints.eos_id == pad:
        end_run &= two & (ids[np.where(two, last - 1, last)] == pad)
    if hints.bos_id is None or hints.bos_id == pad:
        start_run &= two & (ids[np.where(two, first + 1, first)] == pad)
    found[full] = end_run * ATTENDED_END + start_run * ATTENDED_START
    return found


def _pad_at_edges(
    ids: np.ndarray,
    offsets: np.ndarray,
    real: np.ndarray,
    side: np.ndarray,
    pad_min: np.ndarray,
    pad_max: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows (flags) whose padding holds one id that the real position next to the padding
    holds too: for right-padded rows at the end of the real run, for left-padded rows at its
    start. That is one pad the mask marks as real: ``[P P P a b]`` with the mask ``[0 0 1 1 1]``
    lets ``a`` and ``b`` see a pad. Whether the id is the pad id, and whether it may be a real
    EOS (BOS) there, is settled once the layout is."""
    end, start = np.zeros(len(real), bool), np.zeros(len(real), bool)
    one_pad = (pad_min == pad_max) & (real > 0) & (real < np.diff(offsets))
    right = np.flatnonzero(one_pad & (side == SIDE_RIGHT))
    left = np.flatnonzero(one_pad & (side == SIDE_LEFT))
    end[right] = ids[offsets[:-1][right] + real[right] - 1] == pad_min[right]
    start[left] = ids[offsets[1:][left] - real[left]] == pad_min[left]
    return end, start


def _several_documents(
    ids: np.ndarray,
    offsets: np.ndarray,
    real_pos: np.ndarray,
    trained_pos: np.ndarray,
    eos_real: np.ndarray | None,
    bos_id: int | None,
) -> np.ndarray:
    """Per row of rows without pack columns: it holds several documents one after another, as a
    pack does, and is trained as plain text. A document ends at a real EOS (``eos_real``, where
    the EOS id is known) or starts at a BOS strictly inside the row's real run; plain text trains
    every real token but the first of each document, which a pack leaves untrained.
    Prompt/completion and chat rows, whose untrained prompts and user turns lie inside documents,
    are not flagged: a turn of a chat may end with EOS. A BOS that doubles as EOS opening the row
    (GPT-2) ends nothing.

    Worked on the few positions that matter (real EOS and BOS, untrained real tokens), not on
    every position: a batch without a document boundary inside a row costs two comparisons."""
    rows = np.zeros(len(offsets) - 1, bool)
    ends = _NONE if eos_real is None else _inside_runs(eos_real, offsets, real_pos)
    opens = _NONE if bos_id is None else _inside_runs((ids == bos_id) & real_pos, offsets, real_pos)
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


def _inside_runs(found: np.ndarray, offsets: np.ndarray, real_pos: np.ndarray) -> np.ndarray:
    """Flat positions (sorted) of the ``found`` positions strictly inside a row's real run: a
    real token on both sides, in the same row."""
    at = np.flatnonzero(found)
    row = np.searchsorted(offsets, at, side="right") - 1
    at = at[(at > offsets[row]) & (at < offsets[row + 1] - 1)]
    return at[real_pos[at - 1] & real_pos[at + 1]]


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Per value: whether it is in ``sorted_set`` (ascending)."""
    if not sorted_set.size:
        return np.zeros(len(values), bool)
    slot = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[slot] == values
