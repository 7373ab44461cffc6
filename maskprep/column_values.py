"""What the columns of a row may hold, checked by one rule wherever rows are read: ``inspect``'s
checks and ``verify``'s sample (the Arrow columns of shards), and the collator (Arrow tables, dicts
of columns and row dicts holding Python lists, NumPy arrays or tensors). One rule, so that no
reader passes what another refuses.

Every list column holds one list of integers per row. Never accepted: a null row or value, a
float (even a whole one: a float id was made by something that lost track of the type, and
truncating 7.9 to 7 trains another token), a string, a boolean (except in ``attention_mask``,
whose 0/1 flags may be booleans), a nested list, or a value past the 64-bit integers every kernel
computes in. ``length`` holds one integer per row. A token id is 0 to
:data:`~maskprep.token_ids.MAX_TOKEN_ID` (:func:`outside_ids`): ``inspect`` reports ids outside as
a failed check, the collator refuses them. Each refusal is a :class:`~maskprep.errors.DataError`
naming the row and the column.

A list column is read as flat values plus offsets (:class:`ListColumn`: row ``i`` of
``input_ids`` is ``values[offsets[i]:offsets[i + 1]]``), and reduced per row by the
``segment_*`` functions, so that a batch of millions of positions costs a handful of NumPy passes
and no Python loop per token or per row (``inspect``, ``verify``'s reach of rows, ``LeakGuard``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from . import columns
from .errors import DataError
from .token_ids import MAX_TOKEN_ID

_INT64_MAX = np.iinfo(np.int64).max
#: List columns whose values may be booleans (0/1 flags) as well as integers.
FLAG_COLUMNS = frozenset({columns.ATTENTION_MASK})
#: Rows are numbered from 0 unless the caller says which rows of the data they are.
Rows = Sequence[int] | np.ndarray | None


class ListColumn(NamedTuple):
    """A list column as flat values and offsets rebased to start at 0."""

    values: np.ndarray
    offsets: np.ndarray


def _row(rows: Rows, index: int) -> int:
    return index if rows is None else int(rows[index])


def _first_null(array: pa.Array) -> int:
    return int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])


def _values_wanted(name: str) -> str:
    return "integers or booleans" if name in FLAG_COLUMNS else "integers"


def list_values(array: pa.Array | pa.ChunkedArray, name: str, rows: Rows = None) -> ListColumn:
    """The flat values and the offsets (from 0) of the list column ``name``: row ``i`` holds
    ``values[offsets[i]:offsets[i + 1]]`` in the column's own integer dtype (no copy where Arrow
    allows). ``rows`` numbers the rows in messages (default 0, 1, …).

    Raises :class:`~maskprep.errors.DataError` naming the row and the column when the column
    breaks the rule of the module notes.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_field))
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise DataError(
            f"{_where(rows, 0, name)}: {array.type} values, not a list of "
            f"{_values_wanted(name)} per row"
        )
    kind = array.type.value_type
    wanted_type = pa.types.is_integer(kind) or (name in FLAG_COLUMNS and pa.types.is_boolean(kind))
    if not wanted_type:
        raise DataError(f"{_where(rows, 0, name)}: lists of {kind}, not of {_values_wanted(name)}")
    if array.null_count:
        raise DataError(f"{_where(rows, _first_null(array), name)}: null, not a list")
    offsets = array.offsets.to_numpy().astype(np.int64)
    # .values ignores a slice's offset; cutting it by the offsets keeps zero-copy reads.
    flat = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    offsets = offsets - offsets[0]
    if flat.null_count:
        raise DataError(f"{_at(rows, offsets, _first_null(flat), name)} is null")
    values = flat.to_numpy(zero_copy_only=False)
    _check_int64(values, offsets, name, rows)
    if values.dtype == np.uint64:  # compared with int64 columns, NumPy would go through floats
        values = values.astype(np.int64)
    return ListColumn(values, offsets)


def list_column(batch: pa.RecordBatch | pa.Table, name: str, rows: Rows = None) -> ListColumn:
    """The list column ``name`` of ``batch``, as :func:`list_values` reads it."""
    return list_values(batch.column(name), name, rows)


def int_values(array: pa.Array | pa.ChunkedArray, name: str, rows: Rows = None) -> np.ndarray:
    """The flat integer column ``name`` (``length``) as int64; a
    :class:`~maskprep.errors.DataError` naming the row and the column for a null, a value that is
    no integer or one past int64."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_integer(array.type):
        raise DataError(f"{_where(rows, 0, name)}: {array.type} values, not integers")
    if array.null_count:
        raise DataError(f"{_where(rows, _first_null(array), name)}: null, not an integer")
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype == np.uint64 and values.size and int(values.max()) > _INT64_MAX:
        first = int(np.argmax(values > _INT64_MAX))
        raise DataError(f"{_where(rows, first, name)}: {values[first]} is past the int64 range")
    return values.astype(np.int64, copy=False)


def check_columns(table: pa.Table | pa.RecordBatch, rows: Rows = None) -> None:
    """Check every contract column ``table`` holds by the rule of the module notes; ``rows``
    numbers its rows in messages."""
    names = table.schema.names
    for name in columns.LIST_COLUMNS:
        if name in names:
            list_values(table.column(name), name, rows)
    if columns.LENGTH in names:
        int_values(table.column(columns.LENGTH), columns.LENGTH, rows)


def row_values(value: Any, name: str, row: int) -> np.ndarray:
    """One row's list of the column ``name`` as a collator is handed it (a list or tuple, a NumPy
    array, a tensor), as an int64 array, refusing what the module notes say: floats, strings,
    ``None``, booleans (outside ``attention_mask``), nested lists, values past int64. Nothing is
    converted that is not already an integer."""
    if isinstance(value, (list, tuple)) and (name not in FLAG_COLUMNS or not value):
        array = _list_row(value, name, row)  # an empty list too: NumPy would make it floats
    elif isinstance(value, (list, tuple, np.ndarray)) or hasattr(value, "__array__"):
        # A flag column may mix booleans and integers, so NumPy's own reading of the list is
        # exact there: anything but integers and booleans gives another dtype, refused below.
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as error:  # a GPU tensor, ragged arrays
            raise DataError(f"row {row}: {name}: cannot be read as integers ({error})") from None
        if array.dtype == object:
            array = _list_row(array.tolist(), name, row)
    else:
        raise DataError(f"row {row}: {name}: {_describe(value)}, not a list of integers")
    if array.ndim != 1:
        raise DataError(
            f"row {row}: {name}: {array.ndim}-dimensional, not one list of integers per row"
        )
    # Signed and unsigned integers, and booleans in a flag column.
    if array.dtype.kind not in ("iub" if name in FLAG_COLUMNS else "iu"):
        raise DataError(f"row {row}: {name}: {array.dtype} values, not {_values_wanted(name)}")
    _check_int64(array, np.array([0, len(array)]), name, [row])
    return array.astype(np.int64, copy=False)


def length_value(value: Any, row: int) -> np.ndarray:
    """One row's ``length`` as a collator is handed it (an integer, or a 0-dimensional array or
    tensor of one), as a 0-dimensional int64 array; anything else refused."""
    if hasattr(value, "__array__") and not isinstance(value, (int, np.integer)):
        array = np.asarray(value)
        if array.ndim == 0 and array.dtype.kind in "iu":
            value = array.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataError(f"row {row}: {columns.LENGTH}: {_describe(value)}, not an integer")
    if not 0 <= int(value) <= _INT64_MAX:
        raise DataError(f"row {row}: {columns.LENGTH}: {value} is not a number of tokens")
    return np.asarray(int(value), dtype=np.int64)


def _list_row(value: list[Any] | tuple[Any, ...], name: str, row: int) -> np.ndarray:
    """A list of Python or NumPy integers as an array, anything else in it refused: NumPy would
    turn ``[True, 5]`` into ``[1, 5]`` and ``[1.5]`` or ``["7"]`` into integers if asked."""
    kinds = set(map(type, value))  # one pass in C over the list
    allowed = {int} | ({bool} if name in FLAG_COLUMNS else set())
    odd = [k for k in kinds if k not in allowed and not _numpy_integer(k, name)]
    if odd:
        at = next(i for i, v in enumerate(value) if type(v) in odd)
        raise DataError(
            f"row {row}: {name}: position {at} holds {_describe(value[at])}, "
            f"not {'an integer or a boolean' if name in FLAG_COLUMNS else 'an integer'}"
        )
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError:
        at = next(i for i, v in enumerate(value) if not -_INT64_MAX - 1 <= int(v) <= _INT64_MAX)
        raise DataError(
            f"row {row}: {name}: position {at} holds {value[at]}, past the int64 range"
        ) from None


def _numpy_integer(kind: type, name: str) -> bool:
    if issubclass(kind, np.bool_):
        return name in FLAG_COLUMNS
    return issubclass(kind, np.integer)


def _check_int64(values: np.ndarray, offsets: np.ndarray, name: str, rows: Rows) -> None:
    """Refuse unsigned 64-bit values that int64 cannot hold (casting would wrap them to
    negatives: 2**64 - 1 would become -1)."""
    if values.dtype != np.uint64 or not values.size:
        return
    past = values > _INT64_MAX
    if past.any():
        at = int(np.argmax(past))
        raise DataError(f"{_at(rows, offsets, at, name)} holds {values[at]}, past the int64 range")


def outside_ids(ids: np.ndarray, vocab_size: int | None = None) -> np.ndarray:
    """Flags of the ``ids`` that are no token id: below 0, or at or past ``vocab_size`` (without
    it, past :data:`~maskprep.token_ids.MAX_TOKEN_ID`, the largest id an int32 column holds)."""
    upper = MAX_TOKEN_ID + 1 if vocab_size is None else min(vocab_size, MAX_TOKEN_ID + 1)
    return (ids < 0) | (ids >= upper)


def _where(rows: Rows, index: int, name: str) -> str:
    return f"row {_row(rows, index)}: {name}"


def _at(rows: Rows, offsets: np.ndarray, at: int, name: str) -> str:
    """Row and position of the flat value ``at``."""
    index = int(np.searchsorted(offsets, at, side="right")) - 1
    return f"{_where(rows, index, name)}: position {at - int(offsets[index])}"


def _describe(value: Any) -> str:
    """A value in a message: short, and its type where the repr does not tell it."""
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return f"the boolean {value}"
    if isinstance(value, (float, np.floating)):
        return f"the float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:19] + "…"
        return f"the string {shown!r}"
    if isinstance(value, (int, np.integer)):
        return f"the integer {value}"
    return f"a {type(value).__name__}"


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
    """Per-row "any flag set"; fast when flags are rare, as faults usually are."""
    out = np.zeros(len(offsets) - 1, bool)
    hits = np.flatnonzero(flags)
    if hits.size:
        out[np.searchsorted(offsets, hits, side="right") - 1] = True
    return out


def segment_extreme(
    values: np.ndarray, offsets: np.ndarray, ufunc: np.ufunc, empty: int
) -> np.ndarray:
    """Per-row ``ufunc`` reduction (``np.maximum``, ``np.minimum``); ``empty`` for empty rows."""
    width = _uniform_width(offsets)
    if width is not None:
        return ufunc.reduce(values.reshape(len(offsets) - 1, width), axis=1).astype(np.int64)
    out = np.full(len(offsets) - 1, empty, np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if nonempty.any():
        out[nonempty] = ufunc.reduceat(values, offsets[:-1][nonempty])
    return out


def row_starts(offsets: np.ndarray) -> np.ndarray:
    """Flat index of the first position of every non-empty row."""
    return offsets[:-1][offsets[1:] > offsets[:-1]]
