"""Rows to probe: a seeded sample drawn from a finished output."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa


def read_rows(path: str | os.PathLike[str], rows: int, seed: int) -> tuple[pa.Table, list[int]]:
    """Sample ``rows`` rows (without replacement, by ``seed``) from a finished output."""
    import pyarrow.dataset as ds

    from ..output.dataset import shard_paths

    paths = [str(p) for p in shard_paths(path)]
    if not paths:
        raise DataError(f"{path}: the output has no shards")
    kind = "parquet" if paths[0].endswith(".parquet") else "ipc"
    dataset = ds.dataset(paths, format=kind)
    total = dataset.count_rows()
    if total == 0:
        raise DataError(f"{path}: the shards hold no rows")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(total, size=min(rows, total), replace=False))
    return dataset.take(picked), [int(i) for i in picked]
