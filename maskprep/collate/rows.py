"""Rows as they reach a collator (row dicts, a dict of columns, an Arrow table) → padded NumPy
matrices, with every refusal a careless feed deserves: columns lost on the way, rows of two outputs
in one batch, padding that contradicts the pad id or side, packs that cannot be split; and the
label rules that follow from the documents of the rows (:func:`check_labels`). Where the documents
of a row are: from ``seq_lens``, or from the restarts of ``position_ids`` when a trainer dropped
``seq_lens``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import columns
from ..column_values import int_values, length_value, list_values, outside_ids, row_values
from ..columns import IGNORE_INDEX
from ..config import PADDING_SIDES, PaddingSide
from ..errors import DataError
from ..token_ids import MAX_TOKEN_ID

if TYPE_CHECKING:
    import pyarrow as pa

#: The columns the collator reads. A trainer that drops columns must keep these.
COLLATE_COLUMNS: tuple[str, ...] = columns.LIST_COLUMNS
_READ = (*COLLATE_COLUMNS, columns.LENGTH)
#: How to keep the columns, for the errors that find them gone.
KEEP_COLUMNS = (
    "keep them: remove_unused_columns=False in transformers.TrainingArguments (or TRL's "
    "SFTConfig), or keep maskprep.collate.COLLATE_COLUMNS"
)


@dataclass(frozen=True)
class RowArrays:
    """A batch of rows as padded NumPy matrices ``(batch, width)``.

    ``segments`` numbers the documents of each row (0, 1, …) at real positions and is -1 at
    padding; ``packed`` says whether the rows carried ``seq_lens`` or ``position_ids``, and
    ``position_ids`` then holds the positions derived from the documents (0 at each document's
    first token and at padding), else ``None``.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray | None
    segments: np.ndarray
    packed: bool


def _columns_of(rows: Any) -> dict[str, list[np.ndarray]]:
    """Each column the collator reads, as a list of per-row int64 arrays (``length``: scalars),
    checked by the one rule of :mod:`maskprep.column_values`.

    ``rows`` is a list of row dicts, a dict of columns (a ``datasets`` batch) or an Arrow
    table/batch. Rows of one batch must carry the same columns: rows of two outputs mixed in one
    batch (one packed, one not) would otherwise be collated as whichever came first.
    """
    if hasattr(rows, "schema") and hasattr(rows, "column"):
        return _arrow_columns(rows)
    if isinstance(rows, Mapping) and columns.INPUT_IDS in rows:
        return _dict_columns(rows)
    if not isinstance(rows, Sequence) or not rows or not isinstance(rows[0], Mapping):
        raise DataError(
            "collate needs a non-empty list of rows, a dict of columns or an Arrow table"
        )
    first = [n for n in _READ if n in rows[0]]
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"row {index}: {type(row).__name__}, not a row (a dict of columns)")
        present = [n for n in _READ if n in row]
        if present != first:
            raise DataError(
                f"row {index} has the columns {', '.join(present)} but row 0 has "
                f"{', '.join(first)}: rows of different outputs in one batch?"
            )
    return {n: [_value(row[n], n, i) for i, row in enumerate(rows)] for n in first}


def _dict_columns(rows: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """A dict of columns, each a sequence of rows of one length."""
    names = [n for n in _READ if n in rows]
    counts = {}
    for name in names:
        column = rows[name]
        if isinstance(column, (str, bytes, Mapping)) or not hasattr(column, "__len__"):
            raise DataError(f"column {name}: {type(column).__name__}, not a list of rows")
        counts[name] = len(column)
    rows_in = counts[columns.INPUT_IDS]
    if rows_in == 0:
        raise DataError("collate needs at least one row; the columns hold none")
    for name, count in counts.items():
        if count != rows_in:
            raise DataError(
                f"column {name} has {count} rows but input_ids has {rows_in}: columns of "
                "different batches?"
            )
    return {n: [_value(v, n, i) for i, v in enumerate(rows[n])] for n in names}


def _value(value: Any, name: str, index: int) -> np.ndarray:
    """One row's value of a column: a list of integers, or one integer for ``length``."""
    if name == columns.LENGTH:
        return length_value(value, index)
    return row_values(value, name, index)


def _arrow_columns(table: pa.Table | pa.RecordBatch) -> dict[str, list[np.ndarray]]:
    if table.num_rows == 0:
        raise DataError("collate needs at least one row; the table holds none")
    out: dict[str, list[np.ndarray]] = {}
    for name in _READ:
        if name not in table.schema.names:
            continue
        if name == columns.LENGTH:
            out[name] = list(int_values(table.column(name), name))
            continue
        values, offsets = list_values(table.column(name), name)
        out[name] = np.split(values.astype(np.int64, copy=False), offsets[1:-1])
    if not out:
        raise DataError(
            "collate needs a non-empty list of rows, a dict of columns or an Arrow table"
        )
    return out


def pad_matrix(seqs: list[np.ndarray], width: int, fill: int, side: str) -> np.ndarray:
    """Scatter 1D sequences into a ``(len(seqs), width)`` matrix filled with ``fill``."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.full((len(seqs), width), fill, dtype=np.int64)
    if lengths.sum() == 0:
        return out
    rows = np.repeat(np.arange(len(seqs)), lengths)
    starts = np.cumsum(lengths) - lengths
    first = np.zeros(len(seqs), np.int64) if side == "right" else width - lengths
    cols = np.arange(lengths.sum()) - np.repeat(starts, lengths) + np.repeat(first, lengths)
    out[rows, cols] = np.concatenate(seqs)
    return out


def row_arrays(
    rows: Any,
    *,
    pad_id: int | None = None,
    padding_side: PaddingSide | None = None,
    packed: bool | None = None,
) -> RowArrays:
    """Pad a batch of rows (dicts, a dict of columns or an Arrow table) and number documents.

    Rows already of one length (``pad``, ``pack``) come back unchanged; shorter rows are padded on
    the padding side with the pad id, attention 0 and labels ``IGNORE_INDEX``. ``pad_id`` and
    ``padding_side`` default to what the rows' own padding shows; rows that need padding while
    none shows and no ``pad_id`` is given are refused, as are rows whose padding contradicts the
    ones given. ``packed`` says whether the rows must be packs (``True``: refused unless
    ``seq_lens`` or ``position_ids`` survived to split them), must not be (``False``), or either
    (``None``, from the columns).
    """
    if padding_side not in (None, *PADDING_SIDES):
        raise ValueError(f"padding_side must be left or right, not {padding_side!r}")
    cols = _columns_of(rows)
    lengths = _check_columns(cols)
    is_packed = _is_packed(cols, packed)
    masks = cols[columns.ATTENTION_MASK]
    side = _padding_side(masks, padding_side, is_packed)
    width = int(lengths.max())
    fill = _pad_id(cols, pad_id, needed=bool((lengths < width).any()))
    mask = pad_matrix(masks, width, 0, side)
    _check_contiguous(mask)
    labels = pad_matrix(cols[columns.LABELS], width, IGNORE_INDEX, side)
    if side == "left":
        # A row padded here on the left has its first token predicted from a pad: not a target
        # (the same rule shaping applies to rows it pads on the left).
        grown = np.nonzero(lengths < width)[0]
        labels[grown, width - lengths[grown]] = IGNORE_INDEX
    segments = np.where(mask > 0, 0, -1)
    if is_packed:
        positions = None
        if columns.POSITION_IDS in cols:
            positions = pad_matrix(cols[columns.POSITION_IDS], width, 0, side)
        segments = documents(mask, positions, cols.get(columns.SEQ_LENS))
    return RowArrays(
        input_ids=pad_matrix(cols[columns.INPUT_IDS], width, fill, side),
        attention_mask=mask,
        labels=labels,
        position_ids=positions_in_segments(segments) if is_packed else None,
        segments=segments,
        packed=is_packed,
    )


def _check_columns(cols: dict[str, list[np.ndarray]]) -> np.ndarray:
    """Row lengths, once every list column of a row has that length, the mask is 0/1 with a real
    token, and ``length`` (where it survived) counts the real tokens."""
    if columns.INPUT_IDS not in cols:
        raise DataError("rows have no 'input_ids' column")
    for name in (columns.ATTENTION_MASK, columns.LABELS):
        if name not in cols:
            raise DataError(f"rows have no {name!r} column; {KEEP_COLUMNS}")
    lengths = np.fromiter((len(s) for s in cols[columns.INPUT_IDS]), np.int64)
    for name in (columns.ATTENTION_MASK, columns.LABELS, columns.POSITION_IDS):
        for i, seq in enumerate(cols.get(name, ())):
            if len(seq) != lengths[i]:
                raise DataError(f"row {i}: {name} has {len(seq)} values, input_ids {lengths[i]}")
    _check_ids(cols[columns.INPUT_IDS], cols[columns.LABELS], lengths)
    mask = pad_matrix(cols[columns.ATTENTION_MASK], int(lengths.max()), 0, "right")
    if ((mask != 0) & (mask != 1)).any():
        raise DataError(
            f"row {first_true((mask != 0) & (mask != 1))[0]}: attention_mask is not 0/1"
        )
    real = mask.sum(axis=1)
    if (real == 0).any():
        raise DataError(f"row {int(np.argmin(real))} has no real tokens")
    if columns.LENGTH in cols:
        stated = np.asarray(cols[columns.LENGTH], dtype=np.int64)
        if (stated != real).any():
            i = int(np.argmax(stated != real))
            raise DataError(f"row {i}: length is {stated[i]} but the row has {real[i]} real tokens")
    return lengths


def _check_ids(ids: list[np.ndarray], labels: list[np.ndarray], lengths: np.ndarray) -> None:
    """Every input id is a token id and every label a token id or ``IGNORE_INDEX``: nothing else
    can be looked up in an embedding, whatever the model (the model's own vocabulary is held to
    by the :class:`~maskprep.collate.Collator` given ``vocab_size``)."""
    flat_ids = np.concatenate(ids)
    flat_labels = np.concatenate(labels)
    for name, flat, bad in (
        (columns.INPUT_IDS, flat_ids, outside_ids(flat_ids)),
        (columns.LABELS, flat_labels, outside_ids(flat_labels) & (flat_labels != IGNORE_INDEX)),
    ):
        if bad.any():
            at = int(np.argmax(bad))
            row = int(np.searchsorted(np.cumsum(lengths), at, side="right"))
            position = at - int(lengths[:row].sum())
            what = "a token id" if name == columns.INPUT_IDS else f"{IGNORE_INDEX} or a token id"
            raise DataError(
                f"row {row}: {name}: position {position} holds {flat[at]}, not {what} "
                f"(0 to {MAX_TOKEN_ID})"
            )


def _is_packed(cols: dict[str, list[np.ndarray]], packed: bool | None) -> bool:
    splittable = columns.SEQ_LENS in cols or columns.POSITION_IDS in cols
    if packed and not splittable:
        raise DataError(
            "packed rows arrived without seq_lens and position_ids, so their documents cannot be "
            f"kept apart (fed as one sequence they attend to each other); {KEEP_COLUMNS}"
        )
    if packed is False and splittable:
        raise DataError(
            "rows carry position_ids or seq_lens, but the collator was set up for padded rows "
            "(an output that is not packed): rows of another output?"
        )
    return splittable


def _padding_side(masks: list[np.ndarray], given: str | None, packed: bool) -> str:
    """The side to pad on: given, else the side the rows' own padding is on, else right.

    Packs are padded at the end whatever the tokenizer's side; their documents are found from
    real positions, so the side only matters for padded rows, which must all agree with it.
    """
    if packed:
        return given or "right"
    lead = np.fromiter((m[0] == 0 for m in masks), bool, count=len(masks))
    trail = np.fromiter((m[-1] == 0 for m in masks), bool, count=len(masks))
    if lead.any() and trail.any():
        left, right = int(np.argmax(lead)), int(np.argmax(trail))
        if left == right:
            raise DataError(f"row {left} is padded on both sides")
        raise DataError(
            f"row {left} is padded on the left and row {right} on the right: rows of different "
            "outputs in one batch?"
        )
    seen = "left" if lead.any() else "right" if trail.any() else None
    if given is not None and seen is not None and seen != given:
        row = int(np.argmax(lead if seen == "left" else trail))
        raise DataError(f"row {row} is padded on the {seen}, but padding_side is {given!r}")
    return given or seen or "right"


def _pad_id(cols: dict[str, list[np.ndarray]], given: int | None, needed: bool) -> int:
    """The pad id: ``given``, else the one id the rows' padding holds. Padding that holds another
    id than ``given``, or several ids, is refused: rows of two outputs, or the wrong pad id."""
    ids = np.concatenate(cols[columns.INPUT_IDS])
    mask = np.concatenate(cols[columns.ATTENTION_MASK])
    seen = np.unique(ids[mask == 0])
    if len(seen) > 1:
        raise DataError(
            f"the rows' padding holds the ids {', '.join(map(str, seen[:4]))}: rows of outputs "
            "with different pad ids in one batch?"
        )
    if given is not None and len(seen) and int(seen[0]) != given:
        raise DataError(
            f"the rows are padded with id {int(seen[0])}, but pad_id is {given}: rows of another "
            "output, or the wrong pad id"
        )
    if given is not None:
        return int(given)
    if len(seen):
        return int(seen[0])
    if needed:
        raise DataError(
            "rows of unequal length must be padded, and no pad id is known (the rows hold no "
            "padding to read it from): give pad_id (the tokenizer's pad_token_id), or use "
            "Collator.for_output(DIR), which reads it from the output's manifest"
        )
    return 0


def _check_contiguous(mask: np.ndarray) -> None:
    """Real tokens must be one run: a gap inside a row is padding no strategy writes."""
    runs = (np.diff(mask, axis=1, prepend=0) == 1).sum(axis=1)
    if (runs > 1).any():
        raise DataError(f"row {int(np.argmax(runs > 1))}: real tokens are not one contiguous run")


def check_labels(arrays: RowArrays, *, causal: bool) -> None:
    """Refuse labels that break the column contract; the model would train on them silently.

    Labels must be ``IGNORE_INDEX`` at padding and, at real tokens, ``IGNORE_INDEX`` or the token's
    own id (not shifted: the model shifts). For a decoder (``causal``) the first token of every
    document but the row's first, and a first token after padding, must not be trained: the
    model would predict it from the previous document's last token, or from a pad.
    """
    real = arrays.attention_mask > 0
    labels, ids = arrays.labels, arrays.input_ids
    if (~real & (labels != IGNORE_INDEX)).any():
        row, col = first_true(~real & (labels != IGNORE_INDEX))
        raise DataError(
            f"row {row}: label {labels[row, col]} on padding at position {col}; padded positions "
            f"must be labelled {IGNORE_INDEX}"
        )
    foreign = real & (labels != IGNORE_INDEX) & (labels != ids)
    if foreign.any():
        row, col = first_true(foreign)
        raise DataError(
            f"row {row}: label {labels[row, col]} at position {col} is neither {IGNORE_INDEX} nor "
            f"the token there ({ids[row, col]}); labels must not be shifted (the model shifts them)"
        )
    if not causal:
        return
    before = np.full(arrays.segments.shape, -2)
    before[:, 1:] = arrays.segments[:, :-1]
    start = real & (arrays.segments != before)
    start[:, 0] = False
    if (start & (labels != IGNORE_INDEX)).any():
        row, col = first_true(start & (labels != IGNORE_INDEX))
        raise DataError(
            f"row {row}: the token at position {col} starts a document (or follows padding) but "
            f"is trained; a decoder would predict it from another document or a pad, so its "
            f"label must be {IGNORE_INDEX}"
        )


def first_true(flags: np.ndarray) -> tuple[int, ...]:
    """Index of the first true element of ``flags`` (row-major), for naming it in an error."""
    return tuple(int(i) for i in np.argwhere(flags)[0])


def documents(
    mask: np.ndarray, positions: np.ndarray | None, seq_lens: list[np.ndarray] | None
) -> np.ndarray:
    """Document number at each real position, -1 at padding, from ``seq_lens`` and/or the padded
    ``positions`` matrix (which must agree where both survived)."""
    from_positions = None if positions is None else _segments_from_positions(mask, positions)
    if seq_lens is None:
        if from_positions is None:
            raise DataError("rows without seq_lens and position_ids cannot be split into documents")
        return from_positions
    segments = _segments_from_seq_lens(mask, seq_lens)
    if from_positions is not None and (from_positions != segments).any():
        assert positions is not None
        row = first_true(from_positions != segments)[0]
        starts = np.flatnonzero((mask[row] > 0) & (positions[row] == 0)).tolist()
        raise DataError(
            f"row {row}: seq_lens {seq_lens[row].tolist()} disagree with position_ids, which "
            f"restart at 0 at positions {starts}"
        )
    return segments


def _segments_from_seq_lens(mask: np.ndarray, seq_lens: list[np.ndarray]) -> np.ndarray:
    real_counts = mask.sum(axis=1)
    for i, lens in enumerate(seq_lens):
        if (lens <= 0).any():
            raise DataError(f"row {i}: seq_lens {lens.tolist()} hold a document of no tokens")
        if int(lens.sum()) != int(real_counts[i]):
            raise DataError(
                f"row {i}: seq_lens sum to {int(lens.sum())} but the row has "
                f"{int(real_counts[i])} real tokens"
            )
    segments = np.full(mask.shape, -1, dtype=np.int64)
    real_rows, real_cols = np.nonzero(mask > 0)
    segments[real_rows, real_cols] = np.concatenate(
        [np.repeat(np.arange(len(lens)), lens) for lens in seq_lens]
    )
    return segments


def _segments_from_positions(mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Documents start where ``position_ids`` is 0 at a real token; within a document they must
    count 1, 2, 3, … (anything else is a row of another layout, e.g. offset positions)."""
    real = mask > 0
    starts = real & (positions == 0)
    segments = np.where(real, np.cumsum(starts, axis=1) - 1, -1)
    if (real & (segments < 0)).any():
        row, col = first_true(real & (segments < 0))
        raise DataError(
            f"row {row}: position_ids start at {positions[row, col]}, not 0, at the first real "
            "token; they must count 0, 1, 2, … from each document's first token (a model's "
            "position offset is added by the collator, not stored in rows)"
        )
    expected = positions_in_segments(segments)
    if (real & (positions != expected)).any():
        row, col = first_true(real & (positions != expected))
        raise DataError(
            f"row {row}: position_ids hold {positions[row, col]} at position {col} where "
            f"{expected[row, col]} belongs; they must count 0, 1, 2, … within each document"
        )
    return segments


def positions_in_segments(segments: np.ndarray) -> np.ndarray:
    """0, 1, 2, … within each run of equal segment ids (0 at padding)."""
    width = segments.shape[1]
    index = np.broadcast_to(np.arange(width), segments.shape)
    starts = np.ones(segments.shape, dtype=bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    start_index = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    return np.where(segments >= 0, index - start_index, 0)
