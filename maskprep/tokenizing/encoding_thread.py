"""Encoding overlapped with reading and writing, on a background thread.

The fast path of :mod:`.fast` runs beside the main thread, which meanwhile shapes and writes; a
reader thread reads, parses and prepares the records (renders chat templates). One encoding
thread is enough: the Rust tokenizer spreads each batch over every core with
its own threads (rayon) with the GIL released. Worker processes were measured against it on
2 cores and did not win (``bench/README.md``), so there are none.

Batches are handed back in the order they were read, so rows, shards and manifest do not depend
on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any

from ..sources.batches import Batch
from ..sources.records import Record, Rejected
from .encoder import EncodedDoc
from .fast import BackendEncoder, EncodedBatch, EncoderSpec

#: What the reader thread makes of a batch's records (in Python), for the encoding thread.
Prepare = Callable[[list[Record]], Any]
#: The encoding thread's work on the records and what ``Prepare`` made of them.
Encode = Callable[[list[Record], Any], Any]
#: What the consumer's thread makes of the encoding thread's result: one item per record.
Finish = Callable[[list[Record], Any], list[EncodedDoc | Rejected]]

_DONE = object()


@dataclass(frozen=True)
class _Failed:
    """An exception raised while reading or submitting, carried to the consuming thread."""

    error: BaseException


class EncodingThread:
    """Encodes batches of records ahead of the caller, in order, with bounded memory.

    :meth:`encode` turns an iterator of batches into an iterator of ``(batch, items)`` pairs, at
    most ``lookahead`` batches ahead of the consumer; :meth:`close` stops the thread. Each batch's
    records are passed through ``prepare`` on the reader thread, ``encode`` on the encoding
    thread, and ``finish`` (default: the encoding's result as it is) on the consumer's
    (:meth:`plain` makes them for plain documents).
    """

    def __init__(
        self,
        prepare: Prepare,
        encode: Encode,
        lookahead: int = 2,
        finish: Finish | None = None,
    ) -> None:
        self.lookahead = lookahead
        self._prepare = prepare
        self._encode = encode
        self._finish = finish
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="maskprep-encode")

    @classmethod
    def plain(cls, spec: EncoderSpec, lookahead: int = 2) -> EncodingThread:
        """The encoding thread for plain documents: the backend of ``spec``, framed in bulk on
        it; the per-document views are made on the consumer's, which waits on it anyway."""
        encoder = BackendEncoder(spec)
        head, tail = len(spec.prefix), len(spec.suffix)

        def encode(records: list[Record], texts: list[str]) -> EncodedBatch:
            return encoder.encode(texts)

        def finish(records: list[Record], batch: EncodedBatch) -> list[EncodedDoc | Rejected]:
            return batch.docs([r.location for r in records], head, tail)  # type: ignore[return-value]

        return cls(lambda records: [r.text for r in records], encode, lookahead, finish)

    def close(self) -> None:
        """Stop the encoding thread, dropping work not yet collected."""
        self._thread.shutdown(wait=True, cancel_futures=True)

    def encode(
        self, batches: Iterator[Batch]
    ) -> Iterator[tuple[Batch, list[EncodedDoc | Rejected]]]:
        """Encoded documents for each batch of records, in the order the batches came.

        A reader thread pulls the batches (reading and JSON parsing) and submits them for
        encoding, at most ``lookahead`` ahead; each batch is handed back as soon as it is encoded,
        so a slow stream (a pipe) is written as it arrives, not held back behind later input.
        """
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
                        self._thread.submit(
                            self._encode, batch.records, self._prepare(batch.records)
                        )
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
                if future is None:
                    yield batch, []
                elif self._finish is None:
                    yield batch, future.result()
                else:
                    yield batch, self._finish(batch.records, future.result())
        finally:
            stop.set()
            reader.join(timeout=1.0)
