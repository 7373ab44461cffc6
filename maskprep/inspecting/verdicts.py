"""Each check's verdict (pass, fail, warn or skip), from the column statistics of every row read
(:class:`~.stats.ColumnStats`) and the layout they are held to (:class:`~.layout.Layout`).

A check flagged row by row as the batches passed needs only its count; one that depends on the
layout picks, among the values it was kept by, those at fault (rows of a width the strategy does
not allow, padding on the wrong side, a pad id other than the layout's).
"""

from __future__ import annotations

import numpy as np

from ..shaping.fill import ratio
from ..token_ids import MAX_TOKEN_ID
from . import checks as c
from .checks import CheckResult, skipped, verdict
from .layout import SIDE_LEFT, SIDE_NEITHER, SIDE_RIGHT, Layout, LayoutHints
from .rows import FlaggedRows
from .stats import ATTENDED_END, ATTENDED_START, ColumnStats


def check_results(
    stats: ColumnStats,
    layout: Layout,
    hints: LayoutHints,
    shards_check: CheckResult | None = None,
    manifest_check: CheckResult | None = None,
) -> tuple[CheckResult, ...]:
    """One result per check of :data:`~.checks.CHECKS`, in that order.

    ``shards_check`` is the result of comparing the shard files with their manifest and
    ``manifest_check`` whether the manifest adds up, which only the caller can tell (the rows do
    not know where they came from); without them they are skipped.
    """
    none = FlaggedRows(stats.options.listed)
    results = [
        shards_check or skipped(c.SHARDS_MATCH_MANIFEST, "no manifest"),
        manifest_check or skipped(c.MANIFEST_CONSISTENT, "no manifest"),
        _vocabulary(stats, hints),
        _padding_contiguous(stats, layout),
        _padding_holds_pad_id(stats, layout),
        _padding_attended(stats, layout, none),
        _row_width(stats, layout),
        *_eos_checks(stats, layout, hints.no_eos, none),
        _undeclared_packs(stats, layout, hints, none),
        _pad_attended_at_edge(stats, layout, hints, none),
        _fraction(stats, c.PAD_FRACTION, stats.positions - stats.real_tokens, stats.positions),
        _fraction(stats, c.LABEL_FRACTION, stats.label_tokens, stats.real_tokens),
    ]
    for name in (c.LIST_LENGTHS, c.MASK_BINARY, c.LABELS_ON_PADDING, c.LABELS_MATCH_INPUTS):
        results.append(verdict(name, stats.flagged[name]))
    results.append(verdict(c.ROWS_WITHOUT_LABELS, stats.flagged[c.ROWS_WITHOUT_LABELS]))
    if stats.rows and not stats.rows_with_length:
        detail = "no length column: computed from attention_mask"
        results.append(skipped(c.LENGTH_MATCHES_MASK, detail))
    else:
        results.append(verdict(c.LENGTH_MATCHES_MASK, stats.flagged[c.LENGTH_MATCHES_MASK]))
    for name in (c.SEQ_LENS_SUM, c.POSITION_IDS_RESTART, c.DOCUMENT_START_LABEL):
        if stats.packed:
            results.append(verdict(name, stats.flagged[name]))
        else:
            results.append(skipped(name, "rows are not packed"))
    by_name = {result.name: result for result in results}
    return tuple(by_name[spec.name] for spec in c.CHECKS)


def _vocabulary(stats: ColumnStats, hints: LayoutHints) -> CheckResult:
    bad = stats.flagged[c.IDS_IN_VOCABULARY]
    if hints.vocab_size is None:
        if bad.count:
            text = f"input ids are 0 to {MAX_TOKEN_ID} (vocabulary size unknown)"
            return verdict(c.IDS_IN_VOCABULARY, bad, text)
        return skipped(
            c.IDS_IN_VOCABULARY,
            f"no id below 0 or past {MAX_TOKEN_ID}; vocabulary size unknown for the upper bound",
            unknown="vocabulary size",
        )
    text = f"input ids are >= 0 and below {hints.vocab_size} ({hints.vocab_source})"
    return verdict(c.IDS_IN_VOCABULARY, bad, text)


def _padding_contiguous(stats: ColumnStats, layout: Layout) -> CheckResult:
    sides = stats.sides.values
    bad = sides == SIDE_NEITHER
    if layout.padding_side == "right":
        bad |= sides == SIDE_LEFT
    elif layout.padding_side == "left":
        bad |= sides == SIDE_RIGHT
    where = f"on the {layout.padding_side} side" if layout.padding_side else "at one end"
    detail = f"real tokens are one run, padding {where}"
    return verdict(c.PADDING_CONTIGUOUS, stats.sides.select(bad), detail)


def _padding_holds_pad_id(stats: ColumnStats, layout: Layout) -> CheckResult:
    pad = layout.pad_id
    if pad is None:
        if stats.padding.counts.sum():
            return skipped(c.PADDING_HOLDS_PAD_ID, "pad id unknown", unknown="pad id")
        return skipped(c.PADDING_HOLDS_PAD_ID, "no padding, or pad id unknown")
    detail = f"padded positions hold pad id {pad} ({layout.pad_id_source})"
    return verdict(
        c.PADDING_HOLDS_PAD_ID, stats.padding.select(stats.padding.values != pad), detail
    )


def _padding_attended(stats: ColumnStats, layout: Layout, none: FlaggedRows) -> CheckResult:
    width, real, _ = stats.shape_counts()
    if not ((width == real) & (width > 0)).any():
        return verdict(c.PADDING_ATTENDED, none, "no row attends every position")
    if layout.pad_id is None or layout.pad_id_source == "inferred":
        return skipped(
            c.PADDING_ATTENDED,
            "pad id not given or recorded (rows attending every position show none to infer)",
            unknown="pad id",
        )
    attended = stats.attended.values
    if layout.padding_side == "right":
        bad, end = attended & ATTENDED_END, "end"
    elif layout.padding_side == "left":
        bad, end = attended & ATTENDED_START, "start"
    else:
        bad, end = attended, "end or start"
    detail = f"no all-ones mask over pad id {layout.pad_id} at a row's {end}"
    return verdict(c.PADDING_ATTENDED, stats.attended.select(bad != 0), detail)


def _row_width(stats: ColumnStats, layout: Layout) -> CheckResult:
    width, real, _ = stats.shape_counts()
    if layout.strategy in ("pad", "pack"):
        if layout.max_length is None:
            return skipped(c.ROW_WIDTH, "row width unknown", unknown="row width")
        bad, detail = width != layout.max_length, f"every row is {layout.max_length} wide"
    elif layout.strategy == "none":
        bad, detail = width != real, "rows hold no padding (strategy none)"
    else:
        buckets = np.asarray(sorted(layout.buckets or ()), np.int64)
        if buckets.size == 0:
            return skipped(c.ROW_WIDTH, "no bucket widths known", unknown="bucket widths")
        slot = np.searchsorted(buckets, real, side="left")
        smallest = buckets[np.minimum(slot, len(buckets) - 1)]
        bad = (slot >= len(buckets)) | (width != smallest)
        listed = ",".join(str(b) for b in buckets)
        detail = f"each row is the smallest bucket that fits ({listed})"
    return verdict(c.ROW_WIDTH, stats.shapes.select(bad), detail)


def _eos_checks(
    stats: ColumnStats, layout: Layout, no_eos: bool, none: FlaggedRows
) -> list[CheckResult]:
    eos = layout.eos_id
    if eos is not None:
        masked = verdict(c.EOS_MASKED_BY_VALUE, stats.flagged[c.EOS_MASKED_BY_VALUE])
        never = stats.eos_real_tokens > 0 and stats.eos_trained_tokens == 0
        detail = (
            f"EOS ({eos}) appears {stats.eos_real_tokens} times in attended inputs and "
            f"is trained {stats.eos_trained_tokens} times"
        )
        bad = stats.flagged[c.EOS_NEVER_TRAINED] if never else none
        return [masked, verdict(c.EOS_NEVER_TRAINED, bad, detail)]
    never_trained = skipped(c.EOS_NEVER_TRAINED, "EOS id unknown", unknown="EOS id")
    if no_eos:
        never_trained = skipped(c.EOS_NEVER_TRAINED, "the tokenizer has no EOS token")
    pad = layout.pad_id
    if pad is None:
        if no_eos:
            return [skipped(c.EOS_MASKED_BY_VALUE, "the tokenizer has no EOS token"), never_trained]
        masked = skipped(c.EOS_MASKED_BY_VALUE, "EOS id and pad id unknown", unknown="EOS id")
        return [masked, never_trained]
    # The trap seen from the pad id: where it also stands at real positions, never trained
    # although the token before it is, labels were masked by comparing ids with the pad id.
    bad = none if stats.trained(pad) else stats.holes.of(pad)
    known = "no EOS token" if no_eos else "EOS id unknown"
    detail = f"{known}; pad id {pad} ({layout.pad_id_source}) " + (
        "is never trained at real positions, yet follows trained tokens: labels masked "
        "by comparing ids with the pad id (pad == EOS)"
        if bad.count
        else "is trained where it is real, or never follows a trained token"
    )
    return [verdict(c.EOS_MASKED_BY_VALUE, bad, detail), never_trained]


def _undeclared_packs(
    stats: ColumnStats, layout: Layout, hints: LayoutHints, none: FlaggedRows
) -> CheckResult:
    """Rows that hold documents one after another while nothing says where they start: a pack
    whose ``seq_lens`` and ``position_ids`` a pipeline dropped. Known for certain where the
    shards' metadata says they were packs; seen from EOS (BOS) inside trained text otherwise."""
    if stats.packed:
        detail = "rows are packs: seq_lens and position_ids say where each document starts"
        return verdict(c.UNDECLARED_PACKS, none, detail)
    if hints.stripped:
        every = stats.shapes.select(np.ones(len(stats.shapes.values), bool))
        shown = ", ".join(hints.stripped[:2]) + (", ..." if len(hints.stripped) > 2 else "")
        detail = (
            f"{shown}: the metadata says the rows are packs, but seq_lens and position_ids are "
            "gone (dropped by a pipeline?): fed as one sequence, the documents of a row attend "
            "to each other; keep both columns"
        )
        return CheckResult(
            c.UNDECLARED_PACKS, "warning", "warn", every.count, every.first(), detail
        )
    if hints.records == "chat":
        return skipped(c.UNDECLARED_PACKS, "chat records: a turn may end with EOS")
    eos, bos = layout.eos_id, hints.bos_id
    if eos is None and bos is None:
        if hints.no_eos:
            return skipped(
                c.UNDECLARED_PACKS, "the tokenizer has no EOS or BOS to see documents by"
            )
        return skipped(c.UNDECLARED_PACKS, "EOS id unknown", unknown="EOS id")
    ended = [f"ended by EOS ({eos})"] if eos is not None else []
    started = [f"started by BOS ({bos})"] if bos is not None else []
    marks = " or ".join(ended + started)
    bad = stats.flagged[c.UNDECLARED_PACKS]
    detail = (
        f"rows hold several documents ({marks}) trained as plain text, but no seq_lens or "
        "position_ids: a pack whose pack columns were dropped? Its documents attend to each other"
        if bad.count
        else f"no row without pack columns holds several documents ({marks})"
    )
    return verdict(c.UNDECLARED_PACKS, bad, detail)


def _pad_attended_at_edge(
    stats: ColumnStats, layout: Layout, hints: LayoutHints, none: FlaggedRows
) -> CheckResult:
    """A padded row whose real run ends (right padding) or starts (left padding) with the pad
    id: one pad the mask marks as real. Where the pad id is EOS a real EOS ends a document, and
    where it is BOS or EOS one may start it: those edges are not judged."""
    pad = layout.pad_id
    if pad is None:
        return verdict(c.PAD_ATTENDED_AT_EDGE, none, "no padded row to judge")
    eos, bos = layout.eos_id, hints.bos_id
    if pad == eos:  # then neither edge can be judged
        return skipped(
            c.PAD_ATTENDED_AT_EDGE,
            f"pad id {pad} is EOS: the token next to a row's padding may be a real EOS",
        )
    judge_start = pad != bos
    start = stats.edge_start.of(pad) if judge_start else none
    bad = stats.edge_end.of(pad).merged(start)  # a row is padded on one side only
    if bad.count and eos is None and not hints.no_eos:
        return skipped(
            c.PAD_ATTENDED_AT_EDGE,
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
    return verdict(c.PAD_ATTENDED_AT_EDGE, bad, detail)


def _fraction(stats: ColumnStats, name: str, part: int, whole: int) -> CheckResult:
    """A data-set-wide fraction against its limit (a maximum for the pad fraction, a minimum for
    the label fraction); when it is crossed, the rows crossing the limit themselves are the ones
    listed."""
    above = name == c.PAD_FRACTION
    limit = stats.options.max_pad_fraction if above else stats.options.min_label_fraction
    if limit is None:
        return skipped(name, "no limit set")
    overall = ratio(part, whole)
    crossed = overall > limit if above else overall < limit
    word = "above the maximum" if above else "below the minimum"
    detail = (
        f"{name.replace('_', ' ')} {overall:.4f} {'is' if crossed else 'is not'} {word} {limit}"
    )
    if not crossed:
        return verdict(name, FlaggedRows(stats.options.listed), detail)
    rows = stats.flagged[name]
    return CheckResult(name, "warning", "warn", rows.count, rows.first(), detail)
