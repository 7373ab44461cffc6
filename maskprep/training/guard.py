"""``LeakGuard``: the first batches a model is really fed in training, checked against the output
they came from, and the run stopped before its first optimizer step when that feed leaks.

How it judges a batch (the keyword arguments that reached ``model.forward``):

1. Each fed row is found in the output by its tokens (:class:`~.lookup.OutputRows`), and the row
   as the output holds it (real positions, documents from ``seq_lens``/``position_ids``, labels)
   is laid out where the feed put its tokens (:mod:`maskprep.verifying.alignment`). A fed row that
   is no row of the output stops the run: the guard cannot vouch for it.
2. Static checks, exact and cheap: the fed attention mask against the output's documents
   (``mask_structure``, :mod:`maskprep.verifying.fed_mask`: a 2D mask on a packed row, a 4D mask
   other than the document's block), the fed labels against the output's (``labels_extra``,
   ``labels_missing``, :mod:`maskprep.verifying.fed_labels`) and the fed positions against the
   model's table.
3. With ``compare`` (the default), a forward comparison: each document of each fed row, fed as
   the batch feeds it, against the document run alone (``unpadded_reference``,
   :func:`maskprep.verifying.attention.probe_unpadded_reference`), in eval mode without gradients,
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from transformers import TrainerCallback

from ..collate import row_arrays
from ..errors import DataError
from ..verifying.alignment import Misplaced, place_rows, truth_in_feed
from ..verifying.attention import probe_unpadded_reference
from ..verifying.batches import FedBatch, check_positions, on_device
from ..verifying.context import ProbeContext, outputs, sliced_head
from ..verifying.driver import describe_feed
from ..verifying.fed_labels import LabelTally, label_checks
from ..verifying.fed_mask import MaskTally, mask_check
from ..verifying.fixes import collator_remedy
from ..verifying.model import model_under_test, quiet_transformers
from ..verifying.options import VerifyOptions
from ..verifying.results import ProbeResult
from ..verifying.scan import with_labels
from ..verifying.tally import Tally, check_from_tally
from .lookup import OutputRows

if TYPE_CHECKING:
    from ..config import PaddingSide

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
        report = GuardReport(
            report.rows, report.checks, report.max_diff, report.tolerance,
            time.perf_counter() - started,
        )  # fmt: skip
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
        fed = self._place(kwargs, ids)
        feed = {k: v for k, v in fed.kwargs.items() if k not in BOOKKEEPING}
        shown = describe_feed(feed)
        with quiet_transformers(), model_under_test(model, VerifyOptions()) as subject:
            causal = subject.kind == "decoder"
            try:
                check_positions("the feed", kwargs, fed.truth, fed.row_ids, subject.facts)
            except DataError as error:
                raise self._stop([f"positions: {error}"], fed.row_ids) from None
            names = ["positions", "mask_structure"]
            masks = MaskTally()
            masks.add(feed.get("attention_mask"), fed.truth, fed.row_ids, causal=causal)
            structure = mask_check(masks, ("", ""))
            leaks = []
            if structure.status == "LEAK":
                leaks.append(f"{structure.probe} at row {structure.worst_row}: {structure.note}")
            if fed.labels is not None:
                tally = LabelTally()
                eos = self._output().facts.eos_id
                tally.add(fed.labels, fed.truth, fed.row_ids, causal=causal, eos_id=eos)
                pad_is_eos = eos is not None and eos == self._output().facts.pad_id
                for check in label_checks(
                    tally, causal=causal, fix=("", ""), pad_is_eos=pad_is_eos
                ):
                    if check.status == "LEAK":
                        leaks.append(f"{check.probe} at row {check.worst_row}: {check.note}")
                names += ["labels_extra", "labels_missing"]
            diff = tolerance = None
            if self.compare:
                names.append("unpadded_reference")
                check = self._compare(subject, FedBatch(feed, fed.truth, fed.labels, fed.row_ids))
                diff, tolerance = check.max_diff, check.tolerance
                if check.status == "LEAK":
                    leaks.append(
                        f"{check.probe} at row {check.worst_row}: a document inside the batch "
                        f"moved {check.max_diff:.3g} from itself run alone (tolerance "
                        f"{check.tolerance:.2g}): {check.note}"
                    )
        if leaks:
            fix = collator_remedy("feed", self.output, shown, fed.truth.packed)[1]
            raise self._stop([*leaks, f"fix: {fix}"], fed.row_ids)
        return GuardReport(tuple(fed.row_ids), tuple(names), diff, tolerance, 0.0)

    def _place(self, kwargs: dict[str, Any], ids: Any) -> FedBatch:
        """The fed rows found in the output and laid out as fed."""
        import torch

        rows = self._output()
        fed_ids = ids.detach().cpu().numpy().astype(np.int64)
        labels = kwargs.get("labels")
        fed_labels = (
            labels.detach().cpu().numpy().astype(np.int64)
            if isinstance(labels, torch.Tensor) and labels.shape == ids.shape
            else None
        )
        mask = kwargs.get("attention_mask")
        fed_mask = (
            mask.detach().cpu().numpy()
            if isinstance(mask, torch.Tensor) and mask.shape == ids.shape
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
        placed = place_rows(truth, fed_ids, fed_labels)
        if isinstance(placed, Misplaced):  # the lookup matched a hash, not the tokens
            raise self._stop(
                [f"fed row {placed.index} is not row {row_ids[placed.index]}: its tokens differ"]
            )
        arrays = truth_in_feed(truth, placed, fed_ids)
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
        batch = on_device(ctx, fed)
        tally = Tally()
        probe_unpadded_reference(ctx, batch, outputs(ctx, batch.kwargs), tally)
        check = check_from_tally("unpadded_reference", ctx.impl, ctx.form, tally, "no real tokens")
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
