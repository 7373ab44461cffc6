"""Encoding overlapped with reading and writing: a background thread, or worker processes.

The fast path of :mod:`.fast` runs beside the main thread, which meanwhile reads, shapes and
writes:

- ``num_proc == 1``: one background thread; the Rust tokenizer spreads each batch over its own
  threads (rayon) with the GIL released;
- ``num_proc > 1``: ``num_proc`` worker processes, each encoding chunks on one thread. Long
  documents scale better this way than with rayon's threads, and the ids come back as two NumPy
  arrays per chunk, not as Python lists.

Results are consumed in submission order, so rows, shards and manifest are byte-identical whatever
``num_proc`` is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any

from ..sources.batches import Batch
from ..sources.records import Record
from .encoder import EncodedDoc
from .fast import BackendEncoder, EncodedBatch, EncoderSpec


def default_num_proc() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Parallelism:
    """How a build spreads its encoding.

    ``num_proc`` 1 (the default) encodes in this process on a background thread, and the Rust
    tokenizer spreads each batch over every core with its own threads; ``num_proc`` N > 1 starts N
    single-threaded worker processes instead (``None``: one per core). Measured on 2 shared cores,
    the threads were faster for short and long documents alike (the workers cost a second or so to
    start); processes may win with many cores. Workers are started only once
    ``process_after_chars`` characters of text have been submitted, so small inputs stay in this
    process. The output does not depend on any of these settings.
    """

    num_proc: int | None = 1
    process_after_chars: int = 1 << 21
    chunk_chars: int = 1 << 16

    def __post_init__(self) -> None:
        if self.num_proc is not None and self.num_proc < 1:
            from ..errors import ConfigError

            raise ConfigError(f"num_proc must be at least 1, not {self.num_proc}")

    @property
    def processes(self) -> int:
        """The resolved number of encoding processes."""
        return self.num_proc if self.num_proc is not None else default_num_proc()


# Worker processes ---------------------------------------------------------------------------------

_worker_encoder: BackendEncoder | None = None  # one per worker process, set by its initializer


def _start_worker(spec: EncoderSpec) -> None:
    global _worker_encoder
    # This process is one of num_proc encoders: the tokenizer's own thread pool would only
    # compete with its siblings. Set here, in a worker maskprep owns, never in the caller's process.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    _worker_encoder = BackendEncoder(spec)


def _encode_in_worker(texts: list[str]) -> EncodedBatch:
    assert _worker_encoder is not None, "worker started without its encoder"
    return _worker_encoder.encode(texts)


_DONE = object()


@dataclass(frozen=True)
class _Failed:
    """An exception raised while reading or submitting, carried to the consuming thread."""

    error: BaseException


class EncodingPool:
    """Encodes batches of records ahead of the caller, in order, with bounded memory.

    :meth:`encode` turns an iterator of batches into an iterator of ``(batch, docs)`` pairs, at
    most ``lookahead`` batches ahead of the consumer; :meth:`close` stops it.
    """

    def __init__(self, spec: EncoderSpec, parallelism: Parallelism, lookahead: int = 2) -> None:
        self.spec = spec
        self.parallelism = parallelism
        self.lookahead = lookahead
        self._local = BackendEncoder(spec)
        self._thread: Executor = ThreadPoolExecutor(1, thread_name_prefix="maskprep-encode")
        self._processes: Executor | None = None
        self._submitted_chars = 0
        self.used_processes = False

    def close(self) -> None:
        """Stop the thread and any worker processes, dropping work not yet collected."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=True)
            self._processes = None

    def _executor(self) -> tuple[Executor, Any]:
        n = self.parallelism.processes
        if n > 1 and self._submitted_chars >= self.parallelism.process_after_chars:
            if self._processes is None:
                import multiprocessing

                # spawn, not fork: the parent holds threads (Arrow, rayon) that fork would copy
                # in an unknown state.
                context = multiprocessing.get_context("spawn")
                self._processes = ProcessPoolExecutor(
                    n, mp_context=context, initializer=_start_worker, initargs=(self.spec,)
                )
                self.used_processes = True
            return self._processes, _encode_in_worker
        return self._thread, self._local.encode

    def _submit(self, records: list[Record]) -> list[Future[EncodedBatch]]:
        texts = [r.text for r in records]
        if self.parallelism.processes == 1:
            return [self._thread.submit(self._local.encode, texts)]
        futures = []
        chunk: list[str] = []
        size = 0
        for text in texts:
            chunk.append(text)
            size += len(text)
            if size >= self.parallelism.chunk_chars:
                executor, work = self._executor()
                futures.append(executor.submit(work, chunk))
                self._submitted_chars += size
                chunk, size = [], 0
        if chunk:
            executor, work = self._executor()
            futures.append(executor.submit(work, chunk))
            self._submitted_chars += size
        return futures

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
                    if not put((batch, self._submit(batch.records))):
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
                yield self._collect(item, head, tail)
        finally:
            stop.set()
            reader.join(timeout=1.0)

    @staticmethod
    def _collect(
        item: tuple[Batch, list[Future[EncodedBatch]]], head: int, tail: int
    ) -> tuple[Batch, list[EncodedDoc]]:
        batch, futures = item
        if not futures:  # a batch of rejected records only
            return batch, []
        encoded = EncodedBatch.concat([f.result() for f in futures])
        return batch, encoded.docs([r.location for r in batch.records], head, tail)
