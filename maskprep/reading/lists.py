"""List columns read from Arrow as flat NumPy arrays plus offsets (row ``i`` of ``input_ids`` is
``ids[offsets[i]:offsets[i + 1]]``), and per-row reductions over them, so that a batch of millions
of positions costs a handful of NumPy passes and no Python loop per token or per row. Every reader
of shards uses them: ``inspect``, ``verify``'s reach of rows and ``LeakGuard``'s index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..column_values import Rows, list_values


@dataclass(frozen=True)
class ListColumn:
    """A list column as flat values and offsets rebased to start at 0."""

    values: np.ndarray
    offsets: np.ndarray


def list_column(batch: pa.RecordBatch, name: str, rows: Rows = None) -> ListColumn:
    """The list column ``name`` of ``batch``, checked as every reader of rows checks it
    (:func:`maskprep.column_values.list_values`; ``rows`` numbers the rows in its messages)."""
    values, offsets = list_values(batch.column(name), name, rows)
    return ListColumn(values, offsets)


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
