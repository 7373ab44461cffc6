"""The checks ``maskprep inspect`` runs: their stable names, what each asserts, the rows each flags
and the shape of a result (:mod:`.verdicts` reaches each one's result from what the rows hold).

The rows a check flags are kept in memory that does not grow with them: how many, and the first
``listed`` of them (the smallest row numbers). :class:`RowsByValue` keeps them per value of a
per-row fact (a row's width and real tokens, its padding side, the id its padding holds), for
checks whose verdict depends on a layout settled only once every row was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Status = Literal["pass", "fail", "warn", "skip"]
Kind = Literal["invariant", "warning"]
_EMPTY = np.zeros(0, np.int64)

# Check names: stable, they are part of the JSON output.
SHARDS_MATCH_MANIFEST = "shards_match_manifest"
MANIFEST_CONSISTENT = "manifest_consistent"
LIST_LENGTHS = "list_lengths"
MASK_BINARY = "mask_binary"
LENGTH_MATCHES_MASK = "length_matches_mask"
LABELS_ON_PADDING = "labels_on_padding"
LABELS_MATCH_INPUTS = "labels_match_inputs"
IDS_IN_VOCABULARY = "ids_in_vocabulary"
PADDING_CONTIGUOUS = "padding_contiguous"
PADDING_HOLDS_PAD_ID = "padding_holds_pad_id"
PADDING_ATTENDED = "padding_attended"
ROW_WIDTH = "row_width"
SEQ_LENS_SUM = "seq_lens_sum"
POSITION_IDS_RESTART = "position_ids_restart"
DOCUMENT_START_LABEL = "document_start_label"
EOS_MASKED_BY_VALUE = "eos_masked_by_value"
EOS_NEVER_TRAINED = "eos_never_trained"
UNDECLARED_PACKS = "undeclared_packs"
PAD_ATTENDED_AT_EDGE = "pad_attended_at_edge"
ROWS_WITHOUT_LABELS = "rows_without_labels"
PAD_FRACTION = "pad_fraction"
LABEL_FRACTION = "label_fraction"
# Checks against a model, run only when its limits are known (a model or tokenizer given).
MODEL_POSITIONS = "model_positions"
MODEL_CONTEXT = "model_context"
MODEL_VOCABULARY = "model_vocabulary"


@dataclass
class FlaggedRows:
    """Rows a check flags: how many, and the ``listed`` smallest row numbers among them."""

    listed: int
    count: int = 0
    rows: np.ndarray = field(default_factory=lambda: _EMPTY)

    def add(self, flags: np.ndarray, row_ids: np.ndarray) -> None:
        """Count the rows ``flags`` marks; ``row_ids`` (ascending) are their row numbers."""
        hits = np.flatnonzero(flags)
        if not hits.size:
            return
        self.count += int(hits.size)
        if len(self.rows) < self.listed or (self.listed and row_ids[hits[0]] < self.rows[-1]):
            self.rows = np.union1d(self.rows, row_ids[hits[: self.listed]])[: self.listed]

    def merged(self, other: FlaggedRows) -> FlaggedRows:
        """The rows flagged by this or ``other`` when no row is flagged by both."""
        rows = np.union1d(self.rows, other.rows)[: self.listed]
        return FlaggedRows(self.listed, self.count + other.count, rows)

    def first(self) -> tuple[int, ...]:
        """The listed rows as plain ints."""
        return tuple(int(r) for r in self.rows)


@dataclass
class RowsByValue:
    """Per value of a per-row fact: how many rows have it, and the ``listed`` smallest row
    numbers of them. ``values`` are sorted; ``rows`` has one line per value, padded with -1."""

    listed: int
    values: np.ndarray = field(default_factory=lambda: _EMPTY)
    counts: np.ndarray = field(default_factory=lambda: _EMPTY)
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def add(self, values: np.ndarray, row_ids: np.ndarray) -> None:
        """Count row ``row_ids[i]`` under ``values[i]`` (one entry per row)."""
        if not len(values):
            return
        values = np.asarray(values, np.int64)
        row_ids = np.asarray(row_ids, np.int64)
        new_values, new_counts = np.unique(values, return_counts=True)
        stored = self.rows >= 0
        candidate_values = np.concatenate((np.repeat(self.values, stored.sum(axis=1)), values))
        candidate_rows = np.concatenate((self.rows[stored], row_ids))
        every = np.union1d(self.values, new_values)
        counts = np.zeros(len(every), np.int64)
        counts[np.searchsorted(every, self.values)] += self.counts
        counts[np.searchsorted(every, new_values)] += new_counts
        order = np.lexsort((candidate_rows, candidate_values))
        slot = np.searchsorted(every, candidate_values[order])
        rank = np.arange(len(slot)) - np.searchsorted(slot, slot, side="left")
        keep = rank < self.listed
        rows = np.full((len(every), self.listed), -1, np.int64)
        rows[slot[keep], rank[keep]] = candidate_rows[order][keep]
        self.values, self.counts, self.rows = every, counts, rows

    def select(self, chosen: np.ndarray) -> FlaggedRows:
        """The rows of the values ``chosen`` marks (a flag per value), as one
        :class:`FlaggedRows`."""
        chosen = np.asarray(chosen, bool)
        picked = self.rows[chosen]
        rows = np.unique(picked[picked >= 0])[: self.listed]
        return FlaggedRows(self.listed, int(self.counts[chosen].sum()), rows)

    def of(self, value: int) -> FlaggedRows:
        """The rows with ``value``."""
        return self.select(self.values == value)


@dataclass(frozen=True)
class CheckSpec:
    """What a check asserts; ``invariant`` is its number in the column contract
    (``docs/contract.md``), ``None`` for warnings."""

    name: str
    kind: Kind
    invariant: int | None
    description: str

    @property
    def reference(self) -> str:
        """Where the rule is explained: the invariant's anchor in ``docs/contract.md``, or the
        warning's in ``docs/inspect.md``."""
        if self.invariant is not None:
            return f"docs/contract.md#invariant-{self.invariant}"
        return f"docs/inspect.md#check-{self.name}"


#: Every check, in report order.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(SHARDS_MATCH_MANIFEST, "invariant", 6, "shard files are the ones the manifest lists"),
    CheckSpec(
        MANIFEST_CONSISTENT,
        "invariant",
        6,
        "the manifest's totals, strategy and shard list add up",
    ),
    CheckSpec(LIST_LENGTHS, "invariant", 1, "list columns of a row have one length"),
    CheckSpec(MASK_BINARY, "invariant", 1, "attention_mask holds only 0 and 1"),
    CheckSpec(LENGTH_MATCHES_MASK, "invariant", 1, "length == sum(attention_mask)"),
    CheckSpec(LABELS_ON_PADDING, "invariant", 2, "labels are -100 wherever attention_mask is 0"),
    CheckSpec(LABELS_MATCH_INPUTS, "invariant", 2, "labels are -100 or the input id"),
    CheckSpec(
        IDS_IN_VOCABULARY, "invariant", 1, "input ids are >= 0 and below the vocabulary size"
    ),
    CheckSpec(PADDING_CONTIGUOUS, "invariant", 3, "real tokens are one run opposite the padding"),
    CheckSpec(PADDING_HOLDS_PAD_ID, "invariant", 3, "padded positions hold the pad id"),
    CheckSpec(
        PADDING_ATTENDED, "invariant", 3, "no row attends a run of pad ids at its padding end"
    ),
    CheckSpec(ROW_WIDTH, "invariant", 3, "each row is as wide as its strategy demands"),
    CheckSpec(SEQ_LENS_SUM, "invariant", 4, "sum(seq_lens) == length, no negative length"),
    CheckSpec(POSITION_IDS_RESTART, "invariant", 4, "position_ids count 0,1,2,… per document"),
    CheckSpec(DOCUMENT_START_LABEL, "invariant", 4, "the first label of every document is -100"),
    CheckSpec(
        EOS_MASKED_BY_VALUE, "invariant", 5, "no real EOS left untrained after a trained token"
    ),
    CheckSpec(EOS_NEVER_TRAINED, "warning", None, "EOS in the inputs is trained somewhere"),
    CheckSpec(
        UNDECLARED_PACKS,
        "warning",
        None,
        "no row holds several documents without pack columns saying where they start",
    ),
    CheckSpec(
        PAD_ATTENDED_AT_EDGE,
        "warning",
        None,
        "no pad id attended at the edge of a padded row's real run",
    ),
    CheckSpec(ROWS_WITHOUT_LABELS, "warning", None, "every row trains at least one token"),
    CheckSpec(PAD_FRACTION, "warning", None, "pad fraction at most the allowed maximum"),
    CheckSpec(LABEL_FRACTION, "warning", None, "label fraction at least the required minimum"),
)
#: Checks against the model the data is for, reported after :data:`CHECKS` where the model's
#: limits are known (see :class:`~.verdicts.ModelChecks`).
MODEL_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(MODEL_POSITIONS, "invariant", None, "rows fit the model's position embeddings"),
    CheckSpec(MODEL_CONTEXT, "warning", None, "rows fit the model's context length"),
    CheckSpec(MODEL_VOCABULARY, "invariant", None, "token ids are in the model's vocabulary"),
)
SPECS = {spec.name: spec for spec in CHECKS + MODEL_CHECKS}


@dataclass(frozen=True)
class CheckResult:
    """One check over the data: ``status`` is pass/fail (invariants), pass/warn (warnings) or skip.
    ``count`` offending rows, the first of them in ``rows`` (indices into the whole data set), and
    a one-line ``detail``. A check is skipped either because it does not apply (unpacked rows have
    no ``seq_lens`` to check) or because a fact it needs is unknown: then ``unknown`` names that
    fact (``"EOS id"``), and the check was not run where it should have been."""

    name: str
    kind: Kind
    status: Status
    count: int
    rows: tuple[int, ...]
    detail: str
    unknown: str | None = None


def failures(results: Sequence[CheckResult], strict: bool = False) -> list[CheckResult]:
    """The results that fail: ``fail`` always; with ``strict``, ``warn`` too and every check
    skipped for lack of information (strict means every check was run and passed)."""
    return [
        r
        for r in results
        if r.status == "fail" or (strict and (r.status == "warn" or r.unknown is not None))
    ]


def verdict(name: str, rows: FlaggedRows, detail: str = "") -> CheckResult:
    """The result of check ``name`` from the rows it flagged: pass when none, else fail (an
    invariant) or warn (a warning); ``detail`` defaults to what the check asserts."""
    spec = SPECS[name]
    status: Status = "pass" if rows.count == 0 else ("fail" if spec.kind == "invariant" else "warn")
    return CheckResult(
        name, spec.kind, status, rows.count, rows.first(), detail or spec.description
    )


def skipped(name: str, detail: str, unknown: str | None = None) -> CheckResult:
    """Check ``name`` not run: it does not apply, or (``unknown`` named) a fact it needs is
    unknown."""
    return CheckResult(name, SPECS[name].kind, "skip", 0, (), detail, unknown)
