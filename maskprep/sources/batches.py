"""The record stream in batches: records to encode together, with the records rejected among them
travelling beside them, so that whoever consumes the batch applies the bad-record policy in input
order, on its own thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .records import Record, Rejected, SourcePosition


@dataclass(frozen=True)
class Batch:
    """Up to a batch size of records, and the records rejected while reading them; ``start``:
    where the reader was when the batch began (a resumed build may start there)."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    start: SourcePosition | None = None


def batched(
    items: Iterable[Record | Rejected],
    size: int,
    *,
    stop_at_reject: bool = False,
    position: Callable[[], SourcePosition] | None = None,
) -> Iterator[Batch]:
    """``items`` in batches of ``size`` records; each rejected record goes with the batch being
    filled when it was read. A batch of only rejected records ends the stream when they come
    after the last record.

    With ``stop_at_reject`` (the ``fail`` policy) the first rejected record ends the stream: it
    comes alone in the last batch, and nothing after it is read (the records read before it in
    that batch are not passed on; the build stops there). ``position`` gives where the reader is;
    each batch carries where it began.
    """
    records: list[Record] = []
    rejected: list[Rejected] = []
    iterator = iter(items)
    start = position() if position is not None else None
    for item in iterator:
        if isinstance(item, Rejected):
            if stop_at_reject:
                yield Batch([], [item], start)
                return
            rejected.append(item)
            continue
        records.append(item)
        if len(records) == size:
            yield Batch(records, rejected, start)
            records, rejected = [], []
            # Taken between two items, before the first of the next batch is read.
            start = position() if position is not None else None
    if records or rejected:
        yield Batch(records, rejected, start)
