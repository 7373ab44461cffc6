"""Each check's verdict (pass, fail, warn or skip): the checks of the rows, from their column
statistics (:class:`~.stats.ColumnStats`) and the layout they are held to
(:class:`~.layout.Layout`); the shard files against their manifest; and the model checks, every
row held to the positions and vocabulary of the model the data is for, where they are known.

A check flagged row by row as the batches passed needs only its count; one that depends on the
layout picks, among the values it was kept by, those at fault (rows of a width the strategy does
not allow, padding on the wrong side, a pad id other than the layout's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns, storage
from ..column_values import list_column, outside_ids, segment_any
from ..contract import ShardContract
from ..extras import require_extra
from ..output.manifest import Manifest, manifest_problems
from ..reading.reach import PositionLimit, model_limit, row_reach, tokenizer_limit
from ..reading.shards import Shard
from ..shaping.fill import ratio
from ..token_ids import MAX_TOKEN_ID
from . import checks as c
from .checks import CheckResult, FlaggedRows, skipped, verdict
from .layout import SIDE_LEFT, SIDE_NEITHER, SIDE_RIGHT, Layout, LayoutHints
from .options import InspectOptions
from .stats import ATTENDED_END, ATTENDED_START, ColumnStats

_COUNTED = ("positions", "real_tokens", "label_tokens")


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


@dataclass
class ModelChecks:
    """The farthest position and the token ids of every row added, against a model's position
    ``limit`` and vocabulary (``vocab_size``), in bounded memory: the farthest reach, the worst
    id, and the rows past either."""

    limit: PositionLimit | None = None
    vocab_size: int | None = None
    listed: int = 5
    packed: bool = False
    reach: int = 0
    worst_id: int | None = None
    beyond: FlaggedRows = field(init=False)
    bad_ids: FlaggedRows = field(init=False)

    def __post_init__(self) -> None:
        self.beyond, self.bad_ids = FlaggedRows(self.listed), FlaggedRows(self.listed)

    def add(self, batch: pa.RecordBatch, row_ids: np.ndarray) -> None:
        """Add a batch of rows (already checked by :meth:`~.stats.ColumnStats.add`); ``row_ids``
        (ascending) place them in the whole data."""
        if batch.num_rows == 0:
            return
        reach, _, packed = row_reach(batch)
        self.packed |= packed
        self.reach = max(self.reach, int(reach.max()))
        if self.limit is not None:
            self.beyond.add(reach > self.limit.positions, row_ids)
        if self.vocab_size is not None:
            ids = list_column(batch, columns.INPUT_IDS)
            bad = outside_ids(ids.values, self.vocab_size)
            if bad.any():
                self.bad_ids.add(segment_any(bad, ids.offsets), row_ids)
                values = ids.values[bad]
                worst = int(values[np.argmax(np.abs(values.astype(np.int64)))])
                if self.worst_id is None or abs(worst) > abs(self.worst_id):
                    self.worst_id = worst

    def results(self) -> tuple[CheckResult, ...]:
        """One result for the position limit (an invariant for an absolute table, else a
        warning) and one for the vocabulary, each only where it is known."""
        out = []
        if self.limit is not None:
            what = "longest document" if self.packed else "widest row"
            detail = f"{what} {self.reach} positions; {self.limit.source}"
            name = c.MODEL_POSITIONS if self.limit.hard else c.MODEL_CONTEXT
            out.append(verdict(name, self.beyond, detail))
        if self.vocab_size is not None:
            found = f"; found {self.worst_id}" if self.worst_id is not None else ""
            detail = f"token ids in [0, {self.vocab_size}){found}"
            out.append(verdict(c.MODEL_VOCABULARY, self.bad_ids, detail))
        return tuple(out)


def model_checks(
    options: InspectOptions, recorded: ShardContract | None, tokenizer: Any
) -> ModelChecks | None:
    """The model checks for ``options``, or ``None`` where no limit is known: the model's
    (``options.model``: its position table or context length, and its vocabulary), else the
    ``model_max_length`` of the ``tokenizer`` loaded, else of the one the manifest or the shards'
    metadata ``recorded``."""
    limit: PositionLimit | None = None
    vocab = None
    if options.model is not None:
        # The model's structure is read on torch's meta device.
        require_extra("torch", "verify", "checking rows against a model")
        from ..collate import model_facts

        facts = model_facts(
            options.model,
            revision=options.model_revision,
            trust_remote_code=options.trust_remote_code,
        )
        limit, vocab = model_limit(facts), facts.vocab_size
    if limit is None and tokenizer is not None:
        name = options.tokenizer or (recorded.tokenizer if recorded else "(unnamed)")
        limit = tokenizer_limit(getattr(tokenizer, "model_max_length", None), name)
    if limit is None and recorded is not None:
        limit = tokenizer_limit(recorded.model_max_length, recorded.tokenizer)
    if limit is None and vocab is None:
        return None
    return ModelChecks(limit=limit, vocab_size=vocab, listed=options.listed)


def shards_match_manifest(
    shards: list[Shard],
    manifest: Manifest,
    counts: np.ndarray | None,
    digests: dict[int, str] | None,
    listed: int,
    conflicts: dict[int, str] | None = None,
) -> CheckResult:
    """Whether the shard files are the ones the manifest lists: same sha256, rows and (when every
    row was read) positions, real and trained tokens, and no contract in their metadata that
    contradicts the manifest (``conflicts``, by shard number, see
    :func:`maskprep.reading.shards.declared`). A shard copied short, replaced or edited since the
    build fails it; the rows it names are the first row of each such shard."""
    entries = manifest.shards
    problems: list[str] = []
    first_rows: list[int] = []
    bad_rows = 0
    start = 0
    for number, (shard, entry) in enumerate(zip(shards, entries, strict=True)):
        assert shard.rows is not None, "a shard file's row count is read from its footer"
        differs = []
        recorded = entry.sha256
        if digests is not None and recorded and digests.get(number, recorded) != recorded:
            differs.append("sha256")
        if entry.rows != shard.rows:
            differs.append(f"rows {shard.rows:,} (manifest {entry.rows:,})")
        for column, key in enumerate(_COUNTED):
            found = None if counts is None else int(counts[number, column])
            if found is not None and getattr(entry, key) != found:
                expected = getattr(entry, key)
                differs.append(f"{key.replace('_', ' ')} {found:,} (manifest {expected:,})")
        if conflicts and number in conflicts:
            differs.append(conflicts[number])
        if differs:
            problems.append(f"{entry.path}: {', '.join(differs)}")
            first_rows.append(start)
            bad_rows += shard.rows
        start += shard.rows
    what = ", ".join(
        ["sha256"] * (digests is not None) + ["rows"] + (["tokens"] if counts is not None else [])
    )
    if not problems:
        skipped = []
        if digests is None:
            skipped.append("sha256 not checked")
        if counts is None:
            skipped.append("tokens not counted in a sample")
        note = f"; {', '.join(skipped)}" if skipped else ""
        detail = f"{len(shards)} shard(s) match the manifest ({what}){note}"
        return CheckResult(c.SHARDS_MATCH_MANIFEST, "invariant", "pass", 0, (), detail)
    detail = f"{len(problems)} of {len(shards)} shard(s) differ from the manifest: " + "; ".join(
        problems[:3]
    )
    if len(problems) > 3:
        detail += f"; and {len(problems) - 3} more"
    return CheckResult(
        c.SHARDS_MATCH_MANIFEST,
        "invariant",
        "fail",
        bad_rows,
        tuple(first_rows[:listed]),
        detail,
    )


def manifest_consistent(
    manifest: Manifest, directory: str | os.PathLike[str] | storage.Location
) -> CheckResult:
    """Whether the manifest adds up (see :func:`~maskprep.output.manifest.manifest_problems`):
    a failure names the field at fault."""
    problems = manifest_problems(manifest, directory)
    if not problems:
        detail = "totals account for every record and match the shards; strategy known"
        return CheckResult(c.MANIFEST_CONSISTENT, "invariant", "pass", 0, (), detail)
    detail = "; ".join(str(p) for p in problems)
    return CheckResult(c.MANIFEST_CONSISTENT, "invariant", "fail", 0, (), detail)
