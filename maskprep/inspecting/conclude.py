"""Concluding: what every analysed batch left in :class:`~.gathered.Gathered` turned into the
data's layout, statistics and one result per check.

:func:`~.analysis.analyse` reads one batch at a time and :class:`~.gathered.Gathered` keeps
counts and the first offending rows, so any amount of data streams through in bounded memory;
:func:`conclude` settles what the whole data set must agree on (strategy, bucket widths, padding
side, pad id: from what the build recorded, else from the data), and turns what was gathered
into :class:`~.specs.CheckResult` objects and :class:`~.summary.DataStats`. :func:`check_table`
does both for one in-memory table; tests and ``maskprep verify`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..token_ids import MAX_TOKEN_ID
from .analysis import SIDE_LEFT, SIDE_NEITHER, SIDE_RIGHT, analyse
from .gathered import Gathered
from .layout import Layout, LayoutHints, resolve_layout
from .specs import (
    CHECKS,
    DOCUMENT_START_LABEL,
    EOS_MASKED_BY_VALUE,
    EOS_NEVER_TRAINED,
    IDS_IN_VOCABULARY,
    LABEL_FRACTION,
    LABELS_MATCH_INPUTS,
    LABELS_ON_PADDING,
    LENGTH_MATCHES_MASK,
    LIST_LENGTHS,
    MANIFEST_CONSISTENT,
    MASK_BINARY,
    PAD_ATTENDED_AT_EDGE,
    PAD_FRACTION,
    PADDING_ATTENDED,
    PADDING_CONTIGUOUS,
    PADDING_HOLDS_PAD_ID,
    POSITION_IDS_RESTART,
    ROW_WIDTH,
    ROWS_WITHOUT_LABELS,
    SEQ_LENS_SUM,
    SHARDS_MATCH_MANIFEST,
    SPECS,
    UNDECLARED_PACKS,
    CheckResult,
    Status,
)
from .summary import DataStats, data_stats
from .tally import Offenders


@dataclass(frozen=True)
class Thresholds:
    """Limits for the practitioner's warnings; ``None`` leaves that warning off."""

    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None


def _result(name: str, bad: Offenders, detail: str = "") -> CheckResult:
    """A pass/fail (or pass/warn) result from the rows a check flagged."""
    spec = SPECS[name]
    status: Status = "pass" if bad.count == 0 else ("fail" if spec.kind == "invariant" else "warn")
    return CheckResult(name, spec.kind, status, bad.count, bad.first(), detail or spec.description)


def _skip(name: str, detail: str, unknown: str | None = None) -> CheckResult:
    """A check not run: it does not apply, or (``unknown`` named) a fact it needs is unknown."""
    return CheckResult(name, SPECS[name].kind, "skip", 0, (), detail, unknown)


def _row_width(data: Gathered, layout: Layout) -> CheckResult:
    width, real, _ = data.shape_counts()
    if layout.strategy in ("pad", "pack"):
        if layout.max_length is None:
            return _skip(ROW_WIDTH, "row width unknown", unknown="row width")
        bad, text = width != layout.max_length, f"every row is {layout.max_length} wide"
    elif layout.strategy == "none":
        bad, text = width != real, "rows hold no padding (strategy none)"
    else:
        buckets = np.asarray(sorted(layout.buckets or ()), np.int64)
        if buckets.size == 0:
            return _skip(ROW_WIDTH, "no bucket widths known", unknown="bucket widths")
        slot = np.searchsorted(buckets, real, side="left")
        too_long = slot >= len(buckets)
        smallest = buckets[np.minimum(slot, len(buckets) - 1)]
        listed = ",".join(str(b) for b in buckets)
        bad = too_long | (width != smallest)
        text = f"each row is the smallest bucket that fits ({listed})"
    return _result(ROW_WIDTH, data.shapes.select(bad), text)


def _padding_checks(data: Gathered, layout: Layout) -> list[CheckResult]:
    side_bad = data.sides.keys == SIDE_NEITHER
    if layout.padding_side == "right":
        side_bad |= data.sides.keys == SIDE_LEFT
    elif layout.padding_side == "left":
        side_bad |= data.sides.keys == SIDE_RIGHT
    where = f"on the {layout.padding_side} side" if layout.padding_side else "at one end"
    contiguous = _result(
        PADDING_CONTIGUOUS,
        data.sides.select(side_bad),
        f"real tokens are one run, padding {where}",
    )
    pad = layout.pad_id
    if pad is None:
        holds = _skip(PADDING_HOLDS_PAD_ID, "no padding, or pad id unknown")
        if data.padding.counts.sum():
            holds = _skip(PADDING_HOLDS_PAD_ID, "pad id unknown", unknown="pad id")
    else:
        text = f"padded positions hold pad id {pad} ({layout.pad_id_source})"
        holds = _result(PADDING_HOLDS_PAD_ID, data.padding.select(data.padding.keys != pad), text)
    return [contiguous, holds, _attended(data, layout)]


def _attended(data: Gathered, layout: Layout) -> CheckResult:
    width, real, _ = data.shape_counts()
    if not ((width == real) & (width > 0)).any():
        return _result(PADDING_ATTENDED, Offenders(data.listed), "no row attends every position")
    if layout.pad_id is None or layout.pad_id_source == "inferred":
        return _skip(
            PADDING_ATTENDED,
            "pad id not given or recorded (rows attending every position show none to infer)",
            unknown="pad id",
        )
    if layout.padding_side == "right":
        bad, end = data.attended_end, "end"
    elif layout.padding_side == "left":
        bad, end = data.attended_start, "start"
    else:
        bad, end = data.attended_either, "end or start"
    text = f"no all-ones mask over pad id {layout.pad_id} at a row's {end}"
    return _result(PADDING_ATTENDED, bad, text)


def _vocabulary(data: Gathered, hints: LayoutHints) -> CheckResult:
    bad = data.flags[IDS_IN_VOCABULARY]
    if hints.vocab_size is None:
        if bad.count:
            text = f"input ids are 0 to {MAX_TOKEN_ID} (vocabulary size unknown)"
            return _result(IDS_IN_VOCABULARY, bad, text)
        return _skip(
            IDS_IN_VOCABULARY,
            f"no id below 0 or past {MAX_TOKEN_ID}; vocabulary size unknown for the upper bound",
            unknown="vocabulary size",
        )
    text = f"input ids are >= 0 and below {hints.vocab_size} ({hints.vocab_source})"
    return _result(IDS_IN_VOCABULARY, bad, text)


def _eos_checks(data: Gathered, layout: Layout, no_eos: bool) -> list[CheckResult]:
    eos = layout.eos_id
    if eos is not None:
        masked = _result(EOS_MASKED_BY_VALUE, data.flags[EOS_MASKED_BY_VALUE])
        never = data.eos_real_tokens > 0 and data.eos_trained_tokens == 0
        text = (
            f"EOS ({eos}) appears {data.eos_real_tokens} times in attended inputs and "
            f"is trained {data.eos_trained_tokens} times"
        )
        bad = data.eos_untrained if never else Offenders(data.listed)
        return [masked, _result(EOS_NEVER_TRAINED, bad, text)]
    never_trained = _skip(EOS_NEVER_TRAINED, "EOS id unknown", unknown="EOS id")
    if no_eos:
        never_trained = _skip(EOS_NEVER_TRAINED, "the tokenizer has no EOS token")
    pad = layout.pad_id
    if pad is None:
        if no_eos:
            return [_skip(EOS_MASKED_BY_VALUE, "the tokenizer has no EOS token"), never_trained]
        masked = _skip(EOS_MASKED_BY_VALUE, "EOS id and pad id unknown", unknown="EOS id")
        return [masked, never_trained]
    # The trap seen from the pad id: where it also stands at real positions, never trained
    # although the token before it is, labels were masked by comparing ids with the pad id.
    holes = data.holes.of(pad)
    trained = data.trained(pad)
    bad = holes if not trained else Offenders(data.listed)
    known = "no EOS token" if no_eos else "EOS id unknown"
    text = f"{known}; pad id {pad} ({layout.pad_id_source}) " + (
        "is never trained at real positions, yet follows trained tokens: labels masked "
        "by comparing ids with the pad id (pad == EOS)"
        if bad.count
        else "is trained where it is real, or never follows a trained token"
    )
    return [_result(EOS_MASKED_BY_VALUE, bad, text), never_trained]


def _undeclared_packs(data: Gathered, layout: Layout, hints: LayoutHints) -> CheckResult:
    """Rows that hold documents one after another while nothing says where they start: a pack
    whose ``seq_lens`` and ``position_ids`` a pipeline dropped. Known for certain where the
    shards' metadata says they were packs; seen from EOS (BOS) inside trained text otherwise."""
    if data.packed:
        return _result(
            UNDECLARED_PACKS,
            Offenders(data.listed),
            "rows are packs: seq_lens and position_ids say where each document starts",
        )
    if hints.stripped:
        every = data.shapes.select(np.ones(len(data.shapes.keys), bool))
        shown = ", ".join(hints.stripped[:2]) + (", ..." if len(hints.stripped) > 2 else "")
        detail = (
            f"{shown}: the metadata says the rows are packs, but seq_lens and position_ids are "
            "gone (dropped by a pipeline?): fed as one sequence, the documents of a row attend "
            "to each other; keep both columns"
        )
        return CheckResult(UNDECLARED_PACKS, "warning", "warn", every.count, every.first(), detail)
    if hints.records == "chat":
        return _skip(UNDECLARED_PACKS, "chat records: a turn may end with EOS")
    eos, bos = layout.eos_id, hints.bos_id
    if eos is None and bos is None:
        if hints.no_eos:
            return _skip(UNDECLARED_PACKS, "the tokenizer has no EOS or BOS to see documents by")
        return _skip(UNDECLARED_PACKS, "EOS id unknown", unknown="EOS id")
    ended = [f"ended by EOS ({eos})"] if eos is not None else []
    started = [f"started by BOS ({bos})"] if bos is not None else []
    marks = " or ".join(ended + started)
    bad = data.several_documents
    detail = (
        f"rows hold several documents ({marks}) trained as plain text, but no seq_lens or "
        "position_ids: a pack whose pack columns were dropped? Its documents attend to each other"
        if bad.count
        else f"no row without pack columns holds several documents ({marks})"
    )
    return _result(UNDECLARED_PACKS, bad, detail)


def _pad_attended_at_edge(data: Gathered, layout: Layout, hints: LayoutHints) -> CheckResult:
    """A padded row whose real run ends (right padding) or starts (left padding) with the pad
    id: one pad the mask marks as real. Where the pad id is EOS a real EOS ends a document, and
    where it is BOS or EOS one may start it: those edges are not judged."""
    pad = layout.pad_id
    if pad is None:
        return _result(PAD_ATTENDED_AT_EDGE, Offenders(data.listed), "no padded row to judge")
    eos, bos = layout.eos_id, hints.bos_id
    judge_end, judge_start = pad != eos, pad not in (eos, bos)
    if not judge_end:
        # Then pad == EOS, and so neither edge can be judged.
        return _skip(
            PAD_ATTENDED_AT_EDGE,
            f"pad id {pad} is EOS: the token next to a row's padding may be a real EOS",
        )
    end = data.edge_end.of(pad)
    start = data.edge_start.of(pad) if judge_start else Offenders(data.listed)
    bad = end.merged(start)  # a row is padded on one side only
    if bad.count and eos is None and not hints.no_eos:
        return _skip(
            PAD_ATTENDED_AT_EDGE,
            f"EOS id unknown: pad id {pad} at the edge of a real run may be a real EOS",
            unknown="EOS id",
        )
    detail = (
        f"rows attend pad id {pad} at the edge of their real run, next to their padding: the "
        "mask marks a pad as real (a left-padded row's first real tokens see it)"
        if bad.count
        else f"no padded row attends pad id {pad} next to its padding"
        + ("" if judge_start else " (left-padded rows not judged: it is BOS)")
    )
    return _result(PAD_ATTENDED_AT_EDGE, bad, detail)


def conclude(
    data: Gathered,
    hints: LayoutHints = LayoutHints(),
    thresholds: Thresholds = Thresholds(),
    shards_check: CheckResult | None = None,
    manifest_check: CheckResult | None = None,
) -> tuple[Layout, DataStats, tuple[CheckResult, ...]]:
    """Turn what was gathered into the data's layout, statistics and one result per check.

    ``shards_check`` is the result of comparing the shard files with their manifest and
    ``manifest_check`` whether the manifest adds up, which only the caller can tell (the rows do
    not know where they came from); without them they are skipped.
    """
    layout = resolve_layout(data, hints)
    stats = data_stats(data, layout)
    results: dict[str, CheckResult] = {
        SHARDS_MATCH_MANIFEST: shards_check or _skip(SHARDS_MATCH_MANIFEST, "no manifest"),
        MANIFEST_CONSISTENT: manifest_check or _skip(MANIFEST_CONSISTENT, "no manifest"),
    }
    for name in (LIST_LENGTHS, MASK_BINARY, LABELS_ON_PADDING, LABELS_MATCH_INPUTS):
        results[name] = _result(name, data.flags[name])
    if data.rows and not data.rows_with_length:
        results[LENGTH_MATCHES_MASK] = _skip(
            LENGTH_MATCHES_MASK, "no length column: computed from attention_mask"
        )
    else:
        results[LENGTH_MATCHES_MASK] = _result(LENGTH_MATCHES_MASK, data.flags[LENGTH_MATCHES_MASK])
    results[IDS_IN_VOCABULARY] = _vocabulary(data, hints)
    for result in _padding_checks(data, layout):
        results[result.name] = result
    results[ROW_WIDTH] = _row_width(data, layout)
    for name in (SEQ_LENS_SUM, POSITION_IDS_RESTART, DOCUMENT_START_LABEL):
        if data.packed:
            results[name] = _result(name, data.flags[name])
        else:
            results[name] = _skip(name, "rows are not packed")
    for result in _eos_checks(data, layout, hints.no_eos):
        results[result.name] = result
    results[UNDECLARED_PACKS] = _undeclared_packs(data, layout, hints)
    results[PAD_ATTENDED_AT_EDGE] = _pad_attended_at_edge(data, layout, hints)
    results[ROWS_WITHOUT_LABELS] = _result(ROWS_WITHOUT_LABELS, data.without_labels)
    results[PAD_FRACTION] = _fraction_result(
        PAD_FRACTION, stats.pad_fraction, thresholds.max_pad_fraction, data.pad_heavy, above=True
    )
    results[LABEL_FRACTION] = _fraction_result(
        LABEL_FRACTION,
        stats.label_fraction,
        thresholds.min_label_fraction,
        data.label_light,
        above=False,
    )
    return layout, stats, tuple(results[spec.name] for spec in CHECKS)


def _fraction_result(
    name: str, overall: float, limit: float | None, rows: Offenders, *, above: bool
) -> CheckResult:
    """A data-set-wide fraction against a limit; when it is crossed, the rows crossing the limit
    themselves are the ones listed."""
    if limit is None:
        return _skip(name, "no limit set")
    crossed = overall > limit if above else overall < limit
    word = "above the maximum" if above else "below the minimum"
    detail = (
        f"{name.replace('_', ' ')} {overall:.4f} {'is' if crossed else 'is not'} {word} {limit}"
    )
    if not crossed:
        return _result(name, Offenders(rows.listed), detail)
    return CheckResult(name, "warning", "warn", rows.count, rows.first(), detail)


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
    data = Gathered(listed, thresholds.max_pad_fraction, thresholds.min_label_fraction)
    for part in analyse(batch, np.arange(batch.num_rows), hints.scan_facts()):
        data.add(part)
    return conclude(data, hints, thresholds)[2]
