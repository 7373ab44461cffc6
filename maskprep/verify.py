"""``maskprep.verify``: run a real model on sampled rows and prove nothing leaks through the masks.

Rows go through :func:`maskprep.collate.collate`, exactly as training feeds them. Each probe
compares the model's outputs (logits, or the last hidden state of a base encoder) between two
feeds that must agree if the masks are right:

1. ``pad-invariance``: every padded position's token replaced by a random id; outputs at real
   positions must not move.
2. ``unpadded-reference``: each row's real tokens (each document of a pack) run alone, unpadded,
   must give the outputs they get inside the batch (left padding fed without the
   ``position_ids`` an absolute-position model needs shows up here).
3. ``labels-loss``: the model's loss equals a cross-entropy over the trained positions only (real,
   label not ``IGNORE_INDEX``, and predicted from the same document); ``labels-gradient``: the loss
   has zero gradient with respect to the input embeddings at padded positions.
4. ``cross-document`` (packs): the tokens of each row's first document perturbed; outputs of the
   other documents must not move.
5. ``causal`` (decoders): the second half of each row's tokens perturbed; outputs before them must
   not move.

Every probe also runs a *planted leak* (negative control): the same comparison on a feed that
leaks by construction (attention mask dropped, an all-ones 2D mask on a pack, labels on every
ignored position, a bidirectional mask). If the planted leak does not move the outputs beyond the
tolerance on this model, the probe cannot see a leak and is reported ``inconclusive``, not
``pass``. Where the data cannot leak by construction (a decoder's right padding comes after every
real token and causal attention alone hides it) the control does not apply and the note says so.

Tolerances (absolute + relative to the largest reference output of the row), chosen from the
transformers test suite's practice of comparing attention implementations: float32 ``1e-5 +
1e-5·max|ref|``; float16 ``5e-3 + 5e-3·max|ref|``; bfloat16 ``1e-2 + 2e-2·max|ref|``. Padded
positions must have exactly no gradient (masked attention weights are exactly 0), allowing
``1e-6`` (float32) or ``1e-4`` (half precision) of the largest real-position gradient. A probe
always compares like with like: same model, dtype and attention implementation.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import columns
from .collate import RowArrays, additive_mask, collate, row_arrays
from .columns import IGNORE_INDEX
from .errors import ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

Status = Literal["pass", "LEAK", "inconclusive", "skipped"]
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")
PROBES = (
    "pad-invariance",
    "unpadded-reference",
    "labels-loss",
    "labels-gradient",
    "cross-document",
    "causal",
)

#: Outputs wider than this (large vocabularies) are compared on this many seeded columns.
OUTPUT_COLUMNS = 2048
#: (absolute, relative) tolerance on outputs, by dtype.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-5, 1e-5),
    "float16": (5e-3, 5e-3),
    "bfloat16": (1e-2, 2e-2),
}
#: Largest gradient allowed at padded positions, relative to the largest real-position gradient.
GRADIENT_TOLERANCES: dict[str, float] = {"float32": 1e-6, "float16": 1e-4, "bfloat16": 1e-4}

_LEAK_HINTS = {
    "pad-invariance": "padding reaches real tokens: the attention mask is not applied",
    "unpadded-reference": (
        "real tokens give other outputs inside the batch than alone: check the attention mask, "
        "the padding side and position_ids"
    ),
    "labels-loss": "the loss counts positions that must not be trained (labels on padding or "
    "across documents)",
    "labels-gradient": "padded positions receive gradient: labels on padding",
    "cross-document": "documents of a packed row attend to each other",
    "causal": "earlier positions see later tokens: attention is not causal",
}


@dataclass(frozen=True)
class VerifyOptions:
    """How ``verify`` loads the model and feeds it.

    ``from_config`` builds the model from its configuration with random weights (seeded by
    ``seed``), ``num_layers`` cutting it to that many layers. ``attn_implementations`` are tried in
    turn; unavailable ones are reported as skipped. ``pack_forms`` are the collator forms checked
    on packed rows (``mask2d`` is the leaky diagnostic); ``None`` checks the forms that keep
    documents apart for the model's kind: ``position_ids`` and ``mask4d`` for decoders, ``mask4d``
    for encoders (which build no mask from ``position_ids``). ``pad_position_ids`` feeds padded rows
    ``position_ids`` counted over real tokens, as a trainer using left padding with an
    absolute-position model must.
    """

    revision: str | None = None
    trust_remote_code: bool = False
    from_config: bool = False
    num_layers: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementations: tuple[str, ...] = ATTN_IMPLEMENTATIONS
    pack_forms: tuple[str, ...] | None = None
    pad_position_ids: bool = False
    rows: int = 8
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        unknown = [a for a in self.attn_implementations if a not in ATTN_IMPLEMENTATIONS]
        if unknown or not self.attn_implementations:
            raise ConfigError(
                f"attention implementations must be among {', '.join(ATTN_IMPLEMENTATIONS)}, "
                f"not {', '.join(unknown) or 'none'}"
            )
        forms = self.pack_forms if self.pack_forms is not None else ("mask4d",)
        bad_forms = [f for f in forms if f not in ("position_ids", "mask4d", "mask2d")]
        if bad_forms or not forms:
            raise ConfigError(
                f"pack forms must be among position_ids, mask4d, mask2d, not "
                f"{', '.join(bad_forms) or 'none'}"
            )
        for name in ("rows", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, not {self.num_layers}")
        if self.num_layers is not None and not self.from_config:
            raise ConfigError("num_layers only applies to a model built from its config")


@dataclass(frozen=True)
class Check:
    """One probe under one attention implementation and feed form.

    ``max_diff`` is the largest change seen at the positions that must not change, ``tolerance``
    the bound it was held to (for the worst row), ``positions`` how many positions were compared,
    ``worst_row`` the dataset index of the row closest to (or furthest past) its bound, and
    ``control_diff`` what the planted leak moved (``None`` where no control applies).
    ``leaking`` counts the rows past their tolerance (batches, for ``labels-loss``, whose loss is
    one number per batch).
    """

    probe: str
    attn_implementation: str
    form: str
    status: Status
    max_diff: float | None = None
    tolerance: float | None = None
    positions: int = 0
    worst_row: int | None = None
    control_diff: float | None = None
    leaking: int = 0
    note: str = ""
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class VerifyResult:
    """Everything ``verify`` found. ``ok`` is false when any check reports a leak."""

    model: str
    kind: str
    device: str
    dtype: str
    rows: tuple[int, ...]
    packed: bool
    checks: tuple[Check, ...]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """No check found a leak."""
        return not any(c.status == "LEAK" for c in self.checks)

    def by_status(self, status: Status) -> list[Check]:
        """The checks with ``status``."""
        return [c for c in self.checks if c.status == status]


# --------------------------------------------------------------------------- loading


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but torch sees no CUDA device")
    return name


def _resolve_dtype(name: str, device: str) -> str:
    import torch

    if name != "auto":
        return name
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (an encoder's fresh LM head is expected here)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def model_kind(config: Any) -> str:
    """``decoder`` (causal LM) or ``encoder``; encoder-decoder models are refused."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"{config.model_type}: encoder-decoder models are not supported")
    causal = type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
    masked = type(config) in MODEL_FOR_MASKED_LM_MAPPING
    if causal and (not masked or getattr(config, "is_decoder", False)):
        return "decoder"
    return "encoder"


def load_model(name: str, options: VerifyOptions, dtype: str, device: str) -> tuple[Any, str]:
    """Load ``name`` (Hub name or local directory) for probing; return the model and its kind.

    Decoders load as causal LMs; encoders as masked LMs when their architecture has one (so the
    label probe has a loss), else as the base model.
    """
    import torch
    from transformers import (
        MODEL_FOR_MASKED_LM_MAPPING,
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
    )

    hub = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(name, **hub)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{name}: cannot load the model config: {_first_line(error)}") from None
    if options.num_layers is not None:
        config.num_hidden_layers = options.num_layers
    kind = model_kind(config)
    if kind == "decoder":
        cls: Any = AutoModelForCausalLM
    else:
        cls = AutoModelForMaskedLM if type(config) in MODEL_FOR_MASKED_LM_MAPPING else AutoModel
    torch_dtype = getattr(torch, dtype)
    with _quiet_transformers():
        try:
            if options.from_config:
                torch.manual_seed(options.seed)
                model = cls.from_config(
                    config, dtype=torch_dtype, trust_remote_code=options.trust_remote_code
                )
            else:
                model = cls.from_pretrained(name, config=config, dtype=torch_dtype, **hub)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{name}: cannot load the model: {_first_line(error)}") from None
    return model.to(device).eval(), kind


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _set_implementation(model: Any, name: str, device: str, dtype: str) -> str | None:
    """Switch the model to attention ``name``; return why not, or ``None`` when done."""
    if name == "flash_attention_2":
        if device != "cuda":
            return "flash_attention_2 needs a CUDA device"
        if dtype not in ("float16", "bfloat16"):
            return "flash_attention_2 runs only in float16 or bfloat16"
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            return "flash_attention_2 needs the flash-attn package, which is not installed"
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        current = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if current == name:
            return None
        return f"this model object cannot switch attention (it runs {current})"
    try:
        setter(name)
    except (ImportError, ValueError) as error:
        return _first_line(error)
    return None


# --------------------------------------------------------------------------- reading rows


def read_rows(path: str | os.PathLike[str], rows: int, seed: int) -> tuple[pa.Table, list[int]]:
    """Sample ``rows`` rows (without replacement, by ``seed``) from a finished output."""
    import pyarrow.dataset as ds

    from .output.dataset import shard_paths

    paths = [str(p) for p in shard_paths(path)]
    if not paths:
        raise DataError(f"{path}: the output has no shards")
    kind = "parquet" if paths[0].endswith(".parquet") else "ipc"
    dataset = ds.dataset(paths, format=kind)
    total = dataset.count_rows()
    if total == 0:
        raise DataError(f"{path}: the shards hold no rows")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(total, size=min(rows, total), replace=False))
    return dataset.take(picked), [int(i) for i in picked]


# --------------------------------------------------------------------------- probes


@dataclass
class _Tally:
    """Per-row measurements of one check, accumulated over batches."""

    diffs: list[float] = field(default_factory=list)
    tols: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    controls: list[float] = field(default_factory=list)
    control_tols: list[float] = field(default_factory=list)
    positions: int = 0
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, diff: float, tol: float, row: int, positions: int) -> None:
        self.diffs.append(diff)
        self.tols.append(tol)
        self.rows.append(row)
        self.positions += positions

    def control(self, diff: float, tol: float) -> None:
        self.controls.append(diff)
        self.control_tols.append(tol)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _conclude(probe: str, impl: str, form: str, tally: _Tally, skip_reason: str) -> Check:
    """Turn a tally into a check: LEAK past tolerance, inconclusive when blind, else pass."""
    common = {"probe": probe, "attn_implementation": impl, "form": form}
    if tally.positions == 0:
        return Check(**common, status="skipped", note=skip_reason, elapsed_s=tally.elapsed_s)
    diffs, tols = np.array(tally.diffs), np.array(tally.tols)
    ratio = diffs / tols
    worst = int(np.argmax(ratio))
    control = max(tally.controls) if tally.controls else None
    notes = list(tally.notes)
    if ratio[worst] > 1:
        status: Status = "LEAK"
        notes.insert(0, _LEAK_HINTS[probe])
    elif tally.controls:
        seen = np.array(tally.controls) > np.array(tally.control_tols)
        status = "pass" if seen.any() else "inconclusive"
        if not seen.any():
            notes.insert(0, "the planted leak did not move outputs past the tolerance")
    else:
        status = "pass"
    return Check(
        **common,
        status=status,
        max_diff=float(diffs.max()),
        tolerance=float(tols[worst]),
        positions=tally.positions,
        worst_row=tally.rows[worst],
        control_diff=control,
        leaking=int((ratio > 1).sum()),
        note="; ".join(notes),
        elapsed_s=tally.elapsed_s,
    )


@dataclass(frozen=True)
class _Context:
    """What every probe needs about the model under test."""

    model: Any
    kind: str
    impl: str
    form: str
    dtype: str
    device: str
    vocab: int
    generator: torch.Generator
    columns: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def causal(self) -> bool:
        return self.kind == "decoder"

    def tolerance(self, reference: torch.Tensor) -> float:
        atol, rtol = TOLERANCES[self.dtype]
        scale = float(reference.abs().max()) if reference.numel() else 0.0
        return atol + rtol * scale


@dataclass(frozen=True)
class _Batch:
    """One collated batch and what the probes need to know about its positions."""

    arrays: RowArrays
    kwargs: dict[str, Any]
    real: torch.Tensor
    segments: torch.Tensor
    row_ids: list[int]


def _outputs(ctx: _Context, kwargs: dict[str, Any]) -> torch.Tensor:
    """The model's logits (or last hidden state), as float32, without gradients."""
    import torch

    feed = {k: v for k, v in kwargs.items() if k != "labels"}
    with torch.no_grad():
        out = ctx.model(**feed)
    values = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    width = values.shape[-1]
    if width > OUTPUT_COLUMNS:
        # A leak moves the hidden state, and so practically every logit: a fixed sample of
        # vocabulary columns sees it as well and keeps the float32 copies held here small.
        if width not in ctx.columns:
            order = torch.randperm(width, generator=torch.Generator().manual_seed(width))
            ctx.columns[width] = order[:OUTPUT_COLUMNS].sort().values.to(values.device)
        values = values[..., ctx.columns[width]]
    return values.float()


def _perturb(ctx: _Context, ids: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``ids`` with every position in ``where`` replaced by a different random id."""
    import torch

    shift = torch.randint(1, ctx.vocab, ids.shape, generator=ctx.generator).to(ids.device)
    return torch.where(where, (ids + shift) % ctx.vocab, ids)


def _with(kwargs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(kwargs)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _row_max(diff: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per-row max of ``|diff|`` (batch, seq, vocab) over the positions in ``where``."""
    per_position = diff.abs().amax(dim=-1)
    return per_position.masked_fill(~where, 0).amax(dim=-1)


def _leaky_2d(batch: _Batch) -> dict[str, Any]:
    """The batch fed with a plain 0/1 mask that is 1 everywhere: padding and packs both leak."""
    import torch

    ones = torch.ones_like(batch.real, dtype=torch.long)
    return _with(batch.kwargs, attention_mask=ones)


def _record(
    ctx: _Context,
    tally: _Tally,
    batch: _Batch,
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


def _record_control(
    ctx: _Context,
    tally: _Tally,
    diff: torch.Tensor,
    scale: torch.Tensor,
    where: torch.Tensor,
    rows: torch.Tensor,
) -> None:
    for i in range(diff.shape[0]):
        if bool(rows[i]) and bool(where[i].any()):
            tally.control(float(diff[i]), ctx.tolerance(scale[i][where[i]]))


def _pads_visible(ctx: _Context, batch: _Batch) -> torch.Tensor:
    """Rows where some real position could attend a pad if the mask were missing."""
    pads = ~batch.real
    if not ctx.causal:
        return pads.any(dim=-1) & batch.real.any(dim=-1)
    # A decoder's real token sees a pad only when the pad comes before it.
    seen_pad = pads.long().cummax(dim=-1).values.bool()
    return (seen_pad & batch.real).any(dim=-1)


def probe_pad_invariance(ctx: _Context, batch: _Batch, base: torch.Tensor, tally: _Tally) -> None:
    """Probe 1: random tokens at padded positions must not move outputs at real positions."""
    pads = ~batch.real
    if not pads.any():
        return
    ids = batch.kwargs["input_ids"]
    noisy = _perturb(ctx, ids, pads)
    moved = _outputs(ctx, _with(batch.kwargs, input_ids=noisy))
    _record(ctx, tally, batch, _row_max(moved - base, batch.real), base, batch.real)
    visible = _pads_visible(ctx, batch)
    if not visible.any():
        tally.note("padding only after real tokens: causal attention alone hides it")
        return
    leaky = _leaky_2d(batch)
    control_base = _outputs(ctx, leaky)
    control = _outputs(ctx, _with(leaky, input_ids=noisy))
    diff = _row_max(control - control_base, batch.real)
    _record_control(ctx, tally, diff, control_base, batch.real, visible)


def probe_unpadded_reference(
    ctx: _Context, batch: _Batch, base: torch.Tensor, tally: _Tally
) -> None:
    """Probe 2: each row's real tokens (each document of a pack) run alone, unpadded."""
    import torch

    reference = torch.zeros_like(base)
    ids = batch.kwargs["input_ids"]
    for i in range(ids.shape[0]):
        for segment in torch.unique(batch.segments[i]).tolist():
            if segment < 0:
                continue
            where = batch.segments[i] == segment
            alone = {"input_ids": ids[i][where][None]}
            if ctx.causal:
                alone["use_cache"] = False
            reference[i, where] = _outputs(ctx, alone)[0]
    _record(ctx, tally, batch, _row_max(base - reference, batch.real), reference, batch.real)
    multi = batch.segments.amax(dim=-1) > 0
    visible = _pads_visible(ctx, batch) | multi
    if not visible.any():
        if (~batch.real).any():
            tally.note("padding only after real tokens: causal attention alone hides it")
        return
    control = _outputs(ctx, _leaky_2d(batch))
    diff = _row_max(control - reference, batch.real)
    _record_control(ctx, tally, diff, reference, batch.real, visible)


def _trained_targets(ctx: _Context, batch: _Batch) -> torch.Tensor:
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


def _model_loss(ctx: _Context, batch: _Batch, labels: torch.Tensor) -> tuple[Any, Any, Any]:
    """Forward with gradients on the input embeddings; return (loss, logits, embeddings)."""
    embeddings = ctx.model.get_input_embeddings()(batch.kwargs["input_ids"]).detach()
    embeddings.requires_grad_(True)
    feed = _with(batch.kwargs, input_ids=None, inputs_embeds=embeddings, labels=labels)
    out = ctx.model(**feed)
    return out.loss, out.logits, embeddings


def _reference_loss(ctx: _Context, batch: _Batch, logits: torch.Tensor) -> torch.Tensor | None:
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


def probe_labels(ctx: _Context, batch: _Batch, loss_tally: _Tally, grad_tally: _Tally) -> None:
    """Probe 3: the loss counts only trained positions; padded positions get no gradient."""
    import torch

    rows_ids = batch.row_ids
    if not _takes_labels(ctx.model):
        loss_tally.note("the model computes no loss (base model without an LM head)")
        grad_tally.note("the model computes no loss (base model without an LM head)")
        return
    labels = batch.kwargs["labels"]
    loss, logits, embeddings = _model_loss(ctx, batch, labels)
    if loss is None:
        loss_tally.note("the model computes no loss (base model without an LM head)")
        return
    reference = _reference_loss(ctx, batch, logits)
    if reference is None:
        return
    atol, rtol = TOLERANCES[ctx.dtype]
    tol = atol + rtol * abs(float(reference))
    miscounted = _miscounted(ctx, batch)
    worst = rows_ids[int(torch.argmax(miscounted))] if miscounted.any() else rows_ids[0]
    counted = int((labels != IGNORE_INDEX).sum())
    loss_tally.add(abs(float(loss.detach()) - float(reference)), tol, worst, counted)
    ignored = labels == IGNORE_INDEX
    if ignored.any():
        planted = torch.where(ignored, batch.kwargs["input_ids"], labels)
        with torch.no_grad():
            planted_loss = ctx.model(**_with(batch.kwargs, labels=planted)).loss
        loss_tally.control(abs(float(planted_loss) - float(reference)), tol)
    loss.backward()
    _record_gradient(ctx, batch, embeddings.grad, grad_tally)
    pads = ~batch.real
    if pads.any():
        planted = torch.where(pads, batch.kwargs["input_ids"], labels)
        planted_loss, _, planted_embeddings = _model_loss(ctx, batch, planted)
        planted_loss.backward()
        grad = planted_embeddings.grad.float().abs().amax(dim=-1)
        scale = float(grad[batch.real].max()) if batch.real.any() else 0.0
        grad_tally.control(float(grad[pads].max()), GRADIENT_TOLERANCES[ctx.dtype] * scale)


def _miscounted(ctx: _Context, batch: _Batch) -> torch.Tensor:
    """Per row: labelled positions the loss must not count (padding, document starts)."""
    labels = batch.kwargs["labels"]
    labelled = labels != IGNORE_INDEX
    target = _trained_targets(ctx, batch)
    if ctx.causal:
        labelled = labelled[:, 1:]
    return (labelled & ~target).sum(dim=-1)


def _record_gradient(ctx: _Context, batch: _Batch, grad: torch.Tensor, tally: _Tally) -> None:
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


def probe_cross_document(ctx: _Context, batch: _Batch, base: torch.Tensor, tally: _Tally) -> None:
    """Probe 4: perturbing a row's first document must not move its other documents."""
    import torch

    first = batch.segments == 0
    others = batch.segments > 0
    if not others.any():
        return
    noisy = _perturb(ctx, batch.kwargs["input_ids"], first & others.any(dim=-1, keepdim=True))
    moved = _outputs(ctx, _with(batch.kwargs, input_ids=noisy))
    _record(ctx, tally, batch, _row_max(moved - base, others), base, others)
    leaky = _with(batch.kwargs, attention_mask=torch.from_numpy(batch.arrays.attention_mask))
    leaky = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in leaky.items()}
    control_base = _outputs(ctx, leaky)
    control = _outputs(ctx, _with(leaky, input_ids=noisy))
    diff = _row_max(control - control_base, others)
    _record_control(ctx, tally, diff, control_base, others, others.any(dim=-1))
    if ctx.form == "position_ids" and ctx.causal:
        cached = _with(batch.kwargs, use_cache=None)
        leak = _row_max(
            _outputs(ctx, _with(cached, input_ids=noisy)) - _outputs(ctx, cached), others
        )
        if float(leak.max()) > ctx.tolerance(base[others]):
            tally.note(
                f"without use_cache=False this feed leaks across documents "
                f"(max diff {float(leak.max()):.3g})"
            )


def probe_causal(ctx: _Context, batch: _Batch, base: torch.Tensor, tally: _Tally) -> None:
    """Probe 5 (decoders): perturbing the later half of a row must not move the earlier half."""
    import torch

    real = batch.real
    order = real.long().cumsum(dim=-1)
    half = (real.sum(dim=-1, keepdim=True) + 1) // 2
    later = real & (order > half)
    earlier = real & (order <= half) & later.any(dim=-1, keepdim=True)
    if not earlier.any():
        return
    noisy = _perturb(ctx, batch.kwargs["input_ids"], later)
    moved = _outputs(ctx, _with(batch.kwargs, input_ids=noisy))
    _record(ctx, tally, batch, _row_max(moved - base, earlier), base, earlier)
    if ctx.impl == "flash_attention_2":
        tally.note("no planted leak: flash attention takes no custom mask")
        return
    both = real[:, :, None] & real[:, None, :]
    allowed = both | torch.eye(real.shape[1], dtype=torch.bool, device=real.device)[None]
    mask = additive_mask(allowed[:, None].cpu().numpy(), ctx.dtype).to(ctx.device)
    leaky = _with(batch.kwargs, attention_mask=mask)
    control_base = _outputs(ctx, leaky)
    control = _outputs(ctx, _with(leaky, input_ids=noisy))
    diff = _row_max(control - control_base, earlier)
    _record_control(ctx, tally, diff, control_base, earlier, earlier.any(dim=-1))


# --------------------------------------------------------------------------- driver


def _batches(
    table: pa.Table, row_ids: list[int], ctx: _Context, size: int, pad_id: int, side: str, **kw: Any
) -> Iterator[_Batch]:
    import torch

    form = ctx.form if ctx.form != "padded" else "position_ids"
    for start in range(0, table.num_rows, size):
        part = table.slice(start, size)
        arrays = row_arrays(part, pad_id=pad_id, padding_side=side)  # type: ignore[arg-type]
        kwargs = collate(
            part,
            pad_id=pad_id,
            padding_side=side,  # type: ignore[arg-type]
            form=form,  # type: ignore[arg-type]
            causal=ctx.causal,
            dtype=ctx.dtype,
            **kw,
        )
        kwargs = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in kwargs.items()}
        yield _Batch(
            arrays=arrays,
            kwargs=kwargs,
            real=torch.from_numpy(arrays.attention_mask > 0).to(ctx.device),
            segments=torch.from_numpy(arrays.segments).to(ctx.device),
            row_ids=row_ids[start : start + size],
        )


def _forms(
    packed: bool, options: VerifyOptions, impl: str, kind: str
) -> list[tuple[str, str | None]]:
    """(form, why skipped) pairs to run under ``impl``."""
    if not packed:
        return [("padded", None)]
    forms = options.pack_forms
    if forms is None:
        forms = ("position_ids", "mask4d") if kind == "decoder" else ("mask4d",)
    out: list[tuple[str, str | None]] = []
    for form in forms:
        why = None
        if impl == "flash_attention_2" and form != "position_ids":
            why = f"flash attention takes no {form} attention mask; it reads position_ids"
        out.append((form, why))
    return out


def _run_form(
    ctx: _Context,
    table: pa.Table,
    row_ids: list[int],
    options: VerifyOptions,
    pad_id: int,
    side: str,
    packed: bool,
) -> list[Check]:
    import torch

    tallies = {probe: _Tally() for probe in PROBES}
    extra = {} if packed else {"pad_position_ids": options.pad_position_ids}
    for batch in _batches(table, row_ids, ctx, options.batch_size, pad_id, side, **extra):
        base = _outputs(ctx, batch.kwargs)
        timed = [
            ("pad-invariance", probe_pad_invariance),
            ("unpadded-reference", probe_unpadded_reference),
        ]
        if packed:
            timed.append(("cross-document", probe_cross_document))
        if ctx.causal:
            timed.append(("causal", probe_causal))
        for name, probe in timed:
            t0 = time.perf_counter()
            probe(ctx, batch, base, tallies[name])
            tallies[name].elapsed_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.enable_grad():
            probe_labels(ctx, batch, tallies["labels-loss"], tallies["labels-gradient"])
        ctx.model.zero_grad(set_to_none=True)
        tallies["labels-loss"].elapsed_s += time.perf_counter() - t0
    reasons = {
        "pad-invariance": "rows have no padding",
        "unpadded-reference": "rows have no real tokens",
        "labels-loss": "no trained positions, or the model computes no loss",
        "labels-gradient": "rows have no padding",
        "cross-document": "no row holds two documents" if packed else "rows are not packed",
        "causal": "rows too short" if ctx.causal else "encoder: attention is bidirectional",
    }
    return [
        _conclude(probe, ctx.impl, ctx.form, tallies[probe], reasons[probe]) for probe in PROBES
    ]


def _check_vocabulary(table: pa.Table, row_ids: list[int], vocab: int, model: str) -> None:
    """Fail in one line when a token id cannot be looked up in the model's embeddings."""
    import pyarrow.compute as pc

    ids = table.column(columns.INPUT_IDS)
    largest = pc.max(pc.list_flatten(ids)).as_py()
    if largest is None or largest < vocab:
        return
    per_row = [max(r) if r else -1 for r in ids.to_pylist()]
    row = next(i for i, value in enumerate(per_row) if value >= vocab)
    raise DataError(
        f"row {row_ids[row]}: token id {largest} is outside the {vocab}-id vocabulary of {model}; "
        f"were the shards built with this model's tokenizer?"
    )


def verify_rows(
    table: pa.Table,
    model: Any,
    options: VerifyOptions = VerifyOptions(),
    *,
    pad_id: int = 0,
    padding_side: str = "right",
    row_ids: list[int] | None = None,
    model_name: str | None = None,
) -> VerifyResult:
    """Run every probe on ``table`` (maskprep rows) with ``model``.

    ``model`` is a Hub name or local directory (loaded as :class:`VerifyOptions` says), or an
    already-built model object (anything called like a transformers model with a ``config``),
    which is probed under each implementation it can switch to. ``pad_id`` and ``padding_side``
    are the ones the rows were built with (used to pad rows of unequal length).
    """
    import torch

    started = time.perf_counter()
    device = _resolve_device(options.device)
    dtype = _resolve_dtype(options.dtype, device)
    if isinstance(model, (str, os.PathLike)):
        name = str(model)
        module, kind = load_model(name, options, dtype, device)
    else:
        name = model_name or type(model).__name__
        module, kind = model, model_kind(model.config)
        module = module.to(device=device, dtype=getattr(torch, dtype)).eval()
    packed = columns.SEQ_LENS in table.schema.names
    ids = row_ids if row_ids is not None else list(range(table.num_rows))
    vocab = int(module.get_input_embeddings().num_embeddings)
    _check_vocabulary(table, ids, vocab, name)
    checks: list[Check] = []
    for impl in options.attn_implementations:
        why = _set_implementation(module, impl, device, dtype)
        if why is not None:
            checks.append(
                Check(probe="all", attn_implementation=impl, form="-", status="skipped", note=why)
            )
            continue
        for form, form_why in _forms(packed, options, impl, kind):
            if form_why is not None:
                checks.append(
                    Check(
                        probe="all",
                        attn_implementation=impl,
                        form=form,
                        status="skipped",
                        note=form_why,
                    )
                )
                continue
            generator = torch.Generator().manual_seed(options.seed)
            ctx = _Context(module, kind, impl, form, dtype, device, vocab, generator)
            checks.extend(_run_form(ctx, table, ids, options, pad_id, padding_side, packed))
    return VerifyResult(
        model=name,
        kind=kind,
        device=_device_name(device),
        dtype=dtype,
        rows=tuple(ids),
        packed=packed,
        checks=tuple(checks),
        elapsed_s=time.perf_counter() - started,
    )


def verify(
    path: str | os.PathLike[str],
    model: Any,
    options: VerifyOptions = VerifyOptions(),
) -> VerifyResult:
    """Sample rows from the maskprep output at ``path`` and probe ``model`` with them.

    Returns a :class:`VerifyResult`; ``result.ok`` is false when any probe saw a leak. Raises
    :class:`~maskprep.errors.DataError` for an unfinished or empty output and
    :class:`~maskprep.errors.ConfigError` for a model that cannot be loaded.
    """
    from .output.manifest import read_manifest

    manifest = read_manifest(path)
    tokenizer = manifest.get("tokenizer", {})
    table, row_ids = read_rows(Path(path), options.rows, options.seed)
    return verify_rows(
        table,
        model,
        options,
        pad_id=int(tokenizer.get("pad_token_id", 0)),
        padding_side=str(tokenizer.get("padding_side", "right")),
        row_ids=row_ids,
    )
