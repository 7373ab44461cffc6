"""What a build encodes with, and the encode step of a build.

:func:`prepare_tokenizer` gives the tokenizer's identity and its encoders: read from its
``tokenizer.json`` directly, taken from the tokenizer cache when it holds them, else loaded
through transformers (and then cached).

:func:`encode_stream` turns batches of records into their encoded documents, in order, and
rejects the supervised records that cannot be trained on. On the fast path the encoding overlaps
reading and writing: an :class:`EncodingThread` runs the encoder beside the main thread, which
meanwhile shapes and writes, and a reader thread reads, parses and prepares the records (renders
chat templates). One encoding thread is enough: the Rust tokenizer spreads each batch over every
core with its own threads (rayon) with the GIL released. Worker processes were measured against
it on 2 cores and did not win (``bench/README.md``), so there are none. Batches are handed back
in the order they were read, so rows, shards and manifest do not depend on timing.

A supervised record is rejected here when fitting it into ``max_length`` would leave it no
trained token (:func:`split_trainable`): a supervised row that trains nothing is a bad record,
not a row.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Full, Queue
from typing import Any

from ..config import BuildConfig, ShapeConfig, TokenizerConfig
from ..errors import ConfigError, Option
from ..sources.records import Batch, Record, Rejected
from ..storage import StorageOptions
from .cache import CachedTokenizer, TokenizerCache
from .encoder import (
    BackendEncoder,
    EncodedDoc,
    Encoder,
    EncoderSpec,
    appends_eos,
    encoder_spec,
    truncation_keep,
)
from .loading import DirectTokenizer, TokenizerInfo, load_direct, load_tokenizer, tokenizer_info
from .sft import SFTEncoder, rejected_record, use_chat_template_file


@dataclass(frozen=True)
class PreparedTokenizer:
    """How a build encodes: the tokenizer's identity, and either the fast path's spec or the
    transformers-backed encoders (both for a tokenizer loaded here; only the spec for a cached
    one)."""

    info: TokenizerInfo
    spec: EncoderSpec | None
    encoder: Encoder | None = None
    sft_encoder: SFTEncoder | None = None
    cached: bool = False
    #: Loaded from its tokenizer.json with ``tokenizers`` alone (:func:`~.loading.load_direct`).
    direct: bool = False


def prepare_tokenizer(
    config: BuildConfig,
    loaded: Any,
    cache: TokenizerCache | None,
    storage_options: StorageOptions | None = None,
) -> PreparedTokenizer:
    """Load what the build encodes with: from the tokenizer cache when it holds this plain-text
    build's tokenizer, else through transformers (storing it in the cache for the next build).
    ``storage_options`` configures the store of a chat template given as a URL."""
    # add_eos as the build applies it (on for packed plain documents), keyed and encoded alike.
    options = config.resolved_tokenizer
    if loaded is None and config.sft is None:
        direct = load_direct(options)
        if direct is not None:
            check_eos(config, direct.info)
            return PreparedTokenizer(direct.info, direct_spec(direct, options), direct=True)
    key = None
    if loaded is None and config.sft is None and cache is not None:
        key = cache.key(options)
        cached = cache.get(key) if key is not None else None
        if cached is not None:
            check_eos(config, cached.info)
            return PreparedTokenizer(cached.info, cached.spec, cached=True)
    tokenizer = loaded if loaded is not None else load_tokenizer(options)
    if config.sft is not None and config.sft.chat_template is not None:
        use_chat_template_file(tokenizer, config.sft.chat_template, storage_options)
    info = tokenizer_info(tokenizer, options)
    check_eos(config, info)
    encoder = Encoder(tokenizer, options)
    spec = encoder_spec(tokenizer, encoder)
    if config.sft is not None:
        sft_encoder = SFTEncoder(tokenizer, options, config.sft, spec=spec, shape=config.shape)
        return PreparedTokenizer(info, spec, encoder, sft_encoder)
    # Keyed again: a tokenizer directory rewritten while it was loading must not be cached under
    # the key of its former files.
    if cache is not None and key is not None and spec is not None:
        fresh = cache.key(options) == key
        if fresh:
            cache.put(key, CachedTokenizer(info, spec))
    return PreparedTokenizer(info, spec, encoder)


def check_eos(config: BuildConfig, info: TokenizerInfo) -> None:
    """Refuse ``add_eos`` for plain documents when the tokenizer has no EOS token to add.

    Packed documents (``add_eos`` is their default) fall back on the tokenizer's own frame: a
    tokenizer whose special tokens end every document (BERT's ``[SEP]``) keeps them apart with
    that, and nothing is appended. One that ends documents with nothing at all is refused:
    its documents would run into each other, unless ``add_eos`` is turned off on purpose.
    Supervised records check their own (:class:`~maskprep.tokenizing.sft.SFTEncoder`).
    """
    if not config.resolved_tokenizer.add_eos or info.eos_token_id is not None or config.sft:
        return
    name = config.tokenizer.name_or_path
    if config.shape.strategy != "pack":
        raise ConfigError(f"tokenizer {name!r} has no EOS token to add")
    if info.suffix_ids:
        return
    off = Option("tokenizer.add_eos", "False")
    raise ConfigError(
        f"tokenizer {name!r} has no EOS token, and its special tokens end no document: packed "
        f"documents would run into each other with nothing between them; {off} packs them so "
        "anyway",
        suggests=(off,),
    )


def direct_spec(direct: DirectTokenizer, options: TokenizerConfig) -> EncoderSpec:
    """The fast path's spec of a tokenizer loaded from its files (its backend as it is), for the
    tokenizer options as the build applies them (``BuildConfig.resolved_tokenizer``)."""
    info = direct.info
    return EncoderSpec(
        backend_json=direct.backend.to_str(),
        split_special_tokens=direct.split_special_tokens,
        prefix=tuple(info.prefix_ids),
        suffix=tuple(info.suffix_ids),
        append_eos=appends_eos(options.add_eos, info.eos_token_id, info.suffix_ids),
        eos_id=info.eos_token_id,
    )


#: A batch, its encoded documents, and the records of it the encode step rejected.
Encoded = tuple[Batch, list[EncodedDoc], list[Rejected]]


def encode_stream(
    batches: Iterator[Batch], tokenizing: PreparedTokenizer, shape: ShapeConfig
) -> Generator[Encoded, None, None]:
    """Each batch with its documents, and the supervised records rejected: those that cannot be
    encoded for training, and those that fitting into ``shape`` would leave without a trained
    token (:func:`split_trainable`). Plain records are never rejected here.

    On the fast path an :class:`EncodingThread` reads, prepares (supervised
    records) and encodes ahead of the consumer on background threads; it stops when the stream
    is closed or exhausted. Otherwise each batch is encoded here, when asked for.
    """
    supervised = tokenizing.sft_encoder is not None
    # Closed with this generator: the reading and encoding threads stop before their files close.
    with contextlib.closing(_encoded(batches, tokenizing)) as encoded:
        for batch, items in encoded:
            if supervised:
                docs, rejected = split_trainable(batch.records, items, shape)
                yield batch, docs, rejected
            else:
                yield batch, items, []  # type: ignore[misc] # plain records are never rejected


def _encoded(
    batches: Iterator[Batch], tokenizing: PreparedTokenizer
) -> Generator[tuple[Batch, list[EncodedDoc | Rejected]], None, None]:
    """Each batch with one item per record: its :class:`EncodedDoc`, or the :class:`Rejected`
    record when a supervised record cannot be encoded for training."""
    spec = tokenizing.spec
    if spec is not None:
        sft = tokenizing.sft_encoder
        if sft is not None:
            thread = EncodingThread(sft.prepare, sft.encode)
        else:
            backend = BackendEncoder(spec)
            thread = EncodingThread(
                lambda records: [r.text for r in records],
                lambda records, texts: backend.encode(texts),
            )
        head, tail = len(spec.prefix), len(spec.suffix)
        try:
            for batch, result in thread.encode(batches):
                if sft is not None or not batch.records:
                    yield batch, result
                else:
                    # Plain documents are framed in bulk on the encoding thread; their views are
                    # made here, on the consumer's thread, which waits on it anyway.
                    yield batch, result.docs([r.location for r in batch.records], head, tail)
        finally:
            thread.close()
        return
    for batch in batches:
        records = batch.records
        if not records:
            yield batch, []
        elif tokenizing.sft_encoder is not None:
            yield batch, tokenizing.sft_encoder.encode_records(records)
        else:
            assert tokenizing.encoder is not None, "a cached tokenizer always has the fast path"
            texts = [r.text for r in records]
            yield batch, list(tokenizing.encoder.encode(texts, [r.location for r in records]))


#: What the reader thread makes of a batch's records (in Python), for the encoding thread.
Prepare = Callable[[list[Record]], Any]
#: The encoding thread's work on the records and what ``Prepare`` made of them.
Encode = Callable[[list[Record], Any], Any]

_DONE = object()


@dataclass(frozen=True)
class _Failed:
    """An exception raised while reading or submitting, carried to the consuming thread."""

    error: BaseException


class EncodingThread:
    """Encodes batches of records ahead of the caller, in order, with bounded memory.

    :meth:`encode` turns an iterator of batches into an iterator of ``(batch, result)`` pairs, at
    most ``lookahead`` batches ahead of the consumer; :meth:`close` stops the thread. Each batch's
    records are passed through ``prepare`` on the reader thread and ``encode`` on the encoding
    thread; a batch with no records gets an empty list.
    """

    def __init__(self, prepare: Prepare, encode: Encode, lookahead: int = 2) -> None:
        self.lookahead = lookahead
        self._prepare = prepare
        self._encode = encode
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="maskprep-encode")

    def close(self) -> None:
        """Stop the encoding thread, dropping work not yet collected."""
        self._thread.shutdown(wait=True, cancel_futures=True)

    def encode(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, Any]]:
        """What ``encode`` made of each batch of records, in the order the batches came.

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
                yield batch, [] if future is None else future.result()
        finally:
            stop.set()
            reader.join(timeout=1.0)


def loses_all_labels(doc: EncodedDoc, config: ShapeConfig) -> bool:
    """Whether fitting (:func:`maskprep.shaping.fit.fit`) would write ``doc`` with no trained
    token left (only truncation can)."""
    if len(doc.ids) <= config.max_length or config.overflow != "truncate":
        return not doc.trained.any()
    keep, _ = truncation_keep(doc, config.max_length)
    return not doc.trained[keep].any()


def split_trainable(
    records: Sequence[Record], items: Sequence[EncodedDoc | Rejected], config: ShapeConfig
) -> tuple[list[EncodedDoc], list[Rejected]]:
    """Encoded supervised records (``items``, one per record) split into the documents to shape
    and the records rejected: those the encoder rejected, and those that fitting would leave
    without a trained token (a supervised row that trains nothing is a bad record, not a row)."""
    docs: list[EncodedDoc] = []
    rejected: list[Rejected] = []
    for record, item in zip(records, items, strict=True):
        if isinstance(item, Rejected):
            rejected.append(item)
        elif loses_all_labels(item, config):
            reason = f"no trained token left after truncation to max_length {config.max_length}"
            rejected.append(rejected_record(record, reason))
        else:
            docs.append(item)
    return docs, rejected
