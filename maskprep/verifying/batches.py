"""The batches the probes run on: maskprep's collator's (:func:`own_batches`), or a caller's
collate function's (:func:`fed_batches`, turned into probe batches by :func:`on_device`), each
with the output's truth about its rows (real positions, documents) laid out as fed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..collate import Collator, RowArrays, collate, row_arrays
from ..collate.models import ModelFacts
from ..errors import ConfigError, DataError
from .alignment import Misplaced, place_rows, truth_in_feed
from .context import ProbeBatch, ProbeContext
from .feed import CollateFeed, call_collate, handed_rows
from .scan import with_labels

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows in tables with their indices in the data (what ``_Rows.chunks`` gives).
Chunks = Callable[[int], Iterator[tuple["pa.Table", list[int]]]]


def name_row(message: str, batch_ids: list[int]) -> str:
    """A collator's message about row ``i`` of a batch, naming the row in the data instead."""
    found = re.match(r"row (\d+)\b", message)
    if found is None or int(found.group(1)) >= len(batch_ids):
        return message
    return f"row {batch_ids[int(found.group(1))]}{message[found.end() :]}"


def _truth(part: pa.Table, batch_ids: list[int], collator: Collator, packed: bool) -> RowArrays:
    try:
        return row_arrays(
            part, pad_id=collator.pad_id, padding_side=collator.padding_side, packed=packed
        )
    except DataError as error:
        raise DataError(name_row(str(error), batch_ids)) from None


def _probe_batch(
    ctx: ProbeContext, arrays: RowArrays, kwargs: dict[str, Any], batch_ids: list[int]
) -> ProbeBatch:
    import torch

    kwargs = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in kwargs.items()}
    return ProbeBatch(
        arrays=arrays,
        kwargs=kwargs,
        real=torch.from_numpy(arrays.attention_mask > 0).to(ctx.device),
        segments=torch.from_numpy(arrays.segments).to(ctx.device),
        row_ids=batch_ids,
    )


def own_batches(
    chunks: Chunks, ctx: ProbeContext, size: int, collator: Collator, packed: bool
) -> Iterator[ProbeBatch]:
    """The rows in batches of ``size``, collated as ``collator`` does for the context's form
    (the label checks aside: faulty labels are the label probes' to find)."""
    for table, ids in chunks(size):
        part = with_labels(table)
        arrays = _truth(part, ids, collator, packed)
        try:
            kwargs = collate(
                part,
                pad_id=collator.pad_id,
                padding_side=collator.padding_side,
                packed=packed,
                form=ctx.form if packed else "position_ids",  # type: ignore[arg-type]
                causal=ctx.causal,
                dtype=ctx.dtype,
                pad_position_ids=collator.pad_position_ids,
                position_offset=collator.position_offset,
            )
        except DataError as error:
            raise DataError(name_row(str(error), ids)) from None
        yield _probe_batch(ctx, arrays, kwargs, ids)


@dataclass(frozen=True)
class FedBatch:
    """A caller's collate function's batch: ``kwargs`` as it returned them (on the CPU),
    ``truth`` the output's rows laid out as fed (:func:`~.alignment.truth_in_feed`), ``labels``
    the fed labels (``None`` when it gave none), ``warnings`` about what it returned."""

    kwargs: dict[str, Any]
    truth: RowArrays
    labels: np.ndarray | None
    row_ids: list[int]
    warnings: tuple[str, ...] = ()


def fed_batches(
    chunks: Chunks,
    size: int,
    feed: CollateFeed,
    kept: list[str],
    collator: Collator,
    packed: bool,
    model: Any,
    facts: ModelFacts,
) -> Iterator[FedBatch]:
    """The rows in batches of ``size``, each handed to ``feed`` as a trainer hands them (the
    columns ``kept``), what it returns checked (:func:`~.feed.call_collate`) and its rows placed
    against the output's (a row it holds nowhere, or positions past the model's table, refused
    in one line)."""
    import torch

    for table, ids in chunks(size):
        truth = _truth(with_labels(table), ids, collator, packed)
        kwargs, warnings = call_collate(feed, handed_rows(table, kept), ids, model)
        fed_ids = kwargs["input_ids"].detach().cpu().numpy().astype(np.int64)
        labels = kwargs.get("labels")
        fed_labels = (
            labels.detach().cpu().numpy().astype(np.int64)
            if isinstance(labels, torch.Tensor)
            else None
        )
        placed = place_rows(truth, fed_ids, fed_labels)
        if isinstance(placed, Misplaced):
            raise ConfigError(
                f"{feed.name} returned row {placed.index} of the batch of rows "
                f"{', '.join(map(str, ids[:4]))}{', …' if len(ids) > 4 else ''} without the "
                f"{placed.length} tokens of row {ids[placed.index]} in its {placed.width} ids: "
                "verify judges each fed row against the row handed to it, so a function that "
                "reorders, cuts or rewrites rows cannot be judged"
            )
        arrays = truth_in_feed(truth, placed, fed_ids)
        check_positions(feed.name, kwargs, arrays, ids, facts)
        yield FedBatch(kwargs, arrays, fed_labels, ids, warnings)


def on_device(ctx: ProbeContext, fed: FedBatch) -> ProbeBatch:
    """A fed batch as the probes take it, on the context's device."""
    return _probe_batch(ctx, fed.truth, fed.kwargs, fed.row_ids)


def check_positions(
    name: str, kwargs: dict[str, Any], truth: RowArrays, ids: list[int], facts: ModelFacts
) -> None:
    """Refuse a feed that needs a position the model's absolute table does not have: the forward
    pass would fail, on a GPU with a device-side assert far from the row."""
    if facts.max_positions is None:
        return
    real = truth.attention_mask > 0
    positions = kwargs.get("position_ids")
    if positions is not None and hasattr(positions, "numpy"):
        fed = np.broadcast_to(positions.detach().cpu().numpy(), real.shape)
        used = np.where(real, fed, -1).max(axis=1)
    else:
        # The model numbers the positions itself, padding included, up to the row's width.
        used = np.full(len(real), real.shape[1] - 1 + facts.position_offset)
    beyond = used >= facts.max_positions
    if beyond.any():
        row = int(np.argmax(beyond))
        raise DataError(
            f"row {ids[row]}: {name} feeds it position {int(used[row])}, but {facts.name} has "
            f"{facts.max_positions} position embeddings: the forward pass would fail"
        )
