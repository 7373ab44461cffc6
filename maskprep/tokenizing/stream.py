"""The encode step of a build: batches of records → their encoded documents, in order, and the
supervised records that cannot be trained on, rejected."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator

from ..config import ShapeConfig
from ..sources.batches import Batch
from ..sources.records import Rejected
from .encoder import EncodedDoc
from .encoding_thread import EncodingThread
from .prepare import PreparedTokenizer
from .trainable import split_trainable

#: A batch, its encoded documents, and the records of it the encode step rejected.
Encoded = tuple[Batch, list[EncodedDoc], list[Rejected]]


def encode_stream(
    batches: Iterator[Batch], tokenizing: PreparedTokenizer, shape: ShapeConfig
) -> Generator[Encoded, None, None]:
    """Each batch with its documents, and the supervised records rejected: those that cannot be
    encoded for training, and those that fitting into ``shape`` would leave without a trained
    token (:func:`~.trainable.split_trainable`). Plain records are never rejected here.

    On the fast path an :class:`~.encoding_thread.EncodingThread` reads, prepares (supervised
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
    if tokenizing.spec is not None:
        sft = tokenizing.sft_encoder
        thread = (
            EncodingThread(sft.prepare, sft.encode)
            if sft is not None
            else EncodingThread.plain(tokenizing.spec)
        )
        try:
            yield from thread.encode(batches)
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
