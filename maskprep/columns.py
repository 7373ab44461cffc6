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
