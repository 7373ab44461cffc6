"""Concluding: the per-row numbers of every analysed batch joined into the data's layout,
statistics and one result per check.

:func:`~.analysis.analyse` reads one batch at a time, so any amount of data streams through in
bounded memory; :func:`conclude` settles what the whole data set must agree on (strategy, bucket
widths, padding side, pad id: from what the build recorded, else from the data), and turns the
flags into :class:`~.specs.CheckResult` objects and :class:`~.summary.DataStats`.
:func:`check_table` does both for one in-memory table; tests and ``maskprep verify`` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .analysis import (
    NO_PAD_MIN,
    SIDE_LEFT,
    SIDE_NEITHER,
    SIDE_RIGHT,
    PartStats,
    analyse,
    empty_part,
    merge_parts,
)
from .layout import Layout, LayoutHints, resolve_layout
from .specs import (
    CHECKS,
    DOCUMENT_START_LABEL,
    EOS_MASKED_BY_VALUE,
    EOS_NEVER_TRAINED,
    LABEL_FRACTION,
    LABELS_MATCH_INPUTS,
    LABELS_ON_PADDING,
    LENGTH_MATCHES_MASK,
    LIST_LENGTHS,
    MANIFEST_CONSISTENT,
    MASK_BINARY,
    PAD_FRACTION,
    PADDING_CONTIGUOUS,
    PADDING_HOLDS_PAD_ID,
    POSITION_IDS_RESTART,
    ROW_WIDTH,
    ROWS_WITHOUT_LABELS,
    SEQ_LENS_SUM,
    SHARDS_MATCH_MANIFEST,
    SPECS,
    CheckResult,
    Status,
)
from .summary import DataStats, data_stats


@dataclass(frozen=True)
class Thresholds:
    """Limits for the practitioner's warnings; ``None`` leaves that warning off."""

    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None


def _result(
    name: str, bad: np.ndarray | None, row_ids: np.ndarray, listed: int, detail: str = ""
) -> CheckResult:
    """A pass/fail (or pass/warn) result from a per-row offender flag; ``None`` means skipped."""
    spec = SPECS[name]
    if bad is None:
        return CheckResult(name, spec.kind, "skip", 0, (), detail)
    count = int(np.count_nonzero(bad))
    rows = tuple(int(r) for r in row_ids[np.flatnonzero(bad)[:listed]])
    status: Status = "pass" if count == 0 else ("fail" if spec.kind == "invariant" else "warn")
    return CheckResult(name, spec.kind, status, count, rows, detail or spec.description)


def _row_width_offenders(data: PartStats, layout: Layout) -> tuple[np.ndarray | None, str]:
    width, real = data.width, data.real
    if layout.strategy in ("pad", "pack"):
        if layout.max_length is None:
            return None, "row width unknown"
        return width != layout.max_length, f"every row is {layout.max_length} wide"
    if layout.strategy == "none":
        return width != real, "rows hold no padding (strategy none)"
    buckets = np.asarray(sorted(layout.buckets or ()), np.int64)
    if buckets.size == 0:
        return None, "no bucket widths known"
    slot = np.searchsorted(buckets, real, side="left")
    too_long = slot >= len(buckets)
    smallest = buckets[np.minimum(slot, len(buckets) - 1)]
    listed = ",".join(str(b) for b in buckets)
    return too_long | (width != smallest), f"each row is the smallest bucket that fits ({listed})"


def conclude(
    parts: Sequence[PartStats],
    hints: LayoutHints = LayoutHints(),
    thresholds: Thresholds = Thresholds(),
    listed: int = 5,
    shards_check: CheckResult | None = None,
    manifest_check: CheckResult | None = None,
) -> tuple[Layout, DataStats, tuple[CheckResult, ...]]:
    """Turn the analysed parts into the data's layout, statistics and one result per check.

    ``shards_check`` is the result of comparing the shard files with their manifest and
    ``manifest_check`` whether the manifest adds up, which only the caller can tell (the rows do
    not know where they came from); without them they are skipped.
    """
    data = merge_parts(list(parts)) if parts else empty_part()
    layout = resolve_layout(data, hints)
    ids = data.row_ids
    stats = data_stats(data, layout)
    results: dict[str, CheckResult] = {
        SHARDS_MATCH_MANIFEST: shards_check
        or CheckResult(SHARDS_MATCH_MANIFEST, "invariant", "skip", 0, (), "no manifest"),
        MANIFEST_CONSISTENT: manifest_check
        or CheckResult(MANIFEST_CONSISTENT, "invariant", "skip", 0, (), "no manifest"),
    }
    for name in (LIST_LENGTHS, MASK_BINARY, LENGTH_MATCHES_MASK, LABELS_ON_PADDING):
        results[name] = _result(name, data.flags[name], ids, listed)
    results[LABELS_MATCH_INPUTS] = _result(
        LABELS_MATCH_INPUTS, data.flags[LABELS_MATCH_INPUTS], ids, listed
    )

    side_bad = data.side == SIDE_NEITHER
    if layout.padding_side == "right":
        side_bad |= data.side == SIDE_LEFT
    elif layout.padding_side == "left":
        side_bad |= data.side == SIDE_RIGHT
    where = f"on the {layout.padding_side} side" if layout.padding_side else "at one end"
    side_text = f"real tokens are one run, padding {where}"
    results[PADDING_CONTIGUOUS] = _result(PADDING_CONTIGUOUS, side_bad, ids, listed, side_text)

    has_padding = data.pad_min != NO_PAD_MIN
    if layout.pad_id is None:
        results[PADDING_HOLDS_PAD_ID] = _result(
            PADDING_HOLDS_PAD_ID, None, ids, listed, "no padding, or pad id unknown"
        )
    else:
        pad_bad = has_padding & ((data.pad_min != layout.pad_id) | (data.pad_max != layout.pad_id))
        text = f"padded positions hold pad id {layout.pad_id} ({layout.pad_id_source})"
        results[PADDING_HOLDS_PAD_ID] = _result(PADDING_HOLDS_PAD_ID, pad_bad, ids, listed, text)

    width_bad, width_text = _row_width_offenders(data, layout)
    results[ROW_WIDTH] = _result(ROW_WIDTH, width_bad, ids, listed, width_text)

    for name in (SEQ_LENS_SUM, POSITION_IDS_RESTART, DOCUMENT_START_LABEL):
        if data.packed:
            results[name] = _result(name, data.flags[name], ids, listed)
        else:
            results[name] = _result(name, None, ids, listed, "rows are not packed")

    if layout.eos_id is None:
        for name in (EOS_MASKED_BY_VALUE, EOS_NEVER_TRAINED):
            results[name] = _result(name, None, ids, listed, "EOS id unknown")
    else:
        results[EOS_MASKED_BY_VALUE] = _result(
            EOS_MASKED_BY_VALUE, data.flags[EOS_MASKED_BY_VALUE], ids, listed
        )
        never = data.eos_real_tokens > 0 and data.eos_trained_tokens == 0
        text = (
            f"EOS ({layout.eos_id}) appears {data.eos_real_tokens} times in attended inputs and "
            f"is trained {data.eos_trained_tokens} times"
        )
        results[EOS_NEVER_TRAINED] = _result(
            EOS_NEVER_TRAINED, data.eos_untrained & never, ids, listed, text
        )

    results[ROWS_WITHOUT_LABELS] = _result(ROWS_WITHOUT_LABELS, data.trained == 0, ids, listed)
    results[PAD_FRACTION] = _fraction_result(
        PAD_FRACTION,
        stats.pad_fraction,
        thresholds.max_pad_fraction,
        above=True,
        per_row=np.divide(
            data.width - data.real, data.width, out=np.zeros(len(ids)), where=data.width > 0
        ),
        row_ids=ids,
        listed=listed,
    )
    results[LABEL_FRACTION] = _fraction_result(
        LABEL_FRACTION,
        stats.label_fraction,
        thresholds.min_label_fraction,
        above=False,
        per_row=np.divide(data.trained, data.real, out=np.zeros(len(ids)), where=data.real > 0),
        row_ids=ids,
        listed=listed,
    )
    return layout, stats, tuple(results[spec.name] for spec in CHECKS)


def _fraction_result(
    name: str,
    overall: float,
    limit: float | None,
    *,
    above: bool,
    per_row: np.ndarray,
    row_ids: np.ndarray,
    listed: int,
) -> CheckResult:
    """A data-set-wide fraction against a limit; when it is crossed, the rows crossing the limit
    themselves are the ones listed."""
    if limit is None:
        return _result(name, None, row_ids, listed, "no limit set")
    crossed = overall > limit if above else overall < limit
    word = "above the maximum" if above else "below the minimum"
    detail = (
        f"{name.replace('_', ' ')} {overall:.4f} {'is' if crossed else 'is not'} {word} {limit}"
    )
    if not crossed:
        return _result(name, np.zeros(len(row_ids), bool), row_ids, listed, detail)
    rows_bad = per_row > limit if above else per_row < limit
    return CheckResult(
        name,
        "warning",
        "warn",
        int(np.count_nonzero(rows_bad)),
        tuple(int(r) for r in row_ids[np.flatnonzero(rows_bad)[:listed]]),
        detail,
    )


def check_table(
    table: pa.Table | pa.RecordBatch,
    hints: LayoutHints = LayoutHints(),
    thresholds: Thresholds = Thresholds(),
    listed: int = 5,
) -> tuple[CheckResult, ...]:
    """Every check on an in-memory table; rows are numbered from 0."""
    if isinstance(table, pa.Table):
        batches = table.combine_chunks().to_batches()
        batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    else:
        batch = table
    part = analyse(batch, np.arange(batch.num_rows), hints.eos_id)
    return conclude([part], hints, thresholds, listed)[2]
