"""Probes on what attention lets through: padding (1, ``pad_invariance``), each row or document
run alone (2, ``unpadded_reference``), across documents of a pack (4, ``cross_document``) and
from later tokens (5, ``causal``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..collate import additive_mask
from .context import (
    ProbeBatch,
    ProbeContext,
    leaky_2d,
    memoised,
    outputs,
    pads_visible,
    perturb,
    record,
    record_control,
    row_max,
    with_changes,
)
from .tally import Tally

if TYPE_CHECKING:
    import torch

#: Documents of one length run alone in one forward pass, at most this many.
REFERENCE_BATCH = 32
#: Notes the probes make once, on the first batch that shows them.
_PLAIN_FEED = "fed without position_ids"
_CACHE_LEAK = "without use_cache=False this feed leaks"


def probe_pad_invariance(
    ctx: ProbeContext, batch: ProbeBatch, base: torch.Tensor, tally: Tally
) -> None:
    """Probe 1: random tokens at padded positions must not move outputs at real positions."""
    pads = ~batch.real
    if not pads.any():
        return
    ids = batch.kwargs["input_ids"]
    noisy = perturb(ctx, ids, pads)
    moved = outputs(ctx, with_changes(batch.kwargs, input_ids=noisy))
    record(ctx, tally, batch, row_max(moved - base, batch.real), base, batch.real)
    visible = pads_visible(ctx, batch)
    if not visible.any():
        tally.note("padding only after real tokens: causal attention alone hides it")
        return
    if tally.control_seen:
        return
    leaky = leaky_2d(batch)
    control_base = memoised(ctx, batch, "all-ones mask", leaky)
    control = outputs(ctx, with_changes(leaky, input_ids=noisy))
    diff = row_max(control - control_base, batch.real)
    record_control(ctx, tally, diff, control_base, batch.real, visible)


def probe_unpadded_reference(
    ctx: ProbeContext, batch: ProbeBatch, base: torch.Tensor, tally: Tally
) -> None:
    """Probe 2: each row's real tokens (each document of a pack) run alone, unpadded."""
    import torch

    reference = torch.zeros_like(base)
    ids = batch.kwargs["input_ids"]
    # Documents of one length run alone together: stacked, unpadded, each is still alone.
    by_length: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for i in range(ids.shape[0]):
        for segment in torch.unique(batch.segments[i]).tolist():
            if segment >= 0:
                where = batch.segments[i] == segment
                by_length.setdefault(int(where.sum()), []).append((i, where))
    for group in by_length.values():
        for start in range(0, len(group), REFERENCE_BATCH):
            part = group[start : start + REFERENCE_BATCH]
            alone: dict[str, Any] = {"input_ids": torch.stack([ids[i][where] for i, where in part])}
            if ctx.causal:
                alone["use_cache"] = False
            for (i, where), out in zip(part, outputs(ctx, alone), strict=True):
                reference[i, where] = out
    record(ctx, tally, batch, row_max(base - reference, batch.real), reference, batch.real)
    multi = batch.segments.amax(dim=-1) > 0
    visible = pads_visible(ctx, batch) | multi
    if not visible.any():
        if (~batch.real).any():
            tally.note("padding only after real tokens: causal attention alone hides it")
        return
    if not tally.control_seen:
        control = memoised(ctx, batch, "all-ones mask", leaky_2d(batch))
        diff = row_max(control - reference, batch.real)
        record_control(ctx, tally, diff, reference, batch.real, visible)
    padded_before = ((~batch.real).long().cummax(dim=-1).values.bool() & batch.real).any()
    plain_feed = "position_ids" in batch.kwargs and not batch.arrays.packed and not ctx.foreign
    if plain_feed and bool(padded_before) and not tally.noted(_PLAIN_FEED):
        # The feed a plain collator gives: no position_ids, the model counts from the padding.
        plain = outputs(ctx, with_changes(batch.kwargs, position_ids=None))
        leak = row_max(plain - reference, batch.real)
        if float(leak.max()) > ctx.tolerance(reference[batch.real]):
            tally.note(
                f"{_PLAIN_FEED} (as a plain collator feeds padded rows) this leaks "
                f"(max diff {float(leak.max()):.3g}): keep pad_position_ids"
            )


def probe_cross_document(
    ctx: ProbeContext, batch: ProbeBatch, base: torch.Tensor, tally: Tally
) -> None:
    """Probe 4: perturbing a row's first document must not move its other documents."""

    first = batch.segments == 0
    others = batch.segments > 0
    if not others.any():
        return
    noisy = perturb(ctx, batch.kwargs["input_ids"], first & others.any(dim=-1, keepdim=True))
    moved = outputs(ctx, with_changes(batch.kwargs, input_ids=noisy))
    record(ctx, tally, batch, row_max(moved - base, others), base, others)
    if not tally.control_seen:
        _plant_2d_pack_leak(ctx, batch, noisy, others, tally)
    own_form = ctx.form == "position_ids" and not ctx.foreign
    if own_form and ctx.causal and not tally.noted(_CACHE_LEAK):
        cached = with_changes(batch.kwargs, use_cache=None)
        leak = row_max(
            outputs(ctx, with_changes(cached, input_ids=noisy)) - outputs(ctx, cached), others
        )
        if float(leak.max()) > ctx.tolerance(base[others]):
            tally.note(f"{_CACHE_LEAK} across documents (max diff {float(leak.max()):.3g})")


def _plant_2d_pack_leak(
    ctx: ProbeContext,
    batch: ProbeBatch,
    noisy: torch.Tensor,
    others: torch.Tensor,
    tally: Tally,
) -> None:
    """The cross-document control: the pack fed its 0/1 mask, as a plain collator feeds it."""
    import torch

    leaky = with_changes(batch.kwargs, attention_mask=torch.from_numpy(batch.arrays.attention_mask))
    leaky = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in leaky.items()}
    control_base = outputs(ctx, leaky)
    control = outputs(ctx, with_changes(leaky, input_ids=noisy))
    diff = row_max(control - control_base, others)
    record_control(ctx, tally, diff, control_base, others, others.any(dim=-1))


def probe_causal(ctx: ProbeContext, batch: ProbeBatch, base: torch.Tensor, tally: Tally) -> None:
    """Probe 5 (decoders): perturbing the later half of a row must not move the earlier half."""
    import torch

    real = batch.real
    order = real.long().cumsum(dim=-1)
    half = (real.sum(dim=-1, keepdim=True) + 1) // 2
    later = real & (order > half)
    earlier = real & (order <= half) & later.any(dim=-1, keepdim=True)
    if not earlier.any():
        return
    noisy = perturb(ctx, batch.kwargs["input_ids"], later)
    moved = outputs(ctx, with_changes(batch.kwargs, input_ids=noisy))
    record(ctx, tally, batch, row_max(moved - base, earlier), base, earlier)
    if ctx.impl == "flash_attention_2":
        tally.note("no planted leak: flash attention takes no custom mask")
        return
    if tally.control_seen:
        return
    both = real[:, :, None] & real[:, None, :]
    allowed = both | torch.eye(real.shape[1], dtype=torch.bool, device=real.device)[None]
    mask = additive_mask(allowed[:, None].cpu().numpy(), ctx.dtype).to(ctx.device)
    leaky = with_changes(batch.kwargs, attention_mask=mask)
    control_base = outputs(ctx, leaky)
    control = outputs(ctx, with_changes(leaky, input_ids=noisy))
    diff = row_max(control - control_base, earlier)
    record_control(ctx, tally, diff, control_base, earlier, earlier.any(dim=-1))
