"""What every probe needs: the model under test with its tolerances, a collated batch, and how
outputs are taken, perturbed, compared and recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..collate import RowArrays
from .tally import Tally

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
    plain linear layer (the probes then cut the full logits). ``position_offset`` is the first
    position id the model numbers from (RoBERTa: ``padding_idx + 1``). ``foreign``: the batches
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
    position_offset: int = 0
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


def memoised(ctx: ProbeContext, batch: ProbeBatch, name: str, kwargs: dict[str, Any]) -> Any:
    """:func:`outputs` of the feed ``name`` of this batch, computed once."""
    if name not in batch.memo:
        batch.memo[name] = outputs(ctx, kwargs)
    return batch.memo[name]


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


def leaky_2d(batch: ProbeBatch) -> dict[str, Any]:
    """The batch fed with a plain 0/1 mask that is 1 everywhere: padding and packs both leak."""
    import torch

    ones = torch.ones_like(batch.real, dtype=torch.long)
    return with_changes(batch.kwargs, attention_mask=ones)


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


def pads_visible(ctx: ProbeContext, batch: ProbeBatch) -> torch.Tensor:
    """Rows where some real position could attend a pad if the mask were missing."""
    pads = ~batch.real
    if not ctx.causal:
        return pads.any(dim=-1) & batch.real.any(dim=-1)
    # A decoder's real token sees a pad only when the pad comes before it.
    seen_pad = pads.long().cummax(dim=-1).values.bool()
    return (seen_pad & batch.real).any(dim=-1)
