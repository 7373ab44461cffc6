"""``LeakGuard``: the first batches a model is really fed in training, checked against the output
they came from, and the run stopped before its first optimizer step when that feed leaks.

How it judges a batch (the keyword arguments that reached ``model.forward``):

1. Each fed row is found in the output by its tokens (:class:`OutputRows`), and the row
   as the output holds it (real positions, documents from ``seq_lens``/``position_ids``, labels)
   is laid out where the feed put its tokens (:func:`maskprep.verifying.fed_checks.lay_out`). A
   fed row that is no row of the output stops the run: the guard cannot vouch for it.
2. Static checks, exact and cheap (:mod:`maskprep.verifying.fed_checks`): the fed attention mask
   against the output's documents (``mask_structure``: a 2D mask on a packed row, a 4D mask
   other than the document's block), the fed labels against the output's (``labels_extra``,
   ``labels_missing``) and the fed positions against the model's table.
3. With ``compare`` (the default), a forward comparison: each document of each fed row, fed as
   the batch feeds it, against the document run alone (``unpadded_reference``,
   :func:`maskprep.verifying.probes.probe_unpadded_reference`), in eval mode without gradients,
   the model's train/eval mode put back after.

Why both: the static checks are exact and cost next to nothing, but a feed without an attention
mask leaves the mask to the model, and which mask a model builds (from ``position_ids``, with or
without a KV cache) depends on the model and the transformers release: a table of those facts
would drift as transformers moves, where the forward comparison measures them on the model being
trained. It also sees what no static rule names (a wrapper dropping the mask, positions a model
numbers otherwise). It costs one forward pass of the batch and one per distinct document length,
without gradients, once per checked batch (``batches``, default 1).
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from transformers import TrainerCallback

from .. import columns
from ..collate import row_arrays
from ..column_values import list_column, segment_sum
from ..columns import IGNORE_INDEX
from ..errors import DataError
from ..reading.shards import shard_batches
from ..verifying.fed_checks import FedBatch, Misplaced, fed_arrays, feed_checks, lay_out
from ..verifying.feed import check_positions, describe_feed
from ..verifying.model import model_under_test, quiet_transformers
from ..verifying.options import VerifyOptions
from ..verifying.probes import (
    ProbeContext,
    outputs,
    probe_batch,
    probe_unpadded_reference,
    sliced_head,
)
from ..verifying.results import ProbeResult, Tally, collator_remedy
from ..verifying.sampling import open_rows, take_rows, with_labels

if TYPE_CHECKING:
    import pyarrow as pa

    from ..config import PaddingSide
    from ..storage.options import StorageOptions

#: Keyword arguments trainers add for the loss or their own metrics: not the feed under test.
BOOKKEEPING = ("num_items_in_batch", "fused_lm_head", "output_router_logits", "return_dict")
_HALF = {"bf16": "bfloat16", "fp16": "float16"}


class LeakError(DataError):
    """The feed of a training run leaks (or cannot be checked): raised by :class:`LeakGuard`
    before the model trains on it, with one line naming what and the fix."""


@dataclass(frozen=True)
class GuardReport:
    """One batch a :class:`LeakGuard` checked and found clean: its rows in the output, the
    checks that ran, the largest difference of a document from itself run alone (``None``
    without ``compare``) against its tolerance, and the seconds the check took."""

    rows: tuple[int, ...]
    checks: tuple[str, ...]
    max_diff: float | None
    tolerance: float | None
    elapsed_s: float


class LeakGuard(TrainerCallback):
    """Checks the first ``batches`` batches a model receives in training against the maskprep
    output ``output`` (anything ``maskprep inspect`` reads) and stops the run, before the first
    optimizer step, with a :class:`LeakError` naming the leak and the fix.

    With ``transformers.Trainer`` (and TRL's ``SFTTrainer``): ``callbacks=[LeakGuard(OUT)]``.
    In a plain loop: ``guard.watch(model)`` before it (the same check on the first batches the
    model receives), or ``guard.check(batch, model)`` on a batch. ``compare=False`` skips the
    forward comparison (static checks only). Quiet on a correct feed; ``reports`` lists what was
    checked. ``storage_options`` configure a URL ``output``.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        batches: int = 1,
        compare: bool = True,
        storage_options: Any = None,
    ) -> None:
        if batches < 1:
            raise ValueError(f"batches must be at least 1, not {batches}")
        self.output = str(output)
        self.batches = batches
        self.compare = compare
        self.reports: list[GuardReport] = []
        self._storage_options = storage_options
        self._rows: OutputRows | None = None
        self._handle: Any = None
        self._busy = False
        self._half: str | None = None
        self._left = 0

    # --- transformers.TrainerCallback
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Watch the model the trainer trains (its precision from ``args``)."""
        self._half = next((v for k, v in _HALF.items() if getattr(args, k, False)), None)
        model = kwargs.get("model")
        if model is not None:
            self.watch(model)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop watching."""
        self.unwatch()

    # --- plain loops
    def watch(self, model: Any) -> None:
        """Check the first ``batches`` training-mode forward calls of ``model`` (a forward
        pre-hook, removed once they are checked)."""
        self.unwatch()
        self._left = self.batches
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def unwatch(self) -> None:
        """Remove the hook :meth:`watch` set, if it is still there."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._busy or not module.training:
            return
        self.check(_bound(module, args, kwargs), module)
        self._left -= 1
        if self._left <= 0:
            self.unwatch()

    def check(self, batch: Mapping[str, Any], model: Any) -> GuardReport:
        """Check one batch (the model's keyword arguments) for ``model``; raise
        :class:`LeakError` when it leaks, else return (and keep) what was checked."""
        started = time.perf_counter()
        self._busy = True
        try:
            report = self._check(dict(batch), model)
        finally:
            self._busy = False
        report = replace(report, elapsed_s=time.perf_counter() - started)
        self.reports.append(report)
        return report

    def _output(self) -> OutputRows:
        if self._rows is None:
            self._rows = OutputRows(self.output, self._storage_options)
        return self._rows

    def _stop(self, leaks: list[str], rows: list[int] | None = None) -> LeakError:
        where = f" (rows {', '.join(map(str, rows))} of {self.output})" if rows else ""
        watching = self._handle is not None
        number = self.batches - self._left + 1 if watching else len(self.reports) + 1
        return LeakError(f"LeakGuard: batch {number}{where}: {' | '.join(leaks)}")

    def _check(self, kwargs: dict[str, Any], model: Any) -> GuardReport:
        import torch

        ids = kwargs.get("input_ids")
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise self._stop(["no input_ids of shape (rows, length): nothing the guard can check"])
        fed = self._place({k: v for k, v in kwargs.items() if k not in BOOKKEEPING})
        with quiet_transformers(), model_under_test(model, VerifyOptions()) as subject:
            try:
                check_positions("the feed", fed.kwargs, fed.truth, fed.row_ids, subject.facts)
            except DataError as error:
                raise self._stop([f"positions: {error}"], fed.row_ids) from None
            names = ["positions", "mask_structure"]
            if fed.labels is not None:
                names += ["labels_extra", "labels_missing"]
            facts = self._output().facts
            static, _ = feed_checks(
                [fed],
                causal=subject.kind == "decoder",
                mask_fix=("", ""),
                label_fix=("", ""),
                eos_id=facts.eos_id,
                pad_id=facts.pad_id,
            )
            leaks = [
                f"{c.probe} at row {c.worst_row}: {c.note}" for c in static if c.status == "LEAK"
            ]
            diff = tolerance = None
            if self.compare:
                names.append("unpadded_reference")
                check = self._compare(subject, fed)
                diff, tolerance = check.max_diff, check.tolerance
                if check.status == "LEAK":
                    leaks.append(
                        f"{check.probe} at row {check.worst_row}: a document inside the batch "
                        f"moved {check.max_diff:.3g} from itself run alone (tolerance "
                        f"{check.tolerance:.2g}): {check.note}"
                    )
        if leaks:
            fix = collator_remedy("feed", self.output, describe_feed(fed.kwargs), fed.truth.packed)[
                1
            ]
            raise self._stop([*leaks, f"fix: {fix}"], fed.row_ids)
        return GuardReport(tuple(fed.row_ids), tuple(names), diff, tolerance, 0.0)

    def _place(self, kwargs: dict[str, Any]) -> FedBatch:
        """The fed rows found in the output and laid out as fed."""
        import torch

        rows = self._output()
        fed_ids, fed_labels = fed_arrays(kwargs)
        mask = kwargs.get("attention_mask")
        fed_mask = (
            mask.detach().cpu().numpy()
            if isinstance(mask, torch.Tensor) and tuple(mask.shape) == fed_ids.shape
            else None
        )
        found = rows.find(fed_ids, fed_labels, fed_mask)
        if None in found:
            index = found.index(None)
            raise self._stop(
                [
                    f"fed row {index} is none of the {rows.total} rows of {self.output} (rows of "
                    "another output, or ids a collate function changed: only a masked-LM "
                    "corruption is taken back, from the labels); the guard cannot vouch for it"
                ]
            )
        row_ids = [int(r) for r in found if r is not None]
        facts = rows.facts
        table = with_labels(rows.take(row_ids))
        side = cast("PaddingSide | None", facts.padding_side)
        truth = row_arrays(table, pad_id=facts.pad_id, padding_side=side, packed=facts.packed)
        arrays = lay_out(truth, fed_ids, fed_labels)
        if isinstance(arrays, Misplaced):  # the lookup matched a hash, not the tokens
            raise self._stop(
                [f"fed row {arrays.index} is not row {row_ids[arrays.index]}: its tokens differ"]
            )
        return FedBatch(kwargs, arrays, fed_labels, row_ids)

    def _compare(self, subject: Any, fed: FedBatch) -> ProbeResult:
        """Each fed document against itself run alone (``unpadded_reference``)."""
        import torch

        vocab = subject.facts.vocab_size
        ctx = ProbeContext(
            subject.module,
            subject.kind,
            str(getattr(subject.module.config, "_attn_implementation", "") or "-"),
            "fed",
            _compute_dtype(subject.device, subject.dtype, self._half),
            subject.device,
            vocab,
            torch.Generator().manual_seed(0),
            head=sliced_head(subject.module, vocab) if vocab else None,
            foreign=True,
        )
        batch = probe_batch(ctx, fed.truth, fed.kwargs, fed.row_ids)
        tally = Tally()
        probe_unpadded_reference(ctx, batch, outputs(ctx, batch.kwargs), tally)
        check = tally.verdict("unpadded_reference", ctx.impl, ctx.form, "no real tokens", ("", ""))
        if check.status == "inconclusive":
            warnings.warn(
                f"LeakGuard: {check.note}: on this model the comparison cannot see a leak, so the "
                "feed was judged by the static checks only",
                UserWarning,
                stacklevel=2,
            )
        return check


def _compute_dtype(device: str, dtype: str, half: str | None) -> str:
    """The precision the forward computes in: a trainer's mixed precision, an autocast the
    caller opened, else the parameters' dtype; tolerances follow it."""
    import torch

    if half is not None:
        return half
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if torch.is_autocast_enabled(kind):
        return str(torch.get_autocast_dtype(kind)).removeprefix("torch.")
    return dtype


def _bound(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A forward call's arguments by name (positional ones bound to ``forward``'s signature)."""
    if not args:
        return dict(kwargs)
    try:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    return dict(bound.arguments)


#: Rows hashed at once while indexing: bounded memory whatever the output's size.
INDEX_ROWS = 4096
_BASE = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class _Index:
    keys: np.ndarray  # uint64, sorted
    lengths: np.ndarray  # real tokens of the row of each key
    rows: np.ndarray  # the row of each key


def sequence_keys(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One 64-bit polynomial hash per sequence of ``values`` (the sequences' ids one after
    another, ``lengths`` long, each at least 1), computed without a loop over sequences."""
    starts = np.cumsum(lengths) - lengths
    within = np.arange(len(values)) - np.repeat(starts, lengths)
    longest = int(lengths.max()) if len(lengths) else 0
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(max(longest, 1), _BASE, dtype=np.uint64))
        terms = (values.astype(np.uint64) + np.uint64(1)) * powers[within]
        return np.add.reduceat(terms, starts) if len(lengths) else np.zeros(0, np.uint64)


class OutputRows:
    """An output's rows, found by their tokens: which row of the output a batch's row is, when
    all that reaches the model is its ids (a trainer shuffles, and hands the model no row index).
    ``path`` is what ``maskprep inspect`` reads; ``facts`` what its manifest says about the rows.

    Every row's real tokens (where its ``attention_mask`` is 1) are hashed once, vectorised over
    Arrow batches, into a sorted array of 64-bit keys: ~20 bytes a row, built the first time a
    row is looked up. A fed row is looked up by the real tokens it may hold: where its own 2D mask
    says (if it has one), or its ids with the pad id trimmed from both ends (and one pad put back
    at either end, for pad == EOS or BOS), each also with the ids a masked-LM corruption changed
    taken back from the labels. A hit is only a candidate:
    :func:`maskprep.verifying.fed_checks.lay_out` then holds the fed row to the row read back,
    token for token.
    """

    def __init__(self, path: str, storage_options: StorageOptions | None = None) -> None:
        self.path = path
        self._shards, self._starts, self.facts = open_rows(path, None, storage_options)
        self._index: _Index | None = None

    @property
    def total(self) -> int:
        """Rows in the output."""
        return int(self._starts[-1])

    def _built(self) -> _Index:
        if self._index is not None:
            return self._index
        keys, lengths, rows = [], [], []
        read = (columns.INPUT_IDS, columns.ATTENTION_MASK)
        for shard, start in zip(self._shards, self._starts[:-1], strict=False):
            for offset, batch in shard_batches(shard, INDEX_ROWS, read=read, required=read):
                ids = list_column(batch, columns.INPUT_IDS)
                real = list_column(batch, columns.ATTENTION_MASK).values != 0
                counts = segment_sum(real, ids.offsets).astype(np.int64)
                kept = counts > 0
                keys.append(sequence_keys(ids.values[real], counts[kept]))
                lengths.append(counts[kept])
                rows.append(np.flatnonzero(kept) + int(start) + offset)
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        order = np.argsort(all_keys, kind="stable")
        self._index = _Index(
            keys=all_keys[order],
            lengths=np.concatenate(lengths)[order] if lengths else np.zeros(0, np.int64),
            rows=np.concatenate(rows)[order] if rows else np.zeros(0, np.int64),
        )
        return self._index

    def find(
        self,
        ids: np.ndarray,
        labels: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> list[int | None]:
        """For each fed row of ``ids`` ``(batch, width)`` (``labels`` and ``mask``, when given, of
        that shape), the first output row it may be (``None`` where none): see the class notes
        for what is tried."""
        index = self._built()
        found: list[int | None] = []
        for i in range(len(ids)):
            row = None
            for candidate in self._candidates(ids, labels, mask, i):
                key = sequence_keys(candidate, np.array([len(candidate)]))[0]
                lo = int(np.searchsorted(index.keys, key, side="left"))
                hi = int(np.searchsorted(index.keys, key, side="right"))
                match = index.rows[lo:hi][index.lengths[lo:hi] == len(candidate)]
                if len(match):
                    row = int(match.min())
                    break
            found.append(row)
        return found

    def _candidates(
        self, ids: np.ndarray, labels: np.ndarray | None, mask: np.ndarray | None, i: int
    ) -> Iterator[np.ndarray]:
        versions = [ids[i]]
        if labels is not None:
            versions.append(np.where(labels[i] != IGNORE_INDEX, labels[i], ids[i]))
        pad = self.facts.pad_id
        for row in versions:
            if mask is not None and (mask[i] != 0).any():
                yield row[mask[i] != 0]
            if pad is None:
                yield row
                continue
            kept = np.flatnonzero(row != pad)
            if not len(kept):
                continue
            first, last = int(kept[0]), int(kept[-1]) + 1
            yield row[first:last]
            if last < len(row):
                yield row[first : last + 1]
            if first > 0:
                yield row[first - 1 : last]

    def take(self, rows: list[int]) -> pa.Table:
        """The ``rows`` (in that order, repeats allowed) with every column the probes read."""
        import pyarrow as pa

        unique = np.unique(np.asarray(rows, dtype=np.int64))
        table = take_rows(self._shards, self._starts, unique, self.path)
        where = np.searchsorted(unique, np.asarray(rows, dtype=np.int64))
        return table.take(pa.array(where))
