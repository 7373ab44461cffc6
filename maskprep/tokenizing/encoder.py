"""Encoding documents: the special-token frame, and texts → :class:`EncodedDoc` in batches.

Documents are encoded without special tokens, then framed with the tokenizer's own prefix and
suffix (``[CLS] … [SEP]`` for BERT, ``<s> …`` for Llama), so that truncation and splitting cut the
text and keep the frame, exactly as the tokenizer's own ``truncation=True`` does.

Two encoders, one result. :class:`Encoder` calls ``tokenizer(texts)``, which in transformers
re-configures truncation and padding on every call, builds a Python dict per document and copies
every id list twice. The fast path, :class:`BackendEncoder`, makes the one call that matters,
``encode_batch_fast``, on a copy of the Rust backend configured once (no truncation, no padding,
the tokenizer's own ``split_special_tokens``) and frames the documents in bulk with NumPy. It is
taken only when the tokenizer's class adds nothing in Python to the backend call, and only after
it gave exactly the ids of ``tokenizer(...)`` on probe texts (:func:`encoder_spec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from ..config import TokenizerConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class EncodedDoc:
    """One document as token ids, ready to be fitted into rows.

    ``ids`` is the whole framed document; its first ``head`` and last ``tail`` tokens are the
    special-token frame, kept whole when the text between them is truncated or split. ``trained``
    marks the tokens whose labels count in the loss. ``prompt`` is set for supervised records: the
    number of tokens right after the head that form the prompt, which truncation cuts from the
    left before it cuts the completion after it from the right.
    """

    ids: np.ndarray
    trained: np.ndarray
    head: int
    tail: int
    location: str
    prompt: int | None = None


def truncation_keep(doc: EncodedDoc, max_length: int) -> tuple[np.ndarray, int]:
    """Indices of ``doc`` kept when truncating it to ``max_length``, and how many prompt tokens
    were cut from the left.

    The frame is kept whole. A supervised record (``doc.prompt`` set) loses its prompt from the
    left first, keeping the completion that carries the loss; only when the completion alone is
    too long is it cut from the right. A plain document is cut from the right.
    """
    n = len(doc.ids)
    budget = max_length - doc.head - doc.tail
    body_end = n - doc.tail
    excess = max(0, n - max_length)
    cut_left = min(excess, doc.prompt or 0)
    start = doc.head + cut_left
    keep = np.r_[0 : doc.head, start : min(start + budget, body_end), body_end:n]
    return keep, cut_left


def special_frame(tokenizer: Any, add_special_tokens: bool) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence (``([CLS], [SEP])`` for BERT).

    Found by encoding a probe text with and without special tokens, so it works for any
    post-processor without knowing its kind.
    """
    if not add_special_tokens:
        return [], []
    probe = "maskprep probe"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    framed = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return list(framed[:start]), list(framed[start + len(bare) :])
    raise ConfigError("cannot tell the tokenizer's special tokens apart from the text it frames")


def appends_eos(add_eos: bool | None, eos_id: int | None, suffix: Sequence[int]) -> bool:
    """Whether documents are ended with EOS: asked for, the tokenizer has one, and its frame does
    not already end every document with it (never a second)."""
    return bool(add_eos) and eos_id is not None and (not len(suffix) or suffix[-1] != eos_id)


class Encoder:
    """Turns texts into :class:`EncodedDoc` objects with one batched call to the fast tokenizer."""

    def __init__(self, tokenizer: Any, config: TokenizerConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        prefix, suffix = special_frame(tokenizer, config.add_special_tokens)
        self.eos_id = tokenizer.eos_token_id
        # Without an EOS there is none to add (see prepare.check_eos).
        self.append_eos = appends_eos(config.add_eos, self.eos_id, suffix)
        #: The special-token frame put around every document (``[CLS]`` / ``[SEP]``, ``<s>``).
        self.prefix = np.asarray(prefix, dtype=np.int32)
        self.suffix = np.asarray(suffix, dtype=np.int32)

    def encode(self, texts: Sequence[str], locations: Sequence[str]) -> list[EncodedDoc]:
        """Encode a batch of texts; ``locations`` are their ``file:line`` strings."""
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            # Long documents are expected here; fitting them to max_length is shaping's job.
            verbose=False,
        )["input_ids"]
        eos = self.eos_id if self.append_eos else None
        batch = frame_documents(*flatten_ids(encoded), self.prefix, self.suffix, eos)
        return batch.docs(locations, len(self.prefix), len(self.suffix))


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


def frame_documents(
    flat: np.ndarray,
    lengths: np.ndarray,
    prefix: Sequence[int] | np.ndarray,
    suffix: Sequence[int] | np.ndarray,
    eos_id: int | None,
) -> EncodedBatch:
    """Put every document's special-token frame around its ids, and ``eos_id`` (when given) after
    those that do not end with it, for a whole batch at once."""
    n = len(lengths)
    head, tail = len(prefix), len(suffix)
    ends = np.cumsum(lengths)
    if eos_id is not None:
        last = flat[np.maximum(ends - 1, 0)] if len(flat) else np.zeros(n, np.int32)
        eos = (lengths == 0) | (last != eos_id)
    else:
        eos = np.zeros(n, dtype=bool)
    sizes = head + lengths + eos + tail
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int32)
    starts = offsets[:-1]
    if head:
        out[(starts[:, None] + np.arange(head)).ravel()] = np.tile(np.asarray(prefix, np.int32), n)
    shift = np.repeat(starts + head - (ends - lengths), lengths)
    out[np.arange(len(flat)) + shift] = flat
    if eos_id is not None:
        out[(starts + head + lengths)[eos]] = eos_id
    if tail:
        out[(offsets[1:, None] - tail + np.arange(tail)).ravel()] = np.tile(
            np.asarray(suffix, np.int32), n
        )
    return EncodedBatch(out, offsets)


def flatten_ids(id_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The ids of a batch of documents concatenated, and each document's length."""
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def load_backend(spec: EncoderSpec) -> Any:
    """The Rust tokenizer of a spec, configured once: no truncation, no padding, and the
    tokenizer's own ``split_special_tokens``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(spec.backend_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = spec.split_special_tokens
    return tokenizer


class BackendEncoder:
    """Encodes and frames texts with the Rust tokenizer of a spec (:func:`load_backend`)."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self._tokenizer = load_backend(spec)

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode and frame a batch of texts."""
        if not texts:
            return EncodedBatch(np.empty(0, np.int32), np.zeros(1, np.int64))
        # encode_batch_fast gives the same ids as encode_batch without tracking offsets.
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        spec = self.spec
        eos = spec.eos_id if spec.append_eos else None
        flat, lengths = flatten_ids([e.ids for e in encodings])
        return frame_documents(flat, lengths, spec.prefix, spec.suffix, eos)


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
