"""Probe 3: the loss counts only trained positions (``labels_loss``), and padded positions receive
no gradient (``labels_gradient``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..columns import IGNORE_INDEX
from .context import GRADIENT_TOLERANCES, TOLERANCES, ProbeBatch, ProbeContext, with_changes
from .tally import Tally

if TYPE_CHECKING:
    import torch


def _trained_targets(ctx: ProbeContext, batch: ProbeBatch) -> torch.Tensor:
    """Target positions that may count in the loss (decoders: shifted, ``(batch, seq - 1)``).

    A target counts when its label is not ignored, it is real, and (decoders) it is predicted from
    the previous position of the same document.
    """
    labels = batch.kwargs["labels"]
    trained = (labels != IGNORE_INDEX) & batch.real
    if not ctx.causal:
        return trained
    same_doc = batch.segments[:, 1:] == batch.segments[:, :-1]
    return trained[:, 1:] & same_doc


def _model_loss(ctx: ProbeContext, batch: ProbeBatch, labels: torch.Tensor) -> tuple[Any, Any, Any]:
    """Forward with gradients on the input embeddings only; return (loss, logits, gradient of
    the loss with respect to the input embeddings, or ``None`` without a loss).

    The gradient is taken with :func:`torch.autograd.grad`, so no parameter's ``.grad`` is
    written (a caller's accumulated gradients stay as they are) and no weight gradient is
    computed at all.
    """
    import torch

    embeddings = ctx.model.get_input_embeddings()(batch.kwargs["input_ids"]).detach()
    embeddings.requires_grad_(True)
    feed = with_changes(batch.kwargs, input_ids=None, inputs_embeds=embeddings, labels=labels)
    out = ctx.model(**feed)
    if out.loss is None:
        return None, out.logits, None
    (grad,) = torch.autograd.grad(out.loss, embeddings)
    return out.loss.detach(), out.logits.detach(), grad


def _reference_loss(
    ctx: ProbeContext, batch: ProbeBatch, logits: torch.Tensor
) -> torch.Tensor | None:
    """Mean cross-entropy over the positions that may be trained, computed here."""
    import torch

    labels = batch.kwargs["labels"]
    logits = logits.detach().float()
    target = _trained_targets(ctx, batch)
    if ctx.causal:
        picked, gold = logits[:, :-1][target], labels[:, 1:][target]
    else:
        picked, gold = logits[target], labels[target]
    if gold.numel() == 0:
        return None
    return torch.nn.functional.cross_entropy(picked, gold)


def _takes_labels(model: Any) -> bool:
    import inspect

    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return True


def probe_labels(
    ctx: ProbeContext, batch: ProbeBatch, loss_tally: Tally, grad_tally: Tally
) -> None:
    """Probe 3: the loss counts only trained positions; padded positions get no gradient.

    The planted leak of both is one feed: a label on every ignored position (padding included),
    whose loss must differ from the reference and whose gradient must reach the padding.
    """
    import torch

    rows_ids = batch.row_ids
    if not _takes_labels(ctx.model):
        loss_tally.note("the model computes no loss (base model without an LM head)")
        grad_tally.note("the model computes no loss (base model without an LM head)")
        return
    labels = batch.kwargs["labels"]
    loss, logits, grad = _model_loss(ctx, batch, labels)
    if loss is None:
        loss_tally.note("the model computes no loss (base model without an LM head)")
        grad_tally.note("the model computes no loss (base model without an LM head)")
        return
    reference = _reference_loss(ctx, batch, logits)
    if reference is None:
        return
    atol, rtol = TOLERANCES[ctx.dtype]
    tol = atol + rtol * abs(float(reference))
    miscounted = _miscounted(ctx, batch)
    worst = rows_ids[int(torch.argmax(miscounted))] if miscounted.any() else rows_ids[0]
    counted = int((labels != IGNORE_INDEX).sum())
    loss_tally.add(abs(float(loss) - float(reference)), tol, worst, counted)
    _record_gradient(ctx, batch, grad, grad_tally)
    ignored = labels == IGNORE_INDEX
    pads = ~batch.real
    wanted = not loss_tally.control_seen or (bool(pads.any()) and not grad_tally.control_seen)
    if not ignored.any() or not wanted:
        return
    planted = torch.where(ignored, batch.kwargs["input_ids"], labels)
    planted_loss, _, planted_grad = _model_loss(ctx, batch, planted)
    loss_tally.control(abs(float(planted_loss) - float(reference)), tol)
    if pads.any():
        magnitude = planted_grad.float().abs().amax(dim=-1)
        scale = float(magnitude[batch.real].max()) if batch.real.any() else 0.0
        grad_tally.control(float(magnitude[pads].max()), GRADIENT_TOLERANCES[ctx.dtype] * scale)


def _miscounted(ctx: ProbeContext, batch: ProbeBatch) -> torch.Tensor:
    """Per row: labelled positions the loss must not count (padding, document starts)."""
    labels = batch.kwargs["labels"]
    labelled = labels != IGNORE_INDEX
    target = _trained_targets(ctx, batch)
    if ctx.causal:
        labelled = labelled[:, 1:]
    return (labelled & ~target).sum(dim=-1)


def _record_gradient(
    ctx: ProbeContext, batch: ProbeBatch, grad: torch.Tensor, tally: Tally
) -> None:
    pads = ~batch.real
    if not pads.any():
        return
    grad = grad.float().abs().amax(dim=-1)
    scale = float(grad[batch.real].max()) if batch.real.any() else 0.0
    tol = GRADIENT_TOLERANCES[ctx.dtype] * scale
    per_row = grad.masked_fill(~pads, 0).amax(dim=-1)
    for i, row in enumerate(batch.row_ids):
        count = int(pads[i].sum())
        if count:
            tally.add(float(per_row[i]), max(tol, 1e-30), row, count)
