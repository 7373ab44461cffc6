"""A test-side checker of the data contract's invariants 1–4 (DESIGN.md), row by row, in NumPy.

Independent of maskprep's own code on purpose: it reads rows as plain lists and says which
invariant each row breaks, so a test can assert "no violations" on real output and plant one
defect to see it counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskprep import IGNORE_INDEX, read_manifest


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which row, which invariant (1–4), and what is wrong."""

    row: int
    invariant: int
    what: str


def read_rows(directory: Path) -> list[dict[str, Any]]:
    """Every row of a finished output, in shard order, as plain Python dicts."""
    manifest = read_manifest(directory)
    rows: list[dict[str, Any]] = []
    for shard in manifest.shards:
        path = Path(directory) / shard.path
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        rows.extend(table.to_pylist())
    return rows


def smallest_bucket(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds ``length`` tokens (``None`` when none does)."""
    return min((b for b in buckets if b >= length), default=None)


def check_rows(
    rows: Iterable[Mapping[str, Any]],
    strategy: str,
    pad_id: int,
    padding_side: str = "right",
    max_length: int | None = None,
    buckets: Sequence[int] | None = None,
) -> list[Violation]:
    """Check invariants 1–4 on every row; return every violation found (empty when all hold)."""
    found: list[Violation] = []
    for index, row in enumerate(rows):
        found.extend(
            Violation(index, number, what)
            for number, what in _check_row(row, strategy, pad_id, padding_side, max_length, buckets)
        )
    return found


def _check_row(row, strategy, pad_id, padding_side, max_length, buckets):
    ids = np.asarray(row["input_ids"], dtype=np.int64)
    mask = np.asarray(row["attention_mask"], dtype=np.int64)
    labels = np.asarray(row["labels"], dtype=np.int64)
    width = len(ids)
    # 1: one length, 0/1 mask, length = sum(mask).
    if not (len(mask) == len(labels) == width):
        yield 1, "list columns differ in length"
        return
    if np.any((mask != 0) & (mask != 1)):
        yield 1, "attention_mask is not 0/1"
        return  # nothing else about the row can be judged against a broken mask
    if row["length"] != int(mask.sum()):
        yield 1, f"length {row['length']} != sum(attention_mask) {int(mask.sum())}"
    # 2: no label on padding; a real label is IGNORE_INDEX or the token's own id.
    if np.any((mask == 0) & (labels != IGNORE_INDEX)):
        yield 2, "label on a padded position"
    if np.any((mask == 1) & (labels != IGNORE_INDEX) & (labels != ids)):
        yield 2, "label differs from input id"
    real = int((mask == 1).sum())
    side = "right" if strategy in ("pack", "none") else padding_side
    expected_mask = np.zeros(width, dtype=np.int64)
    if side == "right":
        expected_mask[:real] = 1
    else:
        expected_mask[width - real :] = 1
    if strategy in ("pad", "bucket", "none", "pack"):
        # 3 (counted under 4 for packs): real tokens are one run, padding holds the pad id.
        number = 4 if strategy == "pack" else 3
        if not np.array_equal(mask, expected_mask):
            yield number, f"real positions are not one run on the {side}"
        if np.any((mask == 0) & (ids != pad_id)):
            yield number, "padded position does not hold the pad id"
    if strategy == "pad" and max_length is not None and width != max_length:
        yield 3, f"row width {width} != max_length {max_length}"
    if strategy == "bucket" and buckets is not None and width != smallest_bucket(real, buckets):
        yield 3, f"row width {width} is not the smallest bucket for {real} tokens"
    if strategy == "none" and width != real:
        yield 3, "unpadded row holds padding"
    if strategy == "pack":
        yield from _check_pack(row, ids, labels, real, width, max_length)


def _check_pack(row, ids, labels, real, width, max_length):
    seq_lens = np.asarray(row["seq_lens"], dtype=np.int64)
    positions = np.asarray(row["position_ids"], dtype=np.int64)
    if max_length is not None and width != max_length:
        yield 4, f"packed row width {width} != max_length {max_length}"
    if len(positions) != width:
        yield 4, "position_ids differ in length from input_ids"
        return
    if int(seq_lens.sum()) != row["length"]:
        yield 4, f"sum(seq_lens) {int(seq_lens.sum())} != length {row['length']}"
        return
    starts = np.cumsum(seq_lens) - seq_lens
    counting = np.concatenate([np.arange(n) for n in seq_lens]) if len(seq_lens) else []
    if not np.array_equal(positions[:real], counting):
        yield 4, "position_ids do not count 0,1,2,… within each document"
    nonempty = starts[seq_lens > 0]
    if np.any(labels[nonempty] != IGNORE_INDEX):
        yield 4, "first token of a document is trained"
