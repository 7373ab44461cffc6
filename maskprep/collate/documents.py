"""Where the documents of a row are: from ``seq_lens``, or from the restarts of ``position_ids``
when a trainer dropped ``seq_lens``."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


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
