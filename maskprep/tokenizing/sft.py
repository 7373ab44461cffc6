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

Character spans become token flags through each token's span in the text (:mod:`.located`).
Records are prepared (rendered) in Python, then encoded in batches by the backend, beside the
main thread (:mod:`.stream`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import storage
from ..config import SFTConfig, ShapeConfig, TokenizerConfig
from ..errors import ConfigError, IOFailure, Option
from ..sources.records import Record, Rejected
from ..sources.sft import Conversation, PromptCompletion
from .chat import ChatRenderer, RenderedChat, Unusable, template_variables
from .encoder import EncodedDoc, EncoderSpec, special_frame
from .located import BackendLocator, Located

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
        # The tokenizer may already end every sequence with EOS (its suffix); never add a second.
        self.append_eos = add_eos and (not suffix or suffix[-1] != self.eos_id)
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
                prepared.append(_rejected(record, str(exc)))
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
            return _rejected(record, "the chat template rendered the turns to train as no tokens")
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


def _rejected(record: Record, reason: str) -> Rejected:
    raw = json.dumps(record.payload.as_json() if record.payload else {}, ensure_ascii=False)
    return Rejected(record.source, record.line, reason, raw, without_labels=True)


def _payload(record: Record, kind: type) -> Any:
    if not isinstance(record.payload, kind):
        raise TypeError(f"{record.location}: expected a {kind.__name__} record")
    return record.payload
