"""Texts → token ids with each token's span in the text, to find which tokens a character span
covers.

Supervised records are tokenized whole (``prompt + completion``, a rendered conversation), exactly
as a plain document would be; the trained tokens are then those whose span overlaps a trained
character span (a token cut by a span's edge counts as inside it, as in transformers' assistant
mask), and the prompt is the tokens that end before the completion begins.

Spans are found one of two ways, both exact:

- **byte lengths** (byte-level BPE: GPT-2, Llama 3, Qwen, the sample tokenizer). Every token is a
  fixed run of the text's UTF-8 bytes, so the ids alone give every token's byte span: a table
  lookup and a cumulative sum per batch, on ids from ``encode_batch_fast``, which skips
  building offsets and token strings (what makes SFT encode as fast as plain text). Taken only
  for a tokenizer whose layout guarantees it (BPE, byte-level pre-tokenizer, no normalizer but
  NFC, added tokens that strip nothing) and whose table gave the backend's own offsets on probe
  texts; an NFC tokenizer's text that NFC would change goes the other way.
- **offsets**: ``encode_batch`` with character offsets (WordPiece, SentencePiece and the rest),
  from a copy of the backend without its post-processor, which with no special tokens added
  only trims whitespace from offsets: untrimmed, a token's span is every character it was made
  of, as with byte lengths.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from .encoder import PROBE_TEXTS, EncoderSpec


@dataclass(frozen=True)
class Located:
    """One text's token ids and each token's span, ``[starts[i], ends[i])``, in ``unit``s
    (``"byte"``: UTF-8 bytes of the text, ``"char"``: characters)."""

    text: str
    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    unit: str

    def position(self, char: int) -> int:
        """Character position ``char`` of the text in this text's unit."""
        if self.unit == "char" or char == 0:
            return char
        return len(self.text[:char].encode("utf-8"))

    def covering(self, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """Flags for the tokens overlapping any of the character ``spans``."""
        trained = np.zeros(len(self.ids), dtype=bool)
        for start, end in spans:
            if end <= start:
                continue
            first = self._first_from(self.position(start))
            stop = int(np.searchsorted(self.starts, self.position(end), side="left"))
            trained[first:stop] = True
        return trained

    def tokens_before(self, char: int) -> int:
        """How many tokens lie wholly before character ``char`` (the prompt before a completion
        that begins there)."""
        return self._first_from(self.position(char))

    def _first_from(self, at: int) -> int:
        """The first token that ends after ``at``, or that begins there with no width of its own
        (SentencePiece's ``▁`` prepended to a text: it belongs to what follows)."""
        first = int(np.searchsorted(self.ends, at, side="right"))
        while first and self.starts[first - 1] == self.ends[first - 1] >= at:
            first -= 1
        return first


class BackendLocator:
    """Texts → :class:`Located`, with the backend of a fast-path spec (whose plain encoding was
    proven equal to the tokenizer's)."""

    def __init__(self, spec: EncoderSpec) -> None:
        from tokenizers import Tokenizer

        def backend() -> Any:
            tokenizer = Tokenizer.from_str(spec.backend_json)
            tokenizer.no_truncation()
            tokenizer.no_padding()
            tokenizer.encode_special_tokens = spec.split_special_tokens
            return tokenizer

        self._fast = backend()
        self._offsets = backend()
        # With no special tokens added, a post-processor changes offsets only (ByteLevel trims).
        self._offsets.post_processor = None
        self._nfc = False
        self._lengths = _byte_lengths(json.loads(spec.backend_json), self._fast)
        if self._lengths is not None:
            self._nfc = (json.loads(spec.backend_json).get("normalizer") or {}).get("type") == "NFC"
            if not self._agrees(self._probes()):
                self._lengths = None

    @property
    def by_bytes(self) -> bool:
        """Whether spans come from byte lengths (else from offsets)."""
        return self._lengths is not None

    def locate(self, texts: Sequence[str]) -> list[Located]:
        """Each text's ids and token spans, in order."""
        if self._lengths is None:
            return self._by_offsets(texts)
        plain = [
            i for i, t in enumerate(texts) if not self._nfc or unicodedata.is_normalized("NFC", t)
        ]
        located: list[Located | None] = [None] * len(texts)
        for i, doc in zip(plain, self._by_lengths([texts[i] for i in plain]), strict=True):
            located[i] = doc
        if len(plain) < len(texts):
            rest = sorted(set(range(len(texts))) - set(plain))
            for i, doc in zip(rest, self._by_offsets([texts[i] for i in rest]), strict=True):
                located[i] = doc
        return located  # type: ignore[return-value] # every slot was filled

    def _by_lengths(self, texts: Sequence[str]) -> list[Located]:
        assert self._lengths is not None
        if not texts:
            return []
        encodings = self._fast.encode_batch_fast(list(texts), add_special_tokens=False)
        id_lists = [e.ids for e in encodings]
        sizes = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(sizes.sum()))
        ends = np.cumsum(self._lengths[flat])
        bounds = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        # Byte position where each document begins in the running sum.
        base = np.concatenate(([0], ends))[bounds[:-1]]
        located = []
        for i, text in enumerate(texts):
            a, b = bounds[i], bounds[i + 1]
            doc_ends = ends[a:b] - base[i]
            doc_starts = doc_ends - self._lengths[flat[a:b]]
            unit = "char" if text.isascii() else "byte"
            located.append(Located(text, flat[a:b], doc_starts, doc_ends, unit))
        return located

    def _by_offsets(self, texts: Sequence[str]) -> list[Located]:
        if not texts:
            return []
        located = []
        for text, encoding in zip(
            texts, self._offsets.encode_batch(list(texts), add_special_tokens=False), strict=True
        ):
            offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            ids = np.asarray(encoding.ids, dtype=np.int32)
            located.append(Located(text, ids, offsets[:, 0], offsets[:, 1], "char"))
        return located

    def _probes(self) -> list[str]:
        specials = [str(t.content) for t in self._fast.get_added_tokens_decoder().values()]
        return [*PROBE_TEXTS, " ".join(specials) + " after the special tokens", "".join(specials)]

    def _agrees(self, probes: list[str]) -> bool:
        """Whether byte lengths give exactly the spans the backend's offsets give."""
        for by_length, by_offset in zip(
            self._by_lengths(probes), self._by_offsets(probes), strict=True
        ):
            if not np.array_equal(by_length.ids, by_offset.ids):
                return False
            starts, ends = _char_spans(by_length)
            if not np.array_equal(starts, by_offset.starts):
                return False
            if not np.array_equal(ends, by_offset.ends):
                return False
        return True


def _char_spans(doc: Located) -> tuple[np.ndarray, np.ndarray]:
    """``doc``'s byte spans as character spans (a token holding part of a character spans all of
    it, as character offsets do)."""
    if doc.unit == "char":
        return doc.starts, doc.ends
    # Character index of every byte position (and of the end).
    char_of_byte = np.repeat(
        np.arange(len(doc.text) + 1), [len(c.encode("utf-8")) for c in doc.text] + [1]
    )
    first = char_of_byte[doc.starts]
    # A token ending inside a character ends after it.
    last = np.where(
        doc.ends > doc.starts, char_of_byte[np.maximum(doc.ends - 1, 0)] + 1, char_of_byte[doc.ends]
    )
    return first, last


def _byte_lengths(definition: dict[str, Any], tokenizer: Any) -> np.ndarray | None:
    """Every id's length in UTF-8 bytes, for a byte-level BPE tokenizer whose tokens are runs of
    the text's bytes; ``None`` for any other layout."""
    model = definition.get("model") or {}
    normalizer = definition.get("normalizer")
    pre = definition.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if (
        model.get("type") != "BPE"
        or (normalizer is not None and normalizer.get("type") != "NFC")
        or not any(step.get("type") == "ByteLevel" for step in steps)
        or any(step.get("type") not in ("ByteLevel", "Split") for step in steps)
    ):
        return None
    added = tokenizer.get_added_tokens_decoder()
    if any(token.lstrip or token.rstrip for token in added.values()):
        return None
    decode = {c: b for b, c in enumerate(_byte_alphabet())}
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    size = max([*vocab.values(), *added.keys(), -1]) + 1
    lengths = np.full(size, -1, dtype=np.int64)
    for token, index in vocab.items():
        if all(c in decode for c in token):
            lengths[index] = len(token)
    for index, token in added.items():
        lengths[index] = len(token.content.encode("utf-8"))
    # An id with no length (a token that is not byte runs) would be caught by the probes only if
    # they use it: refuse it outright.
    return None if (lengths < 0).any() else lengths


def _byte_alphabet() -> list[str]:
    """The characters byte-level BPE writes the bytes 0..255 as (GPT-2's ``bytes_to_unicode``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = {}
    extra = 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]
