"""The encode step of a build: batches of records → their encoded documents, in order."""

from __future__ import annotations

from collections.abc import Generator, Iterator

from ..sources.batches import Batch
from ..sources.records import Rejected
from .encoder import EncodedDoc
from .pool import EncodingPool
from .prepare import PreparedTokenizer


def encode_stream(
    batches: Iterator[Batch], tokenizing: PreparedTokenizer
) -> Generator[tuple[Batch, list[EncodedDoc | Rejected]], None, None]:
    """Each batch with one item per record: its :class:`EncodedDoc`, or the :class:`Rejected`
    record when a supervised record cannot be encoded for training.

    On the fast path an :class:`~.pool.EncodingPool` reads, prepares (supervised records) and
    encodes ahead of the consumer on background threads; it stops when the stream is closed or
    exhausted. Otherwise each batch is encoded here, when asked for.
    """
    if tokenizing.spec is not None:
        sft = tokenizing.sft_encoder
        pool = (
            EncodingPool(sft.prepare, sft.encode)
            if sft is not None
            else EncodingPool.plain(tokenizing.spec)
        )
        try:
            yield from pool.encode(batches)
        finally:
            pool.close()
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
