"""Encoding at the Rust tokenizer's speed: its batch API, called directly.

``tokenizer(texts)`` in transformers re-configures truncation and padding on every call, builds a
Python dict per document and copies every id list twice. For plain documents all of that is
bookkeeping around one call, ``backend_tokenizer.encode_batch``. This module makes that call
directly on a copy of the backend configured once (no truncation, no padding, the tokenizer's own
``split_special_tokens``) and frames the documents with the special tokens in bulk with NumPy;
:mod:`.encoding_thread` runs it beside the main thread.

The fast path is taken only when the tokenizer's class adds nothing in Python to the backend call,
and only after it gave exactly the ids of ``tokenizer(...)`` on probe texts; otherwise
:class:`~maskprep.tokenizing.encoder.Encoder` is used as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from .encoder import EncodedDoc, Encoder

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


@dataclass(frozen=True)
class EncoderSpec:
    """Everything the encoding thread needs to encode exactly like
    :class:`~maskprep.tokenizing.encoder.Encoder`, without transformers; plain values, so that
    the tokenizer cache stores it as JSON."""

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
        assert spec.eos_id is not None, "append_eos is set only with an EOS id"
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
