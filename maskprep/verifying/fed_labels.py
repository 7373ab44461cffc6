"""The labels a foreign feed trains, held to the labels the output holds (no forward pass).

Two checks, position by position over the real tokens of every fed row (placed by
:mod:`.alignment`):

- ``labels_extra``: the feed trains what the output leaves untrained: padding; for decoders, the
  first token of a packed document (or the first after padding), which would be predicted from
  the previous document or a pad, and tokens the output does not train (prompts); or it holds a
  label that is not the token there (labels shifted, or of another row).
- ``labels_missing`` (decoders): the feed leaves untrained what the output trains; the real EOS
  apart, since a collator that masks labels by value (``labels == pad_token_id``, as
  ``DataCollatorForLanguageModeling`` does) drops every EOS when pad == EOS and the model never
  learns to stop. A masked-LM feed trains a sample of an encoder's tokens by design, so encoders
  are held to the first check only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..collate import RowArrays
from ..columns import IGNORE_INDEX
from .results import ProbeResult, Status

LABELS_EXTRA = "labels_extra"
LABELS_MISSING = "labels_missing"
LABEL_CHECKS = (LABELS_EXTRA, LABELS_MISSING)


@dataclass
class LabelTally:
    """Counts over the real positions of every fed row compared; ``*_rows``: the rows (indices
    in the data) where each kind was first seen, at most a few."""

    positions: int = 0
    padding: int = 0
    starts: int = 0
    starts_trained: int = 0
    untrained: int = 0
    foreign: int = 0
    trained: int = 0
    missing: int = 0
    eos: int = 0
    eos_missing: int = 0
    extra_rows: list[int] = field(default_factory=list)
    missing_rows: list[int] = field(default_factory=list)

    def add(
        self,
        fed: np.ndarray,
        truth: RowArrays,
        row_ids: list[int],
        *,
        causal: bool,
        eos_id: int | None,
    ) -> None:
        """Count one batch: ``fed`` labels against ``truth`` (the output's rows, laid out as
        fed)."""
        real = truth.attention_mask > 0
        trains = fed != IGNORE_INDEX
        if causal:
            # A decoder's loss never reads the label at a row's first position (the model
            # shifts labels left): whatever it holds trains nothing.
            trains = trains.copy()
            trains[:, 0] = False
        stored = truth.labels != IGNORE_INDEX
        padding = trains & ~real
        foreign = trains & real & (fed != truth.input_ids)
        extra = padding | foreign
        self.positions += int(real.sum())
        self.padding += int(padding.sum())
        self.foreign += int(foreign.sum())
        if causal:
            before = np.full(truth.segments.shape, -2)
            before[:, 1:] = truth.segments[:, :-1]
            starts = real & (truth.segments != before)
            starts[:, 0] = False
            starts_trained = starts & trains
            untrained = trains & real & ~stored & ~starts
            missing = stored & real & ~trains
            missing[:, 0] = False
            self.starts += int(starts.sum())
            self.starts_trained += int(starts_trained.sum())
            self.untrained += int(untrained.sum())
            self.trained += int((stored & real).sum())
            self.missing += int(missing.sum())
            if eos_id is not None:
                eos = stored & real & (truth.input_ids == eos_id)
                self.eos += int(eos.sum())
                self.eos_missing += int((eos & ~trains).sum())
            extra |= starts_trained | untrained
            _first_rows(self.missing_rows, missing, row_ids)
        _first_rows(self.extra_rows, extra, row_ids)


def _first_rows(into: list[int], flags: np.ndarray, row_ids: list[int], keep: int = 4) -> None:
    for i in np.flatnonzero(flags.any(axis=1)):
        if len(into) >= keep:
            return
        into.append(row_ids[int(i)])


def label_checks(
    tally: LabelTally,
    *,
    causal: bool,
    fix: tuple[str, str],
    skipped: str | None = None,
    pad_is_eos: bool = False,
) -> list[ProbeResult]:
    """The two checks from ``tally``; both ``skipped`` with that reason when given, and
    ``labels_missing`` for encoders. A failing check's note names ``fix`` (key, words)."""
    if skipped is not None or tally.positions == 0:
        why = skipped or "no real positions compared"
        return [_check(name, "skipped", note=why) for name in LABEL_CHECKS]
    return [_extra(tally, causal, fix), _missing(tally, causal, fix, pad_is_eos)]


def _check(name: str, status: Status, **fields: Any) -> ProbeResult:
    return ProbeResult(probe=name, attn_implementation="-", form="-", status=status, **fields)


def _extra(tally: LabelTally, causal: bool, fix: tuple[str, str]) -> ProbeResult:
    parts = []
    if tally.starts_trained:
        parts.append(
            f"{tally.starts_trained} of {tally.starts} first tokens of a document (or after "
            "padding), each predicted from the previous document or a pad"
        )
    if tally.padding:
        parts.append(f"{tally.padding} padded positions")
    if tally.untrained:
        parts.append(f"{tally.untrained} tokens the output leaves untrained (prompts, …)")
    if tally.foreign:
        parts.append(f"{tally.foreign} labels that are not the token there (shifted?)")
    common = {"positions": tally.positions, "leaking": len(tally.extra_rows)}
    if not parts:
        what = "padding and tokens the output leaves untrained" if causal else "padding"
        return _check(LABELS_EXTRA, "pass", note=f"no label on {what}", **common)
    key, words = fix
    note = f"the feed trains what the output does not: {'; '.join(parts)}{_fix(words)}"
    return _check(LABELS_EXTRA, "LEAK", note=note, fix=key, worst_row=tally.extra_rows[0], **common)


def _missing(
    tally: LabelTally, causal: bool, fix: tuple[str, str], pad_is_eos: bool
) -> ProbeResult:
    if not causal:
        return _check(
            LABELS_MISSING,
            "skipped",
            note="encoder: a masked-LM feed trains a sample of the tokens by design",
        )
    eos = f"; real EOS trained {tally.eos - tally.eos_missing} of {tally.eos}" if tally.eos else ""
    common = {"positions": tally.positions, "leaking": len(tally.missing_rows)}
    if not tally.missing:
        return _check(
            LABELS_MISSING,
            "pass",
            note=f"every position the output trains is trained ({tally.trained}){eos}",
            **common,
        )
    key, words = fix
    note = (
        f"the feed leaves untrained {tally.missing} of the {tally.trained} positions the output "
        f"trains{eos}"
    )
    if tally.eos_missing:
        note += "; untrained, the EOS never teaches the model to stop"
        if pad_is_eos:
            note += (
                " (pad == eos here: a collator that masks labels by value, labels == "
                "pad_token_id, as DataCollatorForLanguageModeling does, drops every EOS)"
            )
    return _check(
        LABELS_MISSING,
        "LEAK",
        note=note + _fix(words),
        fix=key,
        worst_row=tally.missing_rows[0],
        **common,
    )


def _fix(words: str) -> str:
    return f"; fix: {words}" if words else ""
