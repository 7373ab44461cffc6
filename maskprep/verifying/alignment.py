"""The output's truth about rows, laid out where a foreign feed put their tokens.

A collate function may pad rows again (to the batch's longest, to a multiple of 8, on another
side), trim the padding they came with, or corrupt ids for masked-LM training. What is real,
which document each token belongs to and what the output trains are known from the rows as the
output holds them (its masks, ``seq_lens``, ``position_ids``, labels), never from the feed under
test. This places each row's real tokens in the fed row: at the one offset where the fed ids
equal them, exactly, taking a masked-LM corruption back from the fed labels (which hold the
original id wherever an id was changed). A fed row that holds its row's tokens nowhere cannot be
judged and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..collate import RowArrays, positions_in_segments
from ..columns import IGNORE_INDEX


@dataclass(frozen=True)
class Misplaced:
    """A fed row (``index`` in the batch) that holds its row's ``length`` real tokens nowhere."""

    index: int
    length: int
    width: int


def place_rows(
    truth: RowArrays, fed_ids: np.ndarray, fed_labels: np.ndarray | None
) -> np.ndarray | Misplaced:
    """Per row, the offset in ``fed_ids`` where the row's real tokens are; or the first row
    that holds them nowhere."""
    real = truth.attention_mask > 0
    offsets = np.zeros(len(fed_ids), dtype=np.int64)
    restored = None
    if fed_labels is not None and fed_labels.shape == fed_ids.shape:
        restored = np.where(fed_labels != IGNORE_INDEX, fed_labels, fed_ids)
    for i in range(len(fed_ids)):
        tokens = truth.input_ids[i][real[i]]
        stored_at = int(np.argmax(real[i]))
        found = _offset(fed_ids[i], tokens, stored_at)
        if found is None and restored is not None:
            found = _offset(restored[i], tokens, stored_at)
        if found is None:
            return Misplaced(i, len(tokens), fed_ids.shape[1])
        offsets[i] = found
    return offsets


def _offset(row: np.ndarray, tokens: np.ndarray, preferred: int) -> int | None:
    """Where ``tokens`` sit in ``row``: at ``preferred`` when they do, else the first place."""
    width, length = len(row), len(tokens)
    if length > width:
        return None
    if preferred + length <= width and np.array_equal(row[preferred : preferred + length], tokens):
        return preferred
    windows = np.lib.stride_tricks.sliding_window_view(row, length)
    hits = np.flatnonzero((windows == tokens).all(axis=1))
    return int(hits[0]) if len(hits) else None


def truth_in_feed(truth: RowArrays, offsets: np.ndarray, fed_ids: np.ndarray) -> RowArrays:
    """``truth`` (rows as the output holds them) laid out as the fed ``fed_ids``: real positions,
    documents, the output's labels and its ids (0 at padding) at the offsets :func:`place_rows`
    found, padding elsewhere."""
    rows, width = fed_ids.shape
    real = truth.attention_mask > 0
    lengths = real.sum(axis=1)
    row_index = np.repeat(np.arange(rows), lengths)
    within = np.concatenate([np.arange(n) for n in lengths]) if rows else np.zeros(0, np.int64)
    columns = within + np.repeat(offsets, lengths)
    mask = np.zeros((rows, width), dtype=np.int64)
    mask[row_index, columns] = 1
    labels = np.full((rows, width), IGNORE_INDEX, dtype=np.int64)
    labels[row_index, columns] = truth.labels[real]
    segments = np.full((rows, width), -1, dtype=np.int64)
    segments[row_index, columns] = truth.segments[real]
    stored = np.zeros((rows, width), dtype=np.int64)
    stored[row_index, columns] = truth.input_ids[real]
    return RowArrays(
        input_ids=stored,
        attention_mask=mask,
        labels=labels,
        position_ids=positions_in_segments(segments) if truth.packed else None,
        segments=segments,
        packed=truth.packed,
    )
