"""Encoding at the Rust tokenizer's speed: its batch API, overlapped with reading and writing.

``tokenizer(texts)`` in transformers re-configures truncation and padding on every call, builds a
Python dict per document and copies every id list twice. For plain documents all of that is
bookkeeping around one call, ``backend_tokenizer.encode_batch``. This module makes that call
directly on a copy of the backend configured once (no truncation, no padding, the tokenizer's own
``split_special_tokens``), frames the documents with the special tokens in bulk with NumPy, and
runs it beside the main thread, which meanwhile reads, shapes and writes:

- ``num_proc == 1``: one background thread; the Rust tokenizer spreads each batch over its own
  threads (rayon) with the GIL released;
- ``num_proc > 1``: ``num_proc`` worker processes, each encoding chunks on one thread. Long
  documents scale better this way than with rayon's threads, and the ids come back as two NumPy
  arrays per chunk, not as Python lists.

Results are consumed in submission order, so rows, shards and manifest are byte-identical whatever
``num_proc`` is. The fast path is taken only when the tokenizer's class adds nothing in Python to
the backend call, and only after it gave exactly the ids of ``tokenizer(...)`` on probe texts;
otherwise :class:`~maskprep.tokenizing.Encoder` is used as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from queue import Full, Queue
from typing import Any

import numpy as np

from .sources.records import Record
from .tokenizing import EncodedDoc, Encoder

#: Texts the fast path must encode exactly like ``tokenizer(...)`` before it is trusted: spaces,
#: accents, CJK, emoji, control characters, markup and the tokenizer's own special tokens.
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "Über naïve café — unicode should survive the round trip. 東京 🤗",
    "tabs\tand\nnewlines\r\nand \u00a0non-breaking spaces",
    "<html><body>def f(x): return x**2 # 3.14e-10</body></html>",
    "a",
)


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
            from .errors import ConfigError

            raise ConfigError(f"num_proc must be at least 1, not {self.num_proc}")

    @property
    def processes(self) -> int:
        """The resolved number of encoding processes."""
        return self.num_proc if self.num_proc is not None else default_num_proc()


@dataclass(frozen=True)
class EncoderSpec:
    """Everything a worker needs to encode exactly like :class:`~maskprep.tokenizing.Encoder`;
    small and picklable."""

    backend_json: str
    split_special_tokens: bool
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    append_eos: bool
    eos_id: int | None


@dataclass(frozen=True)
class EncodedBatch:
    """Framed documents as one flat array: document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[EncodedBatch]) -> EncodedBatch:
        """Join batches in order."""
        if len(parts) == 1:
            return parts[0]
        ids = np.concatenate([p.ids for p in parts])
        starts = np.cumsum([0] + [len(p.ids) for p in parts[:-1]])
        offsets = np.concatenate(
            [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)]
        )
        return cls(ids, offsets)

    def docs(self, locations: Sequence[str], head: int, tail: int) -> list[EncodedDoc]:
        """One :class:`EncodedDoc` per document; ``ids`` are views into this batch, and every
        ``trained`` flag is True (a read-only shared array, since plain documents train all)."""
        lengths = np.diff(self.offsets)
        trained = np.ones(int(lengths.max(initial=0)), dtype=bool)
        trained.flags.writeable = False
        bounds = self.offsets.tolist()
        ids = self.ids
        return [
            EncodedDoc(
                ids[bounds[i] : bounds[i + 1]],
                trained[: bounds[i + 1] - bounds[i]],
                head,
                tail,
                location,
            )
            for i, location in enumerate(locations)
        ]


def frame_documents(flat: np.ndarray, lengths: np.ndarray, spec: EncoderSpec) -> EncodedBatch:
    """Put every document's special-token frame (and EOS, when asked and missing) around its ids,
    for a whole batch at once."""
    n = len(lengths)
    prefix = np.asarray(spec.prefix, dtype=np.int32)
    suffix = np.asarray(spec.suffix, dtype=np.int32)
    head, tail = len(prefix), len(suffix)
    ends = np.cumsum(lengths)
    if spec.append_eos:
        last = flat[np.maximum(ends - 1, 0)] if len(flat) else np.zeros(n, np.int32)
        eos = (lengths == 0) | (last != spec.eos_id)
    else:
        eos = np.zeros(n, dtype=bool)
    sizes = head + lengths + eos + tail
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int32)
    starts = offsets[:-1]
    if head:
        out[(starts[:, None] + np.arange(head)).ravel()] = np.tile(prefix, n)
    shift = np.repeat(starts + head - (ends - lengths), lengths)
    out[np.arange(len(flat)) + shift] = flat
    if eos.any():
        out[(starts + head + lengths)[eos]] = spec.eos_id
    if tail:
        out[(offsets[1:, None] - tail + np.arange(tail)).ravel()] = np.tile(suffix, n)
    return EncodedBatch(out, offsets)


class BackendEncoder:
    """The Rust tokenizer of a spec, configured once: no truncation, no padding."""

    def __init__(self, spec: EncoderSpec) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self._tokenizer = Tokenizer.from_str(spec.backend_json)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._tokenizer.encode_special_tokens = spec.split_special_tokens

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode and frame a batch of texts."""
        if not texts:
            return EncodedBatch(np.empty(0, np.int32), np.zeros(1, np.int64))
        # encode_batch_fast gives the same ids as encode_batch without tracking offsets.
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        id_lists = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum()))
        return frame_documents(flat, lengths, self.spec)


def _plain_backend_call(tokenizer: Any) -> bool:
    """Whether ``tokenizer(texts)`` is the backend's ``encode_batch`` and nothing more: a class
    that overrides the call path may preprocess text in Python, and is left to the slow path."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # another transformers layout: do not guess
        return False
    cls = type(tokenizer)
    if not isinstance(tokenizer, TokenizersBackend):
        return False
    same = [
        getattr(cls, name, None) is getattr(owner, name, None)
        for owner, name in (
            (PreTrainedTokenizerBase, "__call__"),
            (PreTrainedTokenizerBase, "_call_one"),
            (TokenizersBackend, "_encode_plus"),
            (TokenizersBackend, "_convert_encoding"),
        )
    ]
    return all(same)


def encoder_spec(tokenizer: Any, encoder: Encoder) -> EncoderSpec | None:
    """The fast path's spec for ``tokenizer``, or ``None`` when it cannot be trusted to give the
    ids ``encoder`` gives (the probe texts are encoded both ways and compared)."""
    if not _plain_backend_call(tokenizer):
        return None
    spec = EncoderSpec(
        backend_json=tokenizer.backend_tokenizer.to_str(),
        split_special_tokens=bool(getattr(tokenizer, "split_special_tokens", False)),
        prefix=tuple(int(i) for i in encoder.prefix),
        suffix=tuple(int(i) for i in encoder.suffix),
        append_eos=bool(encoder.append_eos),
        eos_id=encoder.eos_id,
    )
    specials = [str(t) for t in tokenizer.all_special_tokens]
    probes = [*PROBE_TEXTS, " ".join(specials) + " after the special tokens"]
    fast = BackendEncoder(spec).encode(probes)
    slow = encoder.encode(probes, ["probe"] * len(probes))
    for i, doc in enumerate(slow):
        if not np.array_equal(fast.ids[fast.offsets[i] : fast.offsets[i + 1]], doc.ids):
            return None
    return spec


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

    Use as a context manager; :meth:`encode` turns an iterator of record batches into an iterator
    of ``(records, docs)`` pairs, at most ``lookahead`` batches ahead of the consumer.
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

    def __enter__(self) -> EncodingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def encode(
        self, batches: Iterator[list[Record]]
    ) -> Iterator[tuple[list[Record], list[EncodedDoc]]]:
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
                for records in batches:
                    if not put((records, self._submit(records))):
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
        item: tuple[list[Record], list[Future[EncodedBatch]]], head: int, tail: int
    ) -> tuple[list[Record], list[EncodedDoc]]:
        records, futures = item
        batch = EncodedBatch.concat([f.result() for f in futures])
        return records, batch.docs([r.location for r in records], head, tail)
