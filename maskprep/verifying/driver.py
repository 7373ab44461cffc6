"""``maskprep.verify``: rows sampled from the data (or every row), collated exactly as
:func:`maskprep.collate.for_model` sets the collator up for the model, or by a caller's collate
function (:mod:`.feed`), checked against the model's positions and vocabulary, and every probe run
under each attention implementation and feed form.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..collate import Collator, collate, for_model, row_arrays
from ..errors import ConfigError, DataError, one_line
from ..extras import require_extra
from ..reading.reach import model_limit, row_reach, tokenizer_limit
from .fed_checks import FedBatch, feed_checks
from .feed import (
    CollateFeed,
    collate_feed,
    describe_feed,
    fed_batches,
    handed_columns,
    name_row,
)
from .model import (
    Subject,
    current_implementation,
    device_name,
    model_under_test,
    quiet_transformers,
    set_implementation,
)
from .options import ATTN_IMPLEMENTATIONS, PROBES, ROWS_ALL, VerifyOptions
from .probes import (
    ProbeBatch,
    ProbeContext,
    outputs,
    probe_batch,
    probe_causal,
    probe_cross_document,
    probe_labels,
    probe_pad_invariance,
    probe_unpadded_reference,
    sliced_head,
)
from .results import Feed, ProbeResult, Tally, VerifyResult, collator_remedy, remedy
from .sampling import (
    DataFacts,
    Sample,
    padding_attended,
    reach_findings,
    sample_rows,
    scan_rows,
    with_labels,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows read at once when every row of the data is probed.
CHUNK_ROWS = 1024


def verify(
    path: str | os.PathLike[str],
    model: Any,
    options: VerifyOptions = VerifyOptions(),
    *,
    stdin: BinaryIO | None = None,
    collate: Any = None,
) -> VerifyResult:
    """Sample rows from the data at ``path`` (every row with ``options.rows="all"``) and probe
    ``model`` with them.

    ``path`` is what ``maskprep inspect`` reads: a build output directory, a directory of shards
    without a manifest (data another tool made), one Parquet or Arrow shard, or ``"-"`` for Arrow
    IPC (stream or file) on ``stdin``. ``model`` is a Hub name, a local directory or a model
    object (see :func:`verify_rows`). ``collate`` judges a collate function's batches instead of
    maskprep's collator's: a function (a list of row dicts → a dict of model keyword arguments,
    as ``Trainer(data_collator=)`` takes), or a SPEC string ``path/to/file.py:NAME`` /
    ``package.module:NAME`` naming one; it is handed the columns ``options.collate_columns``
    says. Returns a :class:`VerifyResult`; ``result.ok`` is false when any probe saw a leak.
    Raises :class:`~maskprep.errors.DataError` for data that cannot be probed (no rows, an
    unfinished build, a row beyond the model's position table, token ids outside its
    vocabulary) and :class:`~maskprep.errors.ConfigError` for a model that cannot be loaded, or a
    collate function that cannot be loaded, raises or returns what no model takes.
    """
    # The collate function is loaded first: a SPEC that names none fails before any data is read.
    feed = None if collate is None else collate_feed(collate, options.collate_columns)  # type: ignore[arg-type]
    every = options.rows == ROWS_ALL
    sample = sample_rows(
        str(path),
        None if every else int(options.rows),
        options.longest,
        options.seed,
        stdin,
        options.storage_options,
    )
    # What the options say of the rows overrides what the data says.
    facts = replace(
        sample.facts,
        pad_id=options.pad_id if options.pad_id is not None else sample.facts.pad_id,
        padding_side=options.padding_side or sample.facts.padding_side,
        packed=options.packed if options.packed is not None else sample.facts.packed,
    )
    return _verify(replace(sample, facts=facts), model, options, None, feed)


def verify_rows(
    table: pa.Table,
    model: Any,
    options: VerifyOptions = VerifyOptions(),
    *,
    pad_id: int | None = None,
    padding_side: str | None = None,
    row_ids: list[int] | None = None,
    model_name: str | None = None,
    collate: Any = None,
    eos_id: int | None = None,
) -> VerifyResult:
    """Run every probe on ``table`` (rows in maskprep's columns) with ``model``.

    ``model`` is a Hub name or local directory (loaded as :class:`VerifyOptions` says), or a
    model object (anything called like a transformers model, with a ``config``). A model object
    is probed where it is and in its dtype unless ``options`` name others (a converted copy is
    probed then); its parameters, gradients, train/eval mode and attention implementation are as
    they were when this returns. ``pad_id`` and ``padding_side`` (else ``options``', else what
    the rows' padding shows) are the ones the rows were built with, used to pad rows of unequal
    length. ``collate`` is as :func:`verify` takes it; ``eos_id`` lets its label check count
    the real EOS the feed trains.
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
        eos_id=eos_id,
    )
    rows = Sample(
        source="",
        table=table,
        row_ids=tuple(ids),
        longest=(),
        total_rows=table.num_rows,
        reach=int(reach[widest]) if len(reach) else 0,
        reach_row=ids[widest] if ids else 0,
        facts=facts,
    )
    feed = None if collate is None else collate_feed(collate, options.collate_columns)  # type: ignore[arg-type]
    return _verify(rows, model, options, model_name, feed)


def _verify(
    rows: Sample,
    model: Any,
    options: VerifyOptions,
    model_name: str | None,
    feed: CollateFeed | None,
) -> VerifyResult:
    started = time.perf_counter()
    if not rows.row_ids:
        raise DataError(f"{rows.source or 'the table'}: no rows to probe")
    require_extra("torch", "verify", "verify")
    import torch

    with quiet_transformers(options.progress), model_under_test(model, options) as subject:
        name = model_name or subject.name
        vocab = subject.facts.vocab_size
        if vocab is None:
            raise ConfigError(f"{name}: the model has no input embeddings to look token ids up in")
        scan = scan_rows(lambda: rows.chunks(CHUNK_ROWS), vocab, name, rows.facts.pad_id)
        packed = rows.facts.packed if rows.facts.packed is not None else scan.packed
        limit = model_limit(subject.facts)
        findings = reach_findings(
            limit,
            tokenizer_limit(rows.facts.model_max_length, rows.facts.tokenizer or "(unnamed)"),
            rows.reach,
            rows.reach_row,
            packed,
            scan.width,
        )
        collator = for_model(
            subject.facts,
            pad_id=rows.facts.pad_id,
            padding_side=rows.facts.padding_side,
            packed=packed,
            check_labels=False,
        )
        if options.pad_position_ids is not None:
            collator = replace(collator, pad_position_ids=options.pad_position_ids)
        pad_id = collator.pad_id if collator.pad_id is not None else scan.seen_pad_id()
        checks = [padding_attended(scan, pad_id)]
        kept = handed_columns(subject.module, list(scan.names), feed.handed) if feed else []
        runner = _FormRunner(rows, options, collator, subject, packed, scan.labelled, feed, kept)
        if feed is not None:
            fed_checks, warned = runner.static_checks(pad_id)
            checks.extend(fed_checks)
            findings += warned
        head = sliced_head(subject.module, vocab)
        for impl in _implementations(options, subject):
            why = set_implementation(subject.module, impl, subject.device, subject.dtype)
            if why is not None:
                checks.append(_skipped(impl, "-", why))
                continue
            for form, form_why in _forms(packed, options, impl, subject.kind, feed):
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
                    foreign=feed is not None,
                )
                checks.extend(runner.run(ctx))
    return VerifyResult(
        model=name,
        kind=subject.kind,
        device=device_name(subject.device),
        dtype=subject.dtype,
        rows=rows.row_ids,
        packed=packed,
        checks=tuple(c for c in checks if c is not None),
        elapsed_s=time.perf_counter() - started,
        source=rows.source,
        longest=rows.longest,
        reach=rows.reach,
        position_limit=limit.positions if limit is not None and limit.hard else None,
        warnings=findings,
        total_rows=rows.total_rows,
        collate=feed.name if feed is not None else "",
    )


def _implementations(options: VerifyOptions, subject: Subject) -> tuple[str, ...]:
    """The attention implementations to probe: the ones asked for; by default every one on a
    CUDA device and, on a CPU, the one the model is set to (what training on it runs)."""
    if options.attn_implementations is not None:
        return options.attn_implementations
    if subject.device.startswith("cuda"):
        return ATTN_IMPLEMENTATIONS
    return (current_implementation(subject.module) or "sdpa",)


def _skipped(impl: str, form: str, why: str) -> ProbeResult:
    return ProbeResult(probe="all", attn_implementation=impl, form=form, status="skipped", note=why)


def _forms(
    packed: bool, options: VerifyOptions, impl: str, kind: str, feed: CollateFeed | None
) -> list[tuple[str, str | None]]:
    """(form, why skipped) pairs to run under ``impl``: a caller's collate function is one
    form, named after it."""
    if feed is not None:
        return [(feed.name.rpartition(":")[2] or feed.name, None)]
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


@dataclass(frozen=True)
class _FormRunner:
    """Runs every probe on the rows under one context (attention implementation and form): on
    maskprep's collator's batches, or on ``feed``'s (handed the columns ``kept``)."""

    rows: Sample
    options: VerifyOptions
    collator: Collator
    subject: Subject
    packed: bool
    labelled: bool
    feed: CollateFeed | None
    kept: list[str]

    def _fed(self) -> Iterator[FedBatch]:
        assert self.feed is not None
        return fed_batches(
            self.rows.chunks,
            self.options.batch_size,
            self.feed,
            self.kept,
            self.collator,
            self.packed,
            self.subject.module,
            self.subject.facts,
        )

    def static_checks(self, pad_id: int | None) -> tuple[list[ProbeResult], tuple[str, ...]]:
        """The feed's mask and label checks (no forward pass), and warnings about what it
        returns."""
        assert self.feed is not None
        source = self.rows.source or "OUT"
        return feed_checks(
            self._fed(),
            causal=self.subject.kind == "decoder",
            mask_fix=collator_remedy("cross_document", source, "", self.packed),
            label_fix=collator_remedy("labels", source, "", self.packed),
            eos_id=self.rows.facts.eos_id,
            pad_id=pad_id,
            skipped=None if self.labelled else "the rows have no labels column",
            unlabelled=f"{self.feed.name} returns no labels",
        )

    def _batches(self, ctx: ProbeContext) -> Iterator[ProbeBatch]:
        """The batches to probe: the feed's, or maskprep's collator's for the context's form
        (the label checks aside: faulty labels are the label probes' to find)."""
        if self.feed is not None:
            for fed in self._fed():
                yield probe_batch(ctx, fed.truth, fed.kwargs, fed.row_ids)
            return
        for table, ids in self.rows.chunks(self.options.batch_size):
            part = with_labels(table)
            try:
                arrays = row_arrays(
                    part,
                    pad_id=self.collator.pad_id,
                    padding_side=self.collator.padding_side,
                    packed=self.packed,
                )
                kwargs = collate(
                    part,
                    pad_id=self.collator.pad_id,
                    padding_side=self.collator.padding_side,
                    packed=self.packed,
                    form=ctx.form if self.packed else "position_ids",  # type: ignore[arg-type]
                    causal=ctx.causal,
                    dtype=ctx.dtype,
                    pad_position_ids=self.collator.pad_position_ids,
                    position_offset=self.collator.position_offset,
                )
            except DataError as error:
                raise DataError(name_row(str(error), ids)) from None
            yield probe_batch(ctx, arrays, kwargs, ids)

    def run(self, ctx: ProbeContext) -> list[ProbeResult]:
        """Every probe's :class:`ProbeResult` under ``ctx``."""
        import torch

        tallies = {probe: Tally() for probe in PROBES}
        left_padded = False
        fed_positions = False
        fed_labels = False
        shapes: dict[str, None] = {}
        for batch in self._batches(ctx):
            pads_first = (~batch.real).long().cummax(dim=-1).values.bool() & batch.real
            left_padded |= bool(pads_first.any())
            fed_positions |= "position_ids" in batch.kwargs
            shapes[describe_feed(batch.kwargs)] = None
            base = self._base(ctx, batch)
            timed = [
                ("pad_invariance", probe_pad_invariance),
                ("unpadded_reference", probe_unpadded_reference),
            ]
            if self.packed:
                timed.append(("cross_document", probe_cross_document))
            if ctx.causal:
                timed.append(("causal", probe_causal))
            for name, probe in timed:
                t0 = time.perf_counter()
                probe(ctx, batch, base, tallies[name])
                tallies[name].elapsed_s += time.perf_counter() - t0
            if self.labelled and "labels" in batch.kwargs:
                fed_labels = True
                t0 = time.perf_counter()
                with torch.enable_grad():
                    probe_labels(ctx, batch, tallies["labels_loss"], tallies["labels_gradient"])
                tallies["labels_loss"].elapsed_s += time.perf_counter() - t0
        reasons = {
            "pad_invariance": "rows have no padding",
            "unpadded_reference": "rows have no real tokens",
            "labels_loss": "no trained positions, or the model computes no loss",
            "labels_gradient": "rows have no padding",
            "cross_document": "no row holds two documents"
            if self.packed
            else "rows are not packed",
            "causal": "rows too short" if ctx.causal else "encoder: attention is bidirectional",
        }
        if not self.labelled or not fed_labels:
            why = "the rows have no labels column"
            if self.labelled and self.feed is not None:
                why = f"{self.feed.name} returns no labels"
            reasons.update({"labels_loss": why, "labels_gradient": why})
        if self.feed is not None:
            fed = "; ".join(shapes)
            fixes = {
                probe: collator_remedy(probe, self.rows.source or "OUT", fed, self.packed)
                for probe in PROBES
            }
        else:
            shape = Feed(
                packed=self.packed,
                left_padded=left_padded,
                position_ids=fed_positions,
                form=ctx.form,
                causal=ctx.causal,
                absolute=self.subject.facts.absolute_positions,
            )
            fixes = {probe: remedy(probe, shape) for probe in PROBES}
        return [
            tallies[probe].verdict(probe, ctx.impl, ctx.form, reasons[probe], fixes[probe])
            for probe in PROBES
        ]

    def _base(self, ctx: ProbeContext, batch: ProbeBatch) -> Any:
        """The outputs of the batch as fed; a caller's feed the model cannot run is one line."""
        if self.feed is None:
            return outputs(ctx, batch.kwargs)
        try:
            return outputs(ctx, batch.kwargs)
        except Exception as error:  # the feed is the caller's: the model may refuse it anyhow
            raise ConfigError(
                f"{self.feed.name}: the model's forward pass raised {type(error).__name__} on "
                f"what it returned for rows {', '.join(map(str, batch.row_ids[:4]))}: "
                f"{one_line(error)}"
            ) from None
