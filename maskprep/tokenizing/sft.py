"""Supervised fine-tuning records → token ids with a per-token ``trained`` mask.

Two kinds of record, both turned into :class:`~maskprep.tokenizing.encoder.EncodedDoc` objects whose
``trained`` mask is the only thing labels are later derived from:

- prompt/completion: ``<s> prompt completion </s>`` with only ``completion </s>`` trained. The
  text ``prompt + completion`` is tokenized whole, as the model will read it (SentencePiece would
  otherwise begin the completion with a space of its own), and the completion is every token that
  holds any of its characters;
- chat: the messages rendered by a chat template (:mod:`.chat`), with the assistant turns trained
  (what the model generates: the answer and the template's end-of-turn token)::

      <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n | Hello!<|im_end|> | \\n
      ------------------- not trained ------------------------ | --- trained ---- | not

Records are prepared (rendered) in Python, then encoded in batches by the backend, beside the
main thread (:mod:`.prepare`). Character spans become token flags through each token's span in the
text (:class:`Located`): the trained tokens are those whose span overlaps a trained character
span (a token cut by a span's edge counts as inside it, as in transformers' assistant mask), and
the prompt is the tokens that end before the completion begins. Spans are found one of two ways,
both exact (:class:`BackendLocator`):

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

import io
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np

from .. import storage
from ..config import SFTConfig, ShapeConfig, TokenizerConfig
from ..errors import ConfigError, IOFailure, Option
from ..sources.records import Record, Rejected
from ..sources.sft import Conversation, PromptCompletion
from .chat import ChatRenderer, RenderedChat, Unusable, template_variables
from .encoder import (
    PROBE_TEXTS,
    EncodedDoc,
    EncoderSpec,
    appends_eos,
    flatten_ids,
    load_backend,
    special_frame,
)

#: The most bytes of a chat template file read. Real templates are a few KiB (tool-calling ones
#: some 15 KiB); what is larger is another file, or one that never ends.
MAX_CHAT_TEMPLATE_BYTES = 1 << 20


@dataclass(frozen=True)
class SFTText:
    """A supervised record as one text to tokenize, the character spans to train, and where the
    completion begins (``boundary``; for a chat, found from ``chat`` when truncation needs it)."""

    text: str
    spans: tuple[tuple[int, int], ...]
    boundary: int | None = None
    chat: RenderedChat | None = None


def use_chat_template_file(
    tokenizer: Any, path: str, options: storage.StorageOptions | None = None
) -> None:
    """Replace the tokenizer's chat template with the Jinja file at ``path``: a local path or a
    URL (``s3://bucket/chat.jinja``, read whole through the store ``options`` configure).

    Set on the tokenizer so that its fingerprint in the manifest covers the template used.
    """
    location = storage.parse_location(path, options)
    try:
        # Bounded: a file that never ends (/dev/zero) is read no further than the limit.
        if location.is_local:
            with open(location.path, "rb") as handle:
                data = handle.read(MAX_CHAT_TEMPLATE_BYTES + 1)
        else:
            data = storage.read_range(location, 0, MAX_CHAT_TEMPLATE_BYTES + 1)
        if len(data) > MAX_CHAT_TEMPLATE_BYTES:
            raise ConfigError(
                f"{path}: chat template is larger than {MAX_CHAT_TEMPLATE_BYTES:,} bytes (1 MiB), "
                "the most read; is it the template file?"
            )
        if location.is_local:  # as Path.read_text reads it: universal newlines
            template = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
        else:
            template = data.decode("utf-8")
    except storage.StorageFailure as exc:  # the store failed: the same read may work later
        raise IOFailure(f"{path}: cannot read chat template: {exc.detail}") from None
    except storage.StorageError as exc:
        raise ConfigError(f"{path}: cannot read chat template: {exc.detail}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read chat template: {reason}") from None
    if not template.strip():
        raise ConfigError(f"{path}: chat template file is empty")
    tokenizer.chat_template = template


class SFTEncoder:
    """Encodes batches of supervised records into :class:`EncodedDoc` or :class:`Rejected`:
    :meth:`prepare` renders them (Python), :meth:`encode` tokenizes the texts in one batch.

    ``spec`` is the fast path's (its backend proven to encode like ``tokenizer``): with it,
    :meth:`encode` never touches ``tokenizer`` and may run on another thread. ``shape`` tells
    which conversations are long enough to need their prompt/completion boundary.
    """

    def __init__(
        self,
        tokenizer: Any,
        config: TokenizerConfig,
        sft: SFTConfig,
        *,
        spec: EncoderSpec | None = None,
        shape: ShapeConfig | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.sft = sft
        self.eos_id = tokenizer.eos_token_id
        prefix, suffix = special_frame(tokenizer, config.add_special_tokens)
        add_eos = config.add_eos if config.add_eos is not None else not sft.is_chat
        if add_eos and self.eos_id is None:
            raise ConfigError(
                f"tokenizer {config.name_or_path!r} has no EOS token to end completions with; "
                "turn add_eos off"
            )
        self.append_eos = appends_eos(add_eos, self.eos_id, suffix)
        self._prefix = np.asarray(prefix, dtype=np.int32)
        self._suffix = np.asarray(suffix, dtype=np.int32)
        # What a chat template opens every conversation with, as the tokenizer frames a text.
        self._chat_frame = special_frame(tokenizer, True)[0] if sft.is_chat else []
        self._bos_id = tokenizer.bos_token_id
        self._truncating = shape is None or shape.overflow == "truncate"
        self._max_length = shape.max_length if shape is not None else 0
        self._locator = BackendLocator(spec) if spec is not None else None
        self.renderer: ChatRenderer | None = None
        template: Any = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # several named templates: the default one renders
            template = template.get("default")
        if sft.is_chat and not template:
            # Refused before any record is read: every chat record would be rejected for it.
            option = Option("sft.chat_template", "FILE")
            raise ConfigError(
                f"tokenizer {config.name_or_path!r} has no chat template to render chat records "
                f"with; give one (a Jinja file) with {option}",
                suggests=(option,),
            )
        if sft.is_chat:
            self.renderer = ChatRenderer(template, sft.train_on, template_variables(tokenizer))

    def encode_records(self, records: Sequence[Record]) -> list[EncodedDoc | Rejected]:
        """Encode a batch of records, in order; a record that cannot be trained is Rejected."""
        return self.encode(records, self.prepare(records))

    def prepare(self, records: Sequence[Record]) -> list[SFTText | Rejected]:
        """Each record as the text to tokenize and its spans to train (chat records rendered),
        or Rejected when its template cannot be used."""
        if self.renderer is None:
            return [self._pair(_payload(r, PromptCompletion)) for r in records]
        prepared: list[SFTText | Rejected] = []
        for record in records:
            conversation = _payload(record, Conversation)
            try:
                chat = self.renderer.spans(conversation.as_dicts())
            except Unusable as exc:
                prepared.append(rejected_record(record, str(exc)))
                continue
            prepared.append(SFTText(chat.text, chat.spans, chat=chat))
        return prepared

    def _pair(self, pair: PromptCompletion) -> SFTText:
        text = pair.prompt + pair.completion
        start = 0 if self.sft.train_on_prompt else len(pair.prompt)
        return SFTText(text, ((start, len(text)),), boundary=len(pair.prompt))

    def encode(
        self, records: Sequence[Record], prepared: Sequence[SFTText | Rejected]
    ) -> list[EncodedDoc | Rejected]:
        """Tokenize the prepared texts of ``records`` in one batch; a record whose trained span
        holds no token is Rejected."""
        texts = [p for p in prepared if isinstance(p, SFTText)]
        located = iter(self._locate([p.text for p in texts]))
        docs: list[EncodedDoc | Rejected] = []
        for record, item in zip(records, prepared, strict=True):
            if isinstance(item, Rejected):
                docs.append(item)
            elif item.chat is not None:
                docs.append(self._chat_doc(record, item, next(located)))
            else:
                docs.append(self._pair_doc(record, item, next(located)))
        return docs

    def _locate(self, texts: list[str]) -> list[Located]:
        if self._locator is not None:
            return self._locator.locate(texts)
        if not texts:  # the tokenizer cannot take an empty batch
            return []
        # A tokenizer class without the fast path: its own call, offsets as it gives them.
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        located = []
        for text, ids, offsets in zip(
            texts, encoded["input_ids"], encoded["offset_mapping"], strict=True
        ):
            spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            located.append(
                Located(text, np.asarray(ids, np.int32), spans[:, 0], spans[:, 1], "char")
            )
        return located

    def _pair_doc(self, record: Record, item: SFTText, located: Located) -> EncodedDoc:
        assert item.boundary is not None
        ids, trained = located.ids, located.covering(item.spans)
        if self.append_eos and (not len(ids) or ids[-1] != self.eos_id):
            ids = np.append(ids, np.int32(self.eos_id))
            trained = np.append(trained, True)
        head = len(self._prefix)
        prompt = located.tokens_before(item.boundary)
        frame_trained = self.sft.train_on_prompt
        ids = np.concatenate((self._prefix, ids, self._suffix)).astype(np.int32, copy=False)
        trained = np.concatenate(
            (np.full(head, frame_trained), trained, np.ones(len(self._suffix), dtype=bool))
        )
        return EncodedDoc(ids, trained, head, len(self._suffix), record.location, prompt=prompt)

    def _chat_doc(self, record: Record, item: SFTText, located: Located) -> EncodedDoc | Rejected:
        assert item.chat is not None and self.renderer is not None
        trained = located.covering(item.spans)
        if not trained.any():
            return rejected_record(
                record, "the chat template rendered the turns to train as no tokens"
            )
        ids = located.ids
        head = self._chat_head(ids)
        prompt = 0
        if self._truncating and len(ids) > self._max_length:
            # The completion starts at the first token of the last trained turn's rendering; the
            # prompt lies between the head and it (only truncation reads it).
            boundary = self.renderer.boundary(item.chat)
            prompt = max(located.tokens_before(boundary) - head, 0)
        return EncodedDoc(ids, trained, head, 0, record.location, prompt=prompt)

    def _chat_head(self, ids: np.ndarray) -> int:
        """How many of a rendered conversation's first ids are the template's frame (its BOS, or
        the tokenizer's own prefix): kept when truncation cuts the prompt from the left, as a
        plain document keeps its special tokens."""
        frame = self._chat_frame
        if frame and len(ids) > len(frame) and ids[: len(frame)].tolist() == frame:
            return len(frame)
        if self._bos_id is not None and len(ids) > 1 and ids[0] == self._bos_id:
            return 1
        return 0


def rejected_record(record: Record, reason: str) -> Rejected:
    """A supervised record rejected for ``reason``: it yields no trained token."""
    raw = json.dumps(record.payload.as_json() if record.payload else {}, ensure_ascii=False)
    return Rejected(record.source, record.line, reason, raw, without_labels=True)


def _payload(record: Record, kind: type) -> Any:
    if not isinstance(record.payload, kind):
        raise TypeError(f"{record.location}: expected a {kind.__name__} record")
    return record.payload


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
        self._fast = load_backend(spec)
        self._offsets = load_backend(spec)
        # With no special tokens added, a post-processor changes offsets only (ByteLevel trims).
        self._offsets.post_processor = None
        definition = json.loads(spec.backend_json)
        self._nfc = (definition.get("normalizer") or {}).get("type") == "NFC"
        self._lengths = _byte_lengths(definition, self._fast)
        if self._lengths is not None and not self._agrees(self._probes()):
            self._lengths = None

    @property
    def by_bytes(self) -> bool:
        """Whether spans come from byte lengths (else from offsets)."""
        return self._lengths is not None

    def locate(self, texts: Sequence[str]) -> list[Located]:
        """Each text's ids and token spans, in order."""
        if self._lengths is None:
            return self._by_offsets(texts)
        # A text NFC would change is not the bytes an NFC tokenizer splits: it takes offsets.
        by_bytes = [not self._nfc or unicodedata.is_normalized("NFC", t) for t in texts]
        by_lengths = iter(self._by_lengths(list(compress(texts, by_bytes))))
        by_offsets = iter(self._by_offsets(list(compress(texts, [not b for b in by_bytes]))))
        return [next(by_lengths) if b else next(by_offsets) for b in by_bytes]

    def _by_lengths(self, texts: Sequence[str]) -> list[Located]:
        assert self._lengths is not None
        if not texts:
            return []
        encodings = self._fast.encode_batch_fast(list(texts), add_special_tokens=False)
        flat, sizes = flatten_ids([e.ids for e in encodings])
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
        pairs = zip(self._by_lengths(probes), self._by_offsets(probes), strict=True)
        for by_length, by_offset in pairs:
            starts, ends = _char_spans(by_length)
            if not (
                np.array_equal(by_length.ids, by_offset.ids)
                and np.array_equal(starts, by_offset.starts)
                and np.array_equal(ends, by_offset.ends)
            ):
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
