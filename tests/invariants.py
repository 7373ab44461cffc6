"""DESIGN.md's row invariants, asserted row by row in plain NumPy (a reference for the tests)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from maskprep.columns import IGNORE_INDEX


def assert_pad_invariants(table: pa.Table, pad_id: int, padding_side: str, width: int) -> None:
    """Invariants 1–3 for padded rows of exactly ``width`` positions."""
    for i, row in enumerate(table.to_pylist()):
        ids = np.array(row["input_ids"])
        mask = np.array(row["attention_mask"])
        labels = np.array(row["labels"])
        assert len(ids) == len(mask) == len(labels) == width, f"row {i}: lengths differ"
        assert set(np.unique(mask)) <= {0, 1}, f"row {i}: mask not 0/1"
        assert row["length"] == mask.sum(), f"row {i}: length != sum(mask)"
        assert (labels[mask == 0] == IGNORE_INDEX).all(), f"row {i}: label on padding"
        real = mask == 1
        assert ((labels[real] == IGNORE_INDEX) | (labels[real] == ids[real])).all(), f"row {i}"
        n = row["length"]
        expected = np.zeros(width, np.int8)
        if padding_side == "right":
            expected[:n] = 1
        else:
            expected[width - n :] = 1
        assert (mask == expected).all(), f"row {i}: real tokens not one run on the {padding_side}"
        assert (ids[mask == 0] == pad_id).all(), f"row {i}: padding does not hold the pad id"
