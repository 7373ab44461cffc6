"""``maskprep.verify``: rows sampled from the data, collated exactly as
:func:`maskprep.collate.for_model` sets the collator up for the model, checked against the model's
positions and vocabulary, and every probe run under each attention implementation and feed form.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .. import columns
from ..checks.positions import model_limit, row_reach, tokenizer_limit
from ..collate import Collator, collate, for_model, row_arrays
from ..column_values import list_values, outside_ids
from ..columns import IGNORE_INDEX
from ..errors import ConfigError, DataError
from ..extras import require_extra
from .attention import (
    probe_causal,
    probe_cross_document,
    probe_pad_invariance,
    probe_unpadded_reference,
)
from .context import ProbeBatch, ProbeContext, outputs, sliced_head
from .fixes import Feed, remedy
from .labels import probe_labels
from .model import (
    Subject,
    current_implementation,
    device_name,
    model_under_test,
    quiet_transformers,
    set_implementation,
)
from .options import ATTN_IMPLEMENTATIONS, PROBES, VerifyOptions
from .reach import reach_findings
from .results import Check, VerifyResult
from .sampling import DataFacts, sample_rows
from .tally import Tally, check_from_tally

if TYPE_CHECKING:
    import pyarrow as pa

#: The data check that runs beside the probes: runs of the pad id that the mask marks real.
PADDING_ATTENDED = "padding-attended"


@dataclass(frozen=True)
class _Rows:
    """The rows to probe and what is known about them."""

    table: pa.Table
    row_ids: list[int]
    facts: DataFacts
    reach: int
    reach_row: int
    longest: tuple[int, ...] = ()
    source: str = ""
    labelled: bool = True


def verify(
    path: str | os.PathLike[str],
    model: Any,
    options: VerifyOptions = VerifyOptions(),
    *,
    stdin: BinaryIO | None = None,
) -> VerifyResult:
    """Sample rows from the data at ``path`` and probe ``model`` with them.

    ``path`` is what ``maskprep inspect`` reads: a build output directory, a directory of shards
    without a manifest (data another tool made), one Parquet or Arrow shard, or ``"-"`` for Arrow
    IPC (stream or file) on ``stdin``. ``model`` is a Hub name, a local directory or a model
    object (see :func:`verify_rows`). Returns a :class:`VerifyResult`; ``result.ok`` is false when
    any probe saw a leak. Raises :class:`~maskprep.errors.DataError` for data that cannot be
    probed (no rows, an unfinished build, a row beyond the model's position table, token ids
    outside its vocabulary) and :class:`~maskprep.errors.ConfigError` for a model that cannot be
    loaded.
    """
    sample = sample_rows(
        str(path), options.rows, options.longest, options.seed, stdin, options.storage_options
    )
    facts = DataFacts(
        pad_id=options.pad_id if options.pad_id is not None else sample.facts.pad_id,
        padding_side=options.padding_side or sample.facts.padding_side,
        packed=options.packed if options.packed is not None else sample.facts.packed,
        model_max_length=sample.facts.model_max_length,
        tokenizer=sample.facts.tokenizer,
    )
    rows = _Rows(
        table=sample.table,
        row_ids=list(sample.row_ids),
        facts=facts,
        reach=sample.reach,
        reach_row=sample.reach_row,
        longest=sample.longest,
        source=str(path),
    )
    return _verify(rows, model, options, None)


def verify_rows(
    table: pa.Table,
    model: Any,
    options: VerifyOptions = VerifyOptions(),
    *,
    pad_id: int | None = None,
    padding_side: str | None = None,
    row_ids: list[int] | None = None,
    model_name: str | None = None,
) -> VerifyResult:
    """Run every probe on ``table`` (rows in maskprep's columns) with ``model``.

    ``model`` is a Hub name or local directory (loaded as :class:`VerifyOptions` says), or a
    model object (anything called like a transformers model, with a ``config``). A model object
    is probed where it is and in its dtype unless ``options`` name others (a converted copy is
    probed then); its parameters, gradients, train/eval mode and attention implementation are as
    they were when this returns. ``pad_id`` and ``padding_side`` (else ``options``', else what
    the rows' padding shows) are the ones the rows were built with, used to pad rows of unequal
    length.
    """
    reach, _, _ = row_reach(table)
    widest = int(np.argmax(reach)) if len(reach) else 0
    ids = row_ids if row_ids is not None else list(range(table.num_rows))
    if len(ids) != table.num_rows:
        raise ConfigError(f"row_ids names {len(ids)} rows, but the table has {table.num_rows}")
    facts = DataFacts(
        pad_id=pad_id if pad_id is not None else options.pad_id,
        padding_side=padding_side or options.padding_side,
        packed=options.packed,
    )
    rows = _Rows(
        table=table,
        row_ids=ids,
        facts=facts,
        reach=int(reach[widest]) if len(reach) else 0,
        reach_row=ids[widest] if ids else 0,
    )
    return _verify(rows, model, options, model_name)


def _verify(
    rows: _Rows, model: Any, options: VerifyOptions, model_name: str | None
) -> VerifyResult:
    started = time.perf_counter()
    if rows.table.num_rows == 0:
        raise DataError(f"{rows.source or 'the table'}: no rows to probe")
    require_extra("torch", "verify", "verify")
    import torch

    rows = _with_labels(rows)
    with quiet_transformers(options.progress), model_under_test(model, options) as subject:
        name = model_name or subject.name
        packed = _packed(rows)
        limit = model_limit(subject.facts)
        findings = reach_findings(
            limit,
            tokenizer_limit(rows.facts.model_max_length, rows.facts.tokenizer or "(unnamed)"),
            rows.reach,
            rows.reach_row,
            packed,
            _width(rows.table),
        )
        vocab = subject.facts.vocab_size
        if vocab is None:
            raise ConfigError(f"{name}: the model has no input embeddings to look token ids up in")
        _check_vocabulary(rows.table, rows.row_ids, vocab, name)
        collator = for_model(
            subject.facts,
            pad_id=rows.facts.pad_id,
            padding_side=rows.facts.padding_side,
            packed=packed,
            check_labels=False,
        )
        if options.pad_position_ids is not None:
            collator = replace(collator, pad_position_ids=options.pad_position_ids)
        pad_id = collator.pad_id if collator.pad_id is not None else _seen_pad_id(rows.table)
        checks = [_padding_attended(rows, pad_id)]
        head = sliced_head(subject.module, vocab)
        for impl in _implementations(options, subject):
            why = set_implementation(subject.module, impl, subject.device, subject.dtype)
            if why is not None:
                checks.append(_skipped(impl, "-", why))
                continue
            for form, form_why in _forms(packed, options, impl, subject.kind):
                if form_why is not None:
                    checks.append(_skipped(impl, form, form_why))
                    continue
                ctx = ProbeContext(
                    subject.module,
                    subject.kind,
                    impl,
                    form,
                    subject.dtype,
                    subject.device,
                    vocab,
                    torch.Generator().manual_seed(options.seed),
                    head=head,
                    position_offset=collator.position_offset,
                )
                checks.extend(_run_form(ctx, rows, options, collator, subject, packed))
    return VerifyResult(
        model=name,
        kind=subject.kind,
        device=device_name(subject.device),
        dtype=subject.dtype,
        rows=tuple(rows.row_ids),
        packed=packed,
        checks=tuple(c for c in checks if c is not None),
        elapsed_s=time.perf_counter() - started,
        source=rows.source,
        longest=rows.longest,
        reach=rows.reach,
        position_limit=limit.positions if limit is not None and limit.hard else None,
        warnings=findings,
    )


def _with_labels(rows: _Rows) -> _Rows:
    """Rows without a ``labels`` column (data another tool made, labelled by its collator) get
    labels that train nothing: the attention probes still run, the label probes are skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if columns.LABELS in rows.table.schema.names:
        return rows
    ids = rows.table.column(columns.INPUT_IDS).combine_chunks()
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    values = np.full(int(offsets[-1]), IGNORE_INDEX, dtype=np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    table = rows.table.append_column(columns.LABELS, labels)
    return replace(rows, table=table, labelled=False)


def _packed(rows: _Rows) -> bool:
    """Whether the rows are packs: as known, else from their columns."""
    if rows.facts.packed is not None:
        return rows.facts.packed
    names = rows.table.schema.names
    return columns.SEQ_LENS in names or columns.POSITION_IDS in names


def _width(table: pa.Table) -> int:
    import pyarrow.compute as pc

    widths = pc.list_value_length(table.column(columns.INPUT_IDS))
    return int(pc.max(widths).as_py() or 0)


def _implementations(options: VerifyOptions, subject: Subject) -> tuple[str, ...]:
    """The attention implementations to probe: the ones asked for; by default every one on a
    CUDA device and, on a CPU, the one the model is set to (what training on it runs)."""
    if options.attn_implementations is not None:
        return options.attn_implementations
    if subject.device.startswith("cuda"):
        return ATTN_IMPLEMENTATIONS
    return (current_implementation(subject.module) or "sdpa",)


def _skipped(impl: str, form: str, why: str) -> Check:
    return Check(probe="all", attn_implementation=impl, form=form, status="skipped", note=why)


def _batches(
    rows: _Rows, ctx: ProbeContext, size: int, collator: Collator, packed: bool
) -> Iterator[ProbeBatch]:
    """The rows in batches, collated as ``collator`` does for the context's form (the label
    checks aside: faulty labels are the label probes' to find)."""
    import torch

    size = min(size, rows.table.num_rows)  # Arrow slices take a C long; the rows are fewer
    for start in range(0, rows.table.num_rows, size):
        part = rows.table.slice(start, size)
        batch_ids = rows.row_ids[start : start + size]
        settings = {
            "pad_id": collator.pad_id,
            "padding_side": collator.padding_side,
            "packed": packed,
        }
        try:
            arrays = row_arrays(part, **settings)  # type: ignore[arg-type]
            kwargs = collate(
                part,
                **settings,  # type: ignore[arg-type]
                form=ctx.form if packed else "position_ids",  # type: ignore[arg-type]
                causal=ctx.causal,
                dtype=ctx.dtype,
                pad_position_ids=collator.pad_position_ids,
                position_offset=collator.position_offset,
            )
        except DataError as error:
            raise DataError(_name_row(str(error), batch_ids)) from None
        kwargs = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in kwargs.items()}
        yield ProbeBatch(
            arrays=arrays,
            kwargs=kwargs,
            real=torch.from_numpy(arrays.attention_mask > 0).to(ctx.device),
            segments=torch.from_numpy(arrays.segments).to(ctx.device),
            row_ids=batch_ids,
        )


def _name_row(message: str, batch_ids: list[int]) -> str:
    """A collator's message about row ``i`` of a batch, naming the row in the data instead."""
    found = re.match(r"row (\d+)\b", message)
    if found is None or int(found.group(1)) >= len(batch_ids):
        return message
    return f"row {batch_ids[int(found.group(1))]}{message[found.end() :]}"


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
    rows: _Rows,
    options: VerifyOptions,
    collator: Collator,
    subject: Subject,
    packed: bool,
) -> list[Check]:
    import torch

    tallies = {probe: Tally() for probe in PROBES}
    left_padded = False
    fed_positions = False
    for batch in _batches(rows, ctx, options.batch_size, collator, packed):
        pads_first = (~batch.real).long().cummax(dim=-1).values.bool() & batch.real
        left_padded |= bool(pads_first.any())
        fed_positions |= "position_ids" in batch.kwargs
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
        if rows.labelled:
            t0 = time.perf_counter()
            with torch.enable_grad():
                probe_labels(ctx, batch, tallies["labels-loss"], tallies["labels-gradient"])
            tallies["labels-loss"].elapsed_s += time.perf_counter() - t0
    no_labels = "the rows have no labels column"
    reasons = {
        "pad-invariance": "rows have no padding",
        "unpadded-reference": "rows have no real tokens",
        "labels-loss": "no trained positions, or the model computes no loss",
        "labels-gradient": "rows have no padding",
        "cross-document": "no row holds two documents" if packed else "rows are not packed",
        "causal": "rows too short" if ctx.causal else "encoder: attention is bidirectional",
    }
    if not rows.labelled:
        reasons.update({"labels-loss": no_labels, "labels-gradient": no_labels})
    feed = Feed(
        packed=packed,
        left_padded=left_padded,
        position_ids=fed_positions,
        form=ctx.form,
        causal=ctx.causal,
        absolute=subject.facts.absolute_positions,
    )
    return [
        check_from_tally(
            probe, ctx.impl, ctx.form, tallies[probe], reasons[probe], remedy(probe, feed)
        )
        for probe in PROBES
    ]


def _check_vocabulary(table: pa.Table, row_ids: list[int], vocab: int, model: str) -> None:
    """Fail in one line when a token id cannot be looked up in the model's embeddings."""
    values, offsets = list_values(table.column(columns.INPUT_IDS), columns.INPUT_IDS, row_ids)
    bad = outside_ids(values, vocab)
    if not bad.any():
        return
    at = int(np.argmax(bad))
    row = int(np.searchsorted(offsets, at, side="right")) - 1
    raise DataError(
        f"row {row_ids[row]}: token id {values[at]} is outside the {vocab}-id vocabulary of "
        f"{model}; were the rows built with this model's tokenizer?"
    )


def _seen_pad_id(table: pa.Table) -> int | None:
    """The one id the rows' padding (mask 0) holds; ``None`` when none or several show."""
    import pyarrow.compute as pc

    ids = pc.list_flatten(table.column(columns.INPUT_IDS)).to_numpy(zero_copy_only=False)
    mask = pc.list_flatten(table.column(columns.ATTENTION_MASK)).to_numpy(zero_copy_only=False)
    if len(ids) != len(mask):
        return None
    seen = np.unique(ids[mask == 0])
    return int(seen[0]) if len(seen) == 1 else None


def _padding_attended(rows: _Rows, pad_id: int | None) -> Check | None:
    """Rows whose mask is 1 over a run of two or more pad ids at their end (or start): the model
    attends to padding that the probes, which take the mask's word for what is real, cannot see.
    A single pad id at an end is allowed: with ``pad == eos`` it is the real EOS. ``None`` when
    the pad id is not known."""
    if pad_id is None:
        return None
    ids = rows.table.column(columns.INPUT_IDS).to_pylist()
    masks = rows.table.column(columns.ATTENTION_MASK).to_pylist()
    offenders: list[tuple[int, int]] = []
    for row, (row_ids, mask) in zip(rows.row_ids, zip(ids, masks, strict=True), strict=True):
        if len(row_ids) != len(mask):
            continue  # the collator refuses the row, naming it, when the probes feed it
        attended_pad = (np.asarray(row_ids) == pad_id) & (np.asarray(mask) != 0)
        run = max(_run_length(attended_pad), _run_length(attended_pad[::-1]))
        if run >= 2:
            offenders.append((row, run))
    if not offenders:
        return Check(
            probe=PADDING_ATTENDED,
            attn_implementation="-",
            form="-",
            status="pass",
            positions=sum(len(r) for r in ids),
            note=f"no run of pad id {pad_id} attended",
        )
    positions = sum(run for _, run in offenders)
    return Check(
        probe=PADDING_ATTENDED,
        attn_implementation="-",
        form="-",
        status="LEAK",
        positions=positions,
        worst_row=offenders[0][0],
        leaking=len(offenders),
        note=(
            f"attention_mask is 1 over {positions} positions holding the pad id {pad_id} at the "
            "ends of rows: the model attends to padding; fix: the mask must be 0 at padding "
            "(maskprep build derives it from positions, never from ids)"
        ),
        fix="attention_mask",
    )


def _run_length(flags: np.ndarray) -> int:
    """How many of ``flags`` are true from its end."""
    false = np.flatnonzero(~flags)
    return int(len(flags) - 1 - false[-1]) if len(false) else len(flags)
