"""The column contract every maskprep shard follows, in one place.

A row holds three aligned lists and a scalar::

    input_ids       [ 101, 7592, 2088,  102,    0,    0]   token ids, pad id at padding
    attention_mask  [   1,    1,    1,    1,    0,    0]   1 real token, 0 padding
    labels          [ 101, 7592, 2088,  102, -100, -100]   id where trained, else IGNORE_INDEX
    length          4                                       number of real tokens

Labels are NOT shifted: Hugging Face models shift them inside the loss. Packed rows add
``position_ids`` (restarting at 0 for each document) and ``seq_lens`` (document lengths in order).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Label value that the cross-entropy loss of PyTorch and Hugging Face models ignores.
IGNORE_INDEX = -100

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LABELS = "labels"
LENGTH = "length"
POSITION_IDS = "position_ids"
SEQ_LENS = "seq_lens"

#: Columns every shard has, whatever the strategy.
REQUIRED_COLUMNS = (INPUT_IDS, ATTENTION_MASK, LABELS, LENGTH)
#: Columns that only packed shards have.
PACK_COLUMNS = (POSITION_IDS, SEQ_LENS)
#: Columns that hold a list per row (all but ``length``), in schema order.
LIST_COLUMNS = (INPUT_IDS, ATTENTION_MASK, LABELS, POSITION_IDS, SEQ_LENS)

_TYPES = {
    INPUT_IDS: pa.list_(pa.int32()),
    ATTENTION_MASK: pa.list_(pa.int8()),
    LABELS: pa.list_(pa.int32()),
    LENGTH: pa.int32(),
    POSITION_IDS: pa.list_(pa.int32()),
    SEQ_LENS: pa.list_(pa.int32()),
}


def schema(packed: bool = False) -> pa.Schema:
    """Return the Arrow schema of a shard; ``packed`` adds ``position_ids`` and ``seq_lens``."""
    names = REQUIRED_COLUMNS + (PACK_COLUMNS if packed else ())
    return pa.schema([pa.field(name, _TYPES[name], nullable=False) for name in names])


def from_numpy(values: np.ndarray, dtype: type[np.integer]) -> pa.Array:
    """``values`` as an Arrow array of the integer ``dtype``, sharing memory when it already
    has that dtype.

    Made from the buffer itself: ``pa.array`` imports pandas the first time it is called, to
    check for pandas objects, which is a tenth of a second of a short build's start-up.
    """
    if values.dtype != dtype:
        # A narrowing cast wraps around silently; pa.array would have refused.
        limits = np.iinfo(dtype)
        if values.dtype.kind not in "iu" or (
            values.size and (values.min() < limits.min or values.max() > limits.max)
        ):
            raise OverflowError(f"{values.dtype} values do not fit {np.dtype(dtype)}")
    values = np.ascontiguousarray(values, dtype=dtype)
    arrow_type = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def list_array(offsets: np.ndarray, values: np.ndarray, dtype: type[np.integer]) -> pa.ListArray:
    """A list column: row ``i`` holds ``values[offsets[i]:offsets[i + 1]]`` as ``dtype``."""
    return pa.ListArray.from_arrays(from_numpy(offsets, np.int32), from_numpy(values, dtype))


def to_numpy(array: pa.Array, dtype: type[np.integer]) -> np.ndarray:
    """A NumPy view of a null-free integer Arrow ``array`` of ``dtype`` (no copy, and no pandas
    import, which ``Array.to_numpy`` makes on its first call)."""
    if array.type != pa.from_numpy_dtype(np.dtype(dtype)) or array.null_count:
        raise TypeError(f"expected a null-free {np.dtype(dtype)} array, not {array.type}")
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    data = np.frombuffer(array.buffers()[1], dtype=dtype)
    return data[array.offset : array.offset + len(array)]
