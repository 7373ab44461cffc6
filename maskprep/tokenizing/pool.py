"""Encoding overlapped with reading and writing, on a background thread.

The fast path of :mod:`.fast` runs beside the main thread, which meanwhile reads, shapes and
writes. One encoding thread is enough: the Rust tokenizer spreads each batch over every core with
its own threads (rayon) with the GIL released. Worker processes were measured against it on
2 cores and did not win (``bench/README.md``), so there are none.

Batches are handed back in the order they were read, so rows, shards and manifest do not depend
on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any

from ..sources.batches import Batch
from ..sources.records import Record
from .encoder import EncodedDoc
from .fast import BackendEncoder, EncodedBatch, EncoderSpec

_DONE = object()


@dataclass(frozen=True)
class _Failed:
    """An exception raised while reading or submitting, carried to the consuming thread."""

    error: BaseException


class EncodingPool:
    """Encodes batches of records ahead of the caller, in order, with bounded memory.

    :meth:`encode` turns an iterator of batches into an iterator of ``(batch, docs)`` pairs, at
    most ``lookahead`` batches ahead of the consumer; :meth:`close` stops the thread.
    """

    def __init__(self, spec: EncoderSpec, lookahead: int = 2) -> None:
        self.spec = spec
        self.lookahead = lookahead
        self._encoder = BackendEncoder(spec)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="maskprep-encode")

    def close(self) -> None:
        """Stop the encoding thread, dropping work not yet collected."""
        self._thread.shutdown(wait=True, cancel_futures=True)

    def encode(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, list[EncodedDoc]]]:
        """Encoded documents for each batch of records, in the order the batches came.

        A reader thread pulls the batches (reading and JSON parsing) and submits them for
        encoding, at most ``lookahead`` ahead; each batch is handed back as soon as it is encoded,
        so a slow stream (a pipe) is written as it arrives, not held back behind later input.
        """
        head, tail = len(self.spec.prefix), len(self.spec.suffix)
        queue: Queue[Any] = Queue(maxsize=max(self.lookahead, 1))
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    queue.put(item, timeout=0.1)
                    return True
                except Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in batches:
                    # A batch of rejected records only has nothing to encode.
                    future = (
                        self._thread.submit(self._encoder.encode, [r.text for r in batch.records])
                        if batch.records
                        else None
                    )
                    if not put((batch, future)):
                        return
                put(_DONE)
            except BaseException as exc:  # re-raised in the consumer, where it belongs
                put(_Failed(exc))

        reader = threading.Thread(target=produce, name="maskprep-read", daemon=True)
        reader.start()
        try:
            while True:
                item = queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failed):
                    raise item.error
                batch, future = item
                yield batch, _docs(batch.records, future, head, tail)
        finally:
            stop.set()
            reader.join(timeout=1.0)


def _docs(
    records: list[Record], future: Future[EncodedBatch] | None, head: int, tail: int
) -> list[EncodedDoc]:
    if future is None:
        return []
    return future.result().docs([r.location for r in records], head, tail)
