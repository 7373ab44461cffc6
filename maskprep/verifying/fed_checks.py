"""What a feed (a collate function's batches, or what reached a model in training) gives the
model, held to the output it came from without a forward pass.

The output's truth about rows, laid out where a feed put their tokens (:func:`lay_out`): a
collate function may pad rows again (to the batch's longest, to a multiple of 8, on another side),
trim the padding they came with, or corrupt ids for masked-LM training. What is real, which
document each token belongs to and what the output trains are known from the rows as the output
holds them (its masks, ``seq_lens``, ``position_ids``, labels), never from the feed under test.
Each row's real tokens are placed in the fed row at the one offset where the fed ids equal them,
exactly, taking a masked-LM corruption back from the fed labels (which hold the original id
wherever an id was changed). A fed row that holds its row's tokens nowhere cannot be judged and is
refused.

``mask_structure``: for every real query position of every fed row, the keys the fed mask lets it
attend must be exactly the real tokens of its own document (those up to it, for a decoder). What
each form allows:

- a 2D mask ``(batch, length)``: every position whose mask is 1 (a decoder adds causality);
  on a row holding two documents or more, each sees the ones before it, whatever the model;
- a 4D mask ``(batch, 1 or heads, query, key)``: where it is 0 (an additive float mask, as
  transformers 5 hands it to attention untouched) or true (a boolean one);
- no mask: the model builds one (from ``position_ids`` on transformers 5 decoders, without a KV
  cache), so this check cannot judge it and says so; the forward comparison does.

The labels a feed trains, position by position over the real tokens of every fed row:

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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..collate import RowArrays, block_mask, positions_in_segments
from ..columns import IGNORE_INDEX
from .results import ProbeResult, data_check


@dataclass(frozen=True)
class FedBatch:
    """A fed batch: ``kwargs`` as the model receives them (on the CPU), ``truth`` the output's
    rows laid out as fed (:func:`lay_out`), ``labels`` the fed labels (``None`` when it gave
    none), ``row_ids`` the rows' indices in the output, ``warnings`` about what it returned."""

    kwargs: dict[str, Any]
    truth: RowArrays
    labels: np.ndarray | None
    row_ids: list[int]
    warnings: tuple[str, ...] = ()


def fed_arrays(kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The fed ``input_ids`` (a 2D tensor) and ``labels`` (``None`` unless a tensor of their
    shape), as NumPy arrays."""
    import torch

    ids = kwargs["input_ids"].detach().cpu().numpy().astype(np.int64)
    labels = kwargs.get("labels")
    if isinstance(labels, torch.Tensor) and tuple(labels.shape) == ids.shape:
        return ids, labels.detach().cpu().numpy().astype(np.int64)
    return ids, None


@dataclass(frozen=True)
class Misplaced:
    """A fed row (``index`` in the batch) that holds its row's ``length`` real tokens nowhere."""

    index: int
    length: int
    width: int


def lay_out(
    truth: RowArrays, fed_ids: np.ndarray, fed_labels: np.ndarray | None
) -> RowArrays | Misplaced:
    """``truth`` (rows as the output holds them) laid out as the fed ``fed_ids`` (see the module
    notes); or the first fed row that holds its row's tokens nowhere."""
    real = truth.attention_mask > 0
    offsets = np.zeros(len(fed_ids), dtype=np.int64)
    restored = None
    if fed_labels is not None:  # of fed_ids' shape (fed_arrays)
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
    return _truth_at(truth, offsets, fed_ids)


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


def _truth_at(truth: RowArrays, offsets: np.ndarray, fed_ids: np.ndarray) -> RowArrays:
    """Real positions, documents, the output's labels and its ids (0 at padding) at the
    ``offsets`` of each row, padding elsewhere."""
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


MASK_STRUCTURE = "mask_structure"


@dataclass
class MaskTally:
    """Counts over the real query positions of every fed row compared; ``rows``: the first rows
    (indices in the data) where the mask let a position see another document or padding, or hid
    its own document."""

    positions: int = 0
    forms: dict[str, None] = field(default_factory=dict)
    across: int = 0
    padding: int = 0
    hidden: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, mask: Any, truth: RowArrays, row_ids: list[int], *, causal: bool) -> None:
        """Count one batch: the fed ``mask`` (a tensor, or ``None``) against ``truth``, row by
        row (a row's query × key matrix at a time, whatever the batch)."""
        real = truth.attention_mask > 0
        rows, width = real.shape
        shape = tuple(mask.shape) if mask is not None else None
        if shape == (rows, width):
            self.forms["2D"] = None
        elif (
            shape is not None and len(shape) == 4 and shape[:1] + shape[2:] == (rows, width, width)
        ):
            self.forms["4D"] = None
        else:
            self.forms["no attention_mask" if mask is None else f"shape {shape}"] = None
            return
        lower = np.tril(np.ones((width, width), dtype=bool))
        expected = block_mask(truth.segments, causal=causal)[:, 0]
        for i in range(rows):
            row = mask[i].detach().cpu()
            values = (row.float() if row.is_floating_point() else row).numpy()
            if values.ndim == 1:
                widest = np.broadcast_to(values != 0, (width, width))
                if causal:
                    widest = widest & lower
                narrowest = widest
            else:
                allowed = values != 0 if values.dtype == bool else values == 0
                # Every head must keep to the document: the most and least any head allows.
                widest, narrowest = allowed.any(axis=0), allowed.all(axis=0)
            queries, keys = real[i][:, None], real[i][None, :]
            # Per query position: it saw another document, it saw padding, it lost part of its own.
            across = (queries & keys & widest & ~expected[i]).any(axis=1)
            padding = (queries & ~keys & widest).any(axis=1)
            hidden = (queries & keys & expected[i] & ~narrowest).any(axis=1)
            self.positions += int(real[i].sum())
            self.across += int(across.sum())
            self.padding += int(padding.sum())
            self.hidden += int(hidden.sum())
            if (across | padding | hidden).any() and len(self.rows) < 4:
                self.rows.append(row_ids[i])


def mask_check(tally: MaskTally, fix: tuple[str, str]) -> ProbeResult:
    """The ``mask_structure`` check from ``tally``; a failing one names ``fix`` (key, words)."""
    forms = ", ".join(tally.forms) or "nothing"
    if tally.positions == 0:
        note = f"fed {forms}: the model builds the mask itself; the probes judge it"
        return data_check(MASK_STRUCTURE, "skipped", note=note)
    parts = []
    if tally.across:
        parts.append(f"{tally.across} real positions see tokens of another document")
    if tally.padding:
        parts.append(f"{tally.padding} see padding")
    if tally.hidden:
        parts.append(f"{tally.hidden} are hidden tokens of their own document")
    counts: dict[str, Any] = {"positions": tally.positions, "leaking": len(tally.rows)}
    if not parts:
        note = f"fed a {forms} mask: every real position sees exactly its own document"
        return data_check(MASK_STRUCTURE, "pass", note=note, **counts)
    key, words = fix
    note = f"fed a {forms} mask: {'; '.join(parts)}{_fix(words)}"
    return data_check(MASK_STRUCTURE, "LEAK", note=note, fix=key, worst_row=tally.rows[0], **counts)


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
        return [data_check(name, "skipped", note=why) for name in LABEL_CHECKS]
    return [_extra(tally, causal, fix), _missing(tally, causal, fix, pad_is_eos)]


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
        return data_check(LABELS_EXTRA, "pass", note=f"no label on {what}", **common)
    key, words = fix
    note = f"the feed trains what the output does not: {'; '.join(parts)}{_fix(words)}"
    return data_check(
        LABELS_EXTRA, "LEAK", note=note, fix=key, worst_row=tally.extra_rows[0], **common
    )


def _missing(
    tally: LabelTally, causal: bool, fix: tuple[str, str], pad_is_eos: bool
) -> ProbeResult:
    if not causal:
        return data_check(
            LABELS_MISSING,
            "skipped",
            note="encoder: a masked-LM feed trains a sample of the tokens by design",
        )
    eos = f"; real EOS trained {tally.eos - tally.eos_missing} of {tally.eos}" if tally.eos else ""
    common = {"positions": tally.positions, "leaking": len(tally.missing_rows)}
    if not tally.missing:
        return data_check(
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
    return data_check(
        LABELS_MISSING,
        "LEAK",
        note=note + _fix(words),
        fix=key,
        worst_row=tally.missing_rows[0],
        **common,
    )


def _fix(words: str) -> str:
    return f"; fix: {words}" if words else ""


def feed_checks(
    batches: Iterable[FedBatch],
    *,
    causal: bool,
    mask_fix: tuple[str, str],
    label_fix: tuple[str, str],
    eos_id: int | None,
    pad_id: int | None,
    skipped: str | None = None,
    unlabelled: str = "",
) -> tuple[list[ProbeResult], tuple[str, ...]]:
    """The ``mask_structure`` check and the two label checks over the fed ``batches`` (a failing
    one naming its fix: key, words), and the batches' warnings, each once. The label checks are
    ``skipped`` with that reason, or ``unlabelled`` when no batch gave labels."""
    masks, labels = MaskTally(), LabelTally()
    warned: dict[str, None] = {}
    fed_labels = False
    for fed in batches:
        warned.update(dict.fromkeys(fed.warnings))
        masks.add(fed.kwargs.get("attention_mask"), fed.truth, fed.row_ids, causal=causal)
        if fed.labels is not None:
            fed_labels = True
            labels.add(fed.labels, fed.truth, fed.row_ids, causal=causal, eos_id=eos_id)
    if skipped is None and not fed_labels:
        skipped = unlabelled
    pad_is_eos = eos_id is not None and eos_id == pad_id
    checks = [mask_check(masks, mask_fix)]
    checks += label_checks(
        labels, causal=causal, fix=label_fix, skipped=skipped, pad_is_eos=pad_is_eos
    )
    return checks, tuple(warned)
