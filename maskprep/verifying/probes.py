"""The probes, and what every probe needs: the model under test with its tolerances
(:class:`ProbeContext`), a collated batch (:class:`ProbeBatch`), and how outputs are taken,
perturbed, compared and recorded.

On what attention lets through: padding (1, ``pad_invariance``), each row or document run alone
(2, ``unpadded_reference``), across documents of a pack (4, ``cross_document``) and from later
tokens (5, ``causal``); on the labels (3): the loss counts only trained positions
(``labels_loss``), and padded positions receive no gradient (``labels_gradient``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..collate import RowArrays, additive_mask
from ..columns import IGNORE_INDEX
from .model import forward_parameters
from .results import Tally

if TYPE_CHECKING:
    import torch

#: Outputs wider than this (large vocabularies) are compared on this many seeded columns.
OUTPUT_COLUMNS = 2048
#: (absolute, relative) tolerance on outputs, by dtype.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-5, 1e-5),
    "float32": (1e-5, 1e-5),
    "float16": (5e-3, 5e-3),
    "bfloat16": (1e-2, 2e-2),
}
#: Largest gradient allowed at padded positions, relative to the largest real-position gradient.
GRADIENT_TOLERANCES: dict[str, float] = {
    "float64": 1e-6,
    "float32": 1e-6,
    "float16": 1e-4,
    "bfloat16": 1e-4,
}


@dataclass(frozen=True)
class ProbeContext:
    """What every probe needs about the model under test.

    ``head`` holds the model's output layer cut to :data:`OUTPUT_COLUMNS` seeded vocabulary
    columns (parameter name → tensor), so that the attention probes' forward passes compute only
    the logits they compare; ``None`` where the vocabulary is small or the output layer is not a
    plain linear layer (the probes then cut the full logits). ``foreign``: the batches
    are a caller's collate function's, not maskprep's collator's, so the notes about
    maskprep's own feed options do not apply.
    """

    model: Any
    kind: str
    impl: str
    form: str
    dtype: str
    device: str
    vocab: int
    generator: torch.Generator
    columns: dict[int, torch.Tensor] = field(default_factory=dict)
    head: dict[str, torch.Tensor] | None = None
    foreign: bool = False

    @property
    def causal(self) -> bool:
        """Whether the model is a decoder (causal attention)."""
        return self.kind == "decoder"

    def tolerance(self, reference: torch.Tensor) -> float:
        """The bound on a change of outputs whose reference values are ``reference``."""
        atol, rtol = TOLERANCES[self.dtype]
        scale = float(reference.abs().max()) if reference.numel() else 0.0
        return atol + rtol * scale


@dataclass(frozen=True)
class ProbeBatch:
    """One collated batch and what the probes need to know about its positions; ``memo`` keeps
    outputs of feeds that several probes compare against (the leaky controls)."""

    arrays: RowArrays
    kwargs: dict[str, Any]
    real: torch.Tensor
    segments: torch.Tensor
    row_ids: list[int]
    memo: dict[str, torch.Tensor] = field(default_factory=dict)


def probe_batch(
    ctx: ProbeContext, arrays: RowArrays, kwargs: dict[str, Any], row_ids: list[int]
) -> ProbeBatch:
    """A batch as the probes take it, on the context's device: ``arrays`` the output's truth
    about its rows laid out as ``kwargs`` feeds them."""
    import torch

    kwargs = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in kwargs.items()}
    return ProbeBatch(
        arrays=arrays,
        kwargs=kwargs,
        real=torch.from_numpy(arrays.attention_mask > 0).to(ctx.device),
        segments=torch.from_numpy(arrays.segments).to(ctx.device),
        row_ids=row_ids,
    )


def sliced_head(model: Any, vocab: int) -> dict[str, torch.Tensor] | None:
    """The model's output layer cut to the :data:`OUTPUT_COLUMNS` columns :func:`outputs`
    compares, as parameters for :func:`torch.func.functional_call`; ``None`` when the vocabulary
    is not wider or the output layer is not a plain ``Linear``."""
    import torch

    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if getter is not None else None
    if vocab <= OUTPUT_COLUMNS or type(head) is not torch.nn.Linear:
        return None
    if head.out_features != vocab:
        return None
    name = next((n for n, m in model.named_modules() if m is head), None)
    if name is None:
        return None
    keep = _columns(vocab).to(head.weight.device)
    params = {f"{name}.weight": head.weight.detach()[keep]}
    if head.bias is not None:
        params[f"{name}.bias"] = head.bias.detach()[keep]
    return params


def _columns(width: int) -> torch.Tensor:
    """The seeded vocabulary columns compared for outputs ``width`` wide."""
    import torch

    order = torch.randperm(width, generator=torch.Generator().manual_seed(width))
    return order[:OUTPUT_COLUMNS].sort().values


def outputs(ctx: ProbeContext, kwargs: dict[str, Any]) -> torch.Tensor:
    """The model's logits (or last hidden state), as float32, without gradients.

    With ``ctx.head`` the output layer computes only the compared columns (the model's own
    forward runs, its output layer's parameters replaced for this call only).
    """
    import torch
    from torch.func import functional_call

    feed = {k: v for k, v in kwargs.items() if k != "labels"}
    with torch.no_grad():
        if ctx.head is not None:
            out = functional_call(ctx.model, ctx.head, (), feed, tie_weights=False, strict=False)
        else:
            out = ctx.model(**feed)
    values = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    width = values.shape[-1]
    if width > OUTPUT_COLUMNS:
        # A leak moves the hidden state, and so practically every logit: a fixed sample of
        # vocabulary columns sees it as well and keeps the float32 copies held here small.
        if width not in ctx.columns:
            ctx.columns[width] = _columns(width).to(values.device)
        values = values[..., ctx.columns[width]]
    return values.float()


def all_ones(ctx: ProbeContext, batch: ProbeBatch) -> tuple[dict[str, Any], torch.Tensor]:
    """The batch fed with a plain 0/1 mask that is 1 everywhere (padding and packs both leak),
    and its outputs, computed once per batch."""
    import torch

    leaky = with_changes(batch.kwargs, attention_mask=torch.ones_like(batch.real, dtype=torch.long))
    if "all-ones mask" not in batch.memo:
        batch.memo["all-ones mask"] = outputs(ctx, leaky)
    return leaky, batch.memo["all-ones mask"]


def perturb(ctx: ProbeContext, ids: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``ids`` with every position in ``where`` replaced by a different random id."""
    import torch

    shift = torch.randint(1, ctx.vocab, ids.shape, generator=ctx.generator).to(ids.device)
    return torch.where(where, (ids + shift) % ctx.vocab, ids)


def with_changes(kwargs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(kwargs)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def row_max(diff: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per-row max of ``|diff|`` (batch, seq, vocab) over the positions in ``where``."""
    per_position = diff.abs().amax(dim=-1)
    return per_position.masked_fill(~where, 0).amax(dim=-1)


def record(
    ctx: ProbeContext,
    tally: Tally,
    batch: ProbeBatch,
    diff: torch.Tensor,
    scale: torch.Tensor,
    where: torch.Tensor,
) -> None:
    """Add per-row results: ``diff`` per row, tolerance from ``scale`` (outputs) per row."""
    counts = where.sum(dim=-1)
    for i, row in enumerate(batch.row_ids):
        if int(counts[i]) == 0:
            continue
        tol = ctx.tolerance(scale[i][where[i]])
        tally.add(float(diff[i]), tol, row, int(counts[i]))


def record_control(
    ctx: ProbeContext,
    tally: Tally,
    diff: torch.Tensor,
    scale: torch.Tensor,
    where: torch.Tensor,
    rows: torch.Tensor,
) -> None:
    for i in range(diff.shape[0]):
        if bool(rows[i]) and bool(where[i].any()):
            tally.control(float(diff[i]), ctx.tolerance(scale[i][where[i]]))


def plant(
    ctx: ProbeContext,
    tally: Tally,
    leaky: dict[str, Any],
    noisy: torch.Tensor,
    where: torch.Tensor,
    rows: torch.Tensor,
    base: torch.Tensor | None = None,
) -> None:
    """The planted leak: the feed ``leaky`` with and without the ``noisy`` ids; what moved at
    ``where`` is recorded as the control of the ``rows`` it applies to."""
    base = outputs(ctx, leaky) if base is None else base
    moved = outputs(ctx, with_changes(leaky, input_ids=noisy))
    record_control(ctx, tally, row_max(moved - base, where), base, where, rows)


def pads_visible(ctx: ProbeContext, batch: ProbeBatch) -> torch.Tensor:
    """Rows where some real position could attend a pad if the mask were missing."""
    pads = ~batch.real
    if not ctx.causal:
        return pads.any(dim=-1) & batch.real.any(dim=-1)
    # A decoder's real token sees a pad only when the pad comes before it.
    seen_pad = pads.long().cummax(dim=-1).values.bool()
    return (seen_pad & batch.real).any(dim=-1)


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
    leaky, base = all_ones(ctx, batch)
    plant(ctx, tally, leaky, noisy, batch.real, visible, base)


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
        _, control = all_ones(ctx, batch)
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
    import torch

    first = batch.segments == 0
    others = batch.segments > 0
    if not others.any():
        return
    noisy = perturb(ctx, batch.kwargs["input_ids"], first & others.any(dim=-1, keepdim=True))
    moved = outputs(ctx, with_changes(batch.kwargs, input_ids=noisy))
    record(ctx, tally, batch, row_max(moved - base, others), base, others)
    if not tally.control_seen:
        # The control: the pack fed its 0/1 mask, as a plain collator feeds it.
        mask = torch.from_numpy(batch.arrays.attention_mask).to(ctx.device)
        leaky = with_changes(batch.kwargs, attention_mask=mask)
        plant(ctx, tally, leaky, noisy, others, others.any(dim=-1))
    own_form = ctx.form == "position_ids" and not ctx.foreign
    if own_form and ctx.causal and not tally.noted(_CACHE_LEAK):
        cached = with_changes(batch.kwargs, use_cache=None)
        leak = row_max(
            outputs(ctx, with_changes(cached, input_ids=noisy)) - outputs(ctx, cached), others
        )
        if float(leak.max()) > ctx.tolerance(base[others]):
            tally.note(f"{_CACHE_LEAK} across documents (max diff {float(leak.max()):.3g})")


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
    plant(
        ctx,
        tally,
        with_changes(batch.kwargs, attention_mask=mask),
        noisy,
        earlier,
        earlier.any(dim=-1),
    )


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

    parameters = forward_parameters(ctx.model)
    if parameters is not None and "labels" not in parameters:
        return None, None, None

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


def probe_labels(
    ctx: ProbeContext, batch: ProbeBatch, loss_tally: Tally, grad_tally: Tally
) -> None:
    """Probe 3: the loss counts only trained positions; padded positions get no gradient.

    The planted leak of both is one feed: a label on every ignored position (padding included),
    whose loss must differ from the reference and whose gradient must reach the padding.
    """
    import torch

    rows_ids = batch.row_ids
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
