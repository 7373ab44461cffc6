"""``maskprep.verify``: rows sampled from an output, collated as training feeds them, and every
probe run under each attention implementation and feed form."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import columns
from ..collate import collate, row_arrays
from ..errors import DataError
from ..extras import require_extra
from .attention import (
    probe_causal,
    probe_cross_document,
    probe_pad_invariance,
    probe_unpadded_reference,
)
from .context import ProbeBatch, ProbeContext, outputs
from .labels import probe_labels
from .model import (
    device_name,
    load_model,
    model_kind,
    resolve_device,
    resolve_dtype,
    set_implementation,
)
from .options import PROBES, VerifyOptions
from .results import Check, VerifyResult
from .sampling import read_rows
from .tally import Tally, check_from_tally

if TYPE_CHECKING:
    import pyarrow as pa


def _batches(
    table: pa.Table,
    row_ids: list[int],
    ctx: ProbeContext,
    size: int,
    pad_id: int,
    side: str,
    **kw: Any,
) -> Iterator[ProbeBatch]:
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
        yield ProbeBatch(
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
    ctx: ProbeContext,
    table: pa.Table,
    row_ids: list[int],
    options: VerifyOptions,
    pad_id: int,
    side: str,
    packed: bool,
) -> list[Check]:
    import torch

    tallies = {probe: Tally() for probe in PROBES}
    extra = {} if packed else {"pad_position_ids": options.pad_position_ids}
    for batch in _batches(table, row_ids, ctx, options.batch_size, pad_id, side, **extra):
        base = outputs(ctx, batch.kwargs)
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
        check_from_tally(probe, ctx.impl, ctx.form, tallies[probe], reasons[probe])
        for probe in PROBES
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
    require_extra("torch", "verify", "verify")
    import torch

    started = time.perf_counter()
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
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
        why = set_implementation(module, impl, device, dtype)
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
            ctx = ProbeContext(module, kind, impl, form, dtype, device, vocab, generator)
            checks.extend(_run_form(ctx, table, ids, options, pad_id, padding_side, packed))
    return VerifyResult(
        model=name,
        kind=kind,
        device=device_name(device),
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
    from ..output.manifest import read_manifest

    tokenizer = read_manifest(path).tokenizer
    table, row_ids = read_rows(Path(path), options.rows, options.seed)
    return verify_rows(
        table,
        model,
        options,
        pad_id=tokenizer.pad_token_id,
        padding_side=tokenizer.padding_side,
        row_ids=row_ids,
    )
