"""Supervised fine-tuning records → token ids with a per-token ``trained`` mask.

Two kinds of record, both turned into :class:`~maskprep.tokenizing.encoder.EncodedDoc` objects whose
``trained`` mask is the only thing labels are later derived from:

- prompt/completion: ``<s> prompt completion </s>`` with only ``completion </s>`` trained. Prompt
  and completion are tokenized apart, so the boundary between them is exact;
- chat: the messages rendered by a chat template, with the assistant turns trained (their content
  and the template's end-of-turn token)::

      <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n | Hello!<|im_end|> | \\n
      ------------------- not trained ------------------------ | --- trained ---- | not

Trained spans come from the template itself where it marks them (``{% generation %}`` blocks,
the spans behind transformers' ``return_assistant_tokens_mask``). Otherwise each assistant turn is
found by rendering the conversation up to it (with the generation prompt) and up to its end, and
checking that every such rendering is a prefix of the whole; a template for which that fails is
refused rather than guessed at. Character spans become token flags through the tokenizer's offsets,
the way transformers builds its assistant mask.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import storage
from ..config import SFTConfig, TokenizerConfig
from ..errors import ConfigError, IOFailure, Option, one_line
from ..sources.records import Record, Rejected
from ..sources.sft import Conversation, PromptCompletion
from .encoder import EncodedDoc, special_frame

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


#: The most bytes of a chat template file read. Real templates are a few KiB (tool-calling ones
#: some 15 KiB); what is larger is another file, or one that never ends.
MAX_CHAT_TEMPLATE_BYTES = 1 << 20


class _Unusable(Exception):
    """A chat record the template cannot be trusted to render into trained spans."""


@dataclass(frozen=True)
class ChatSpans:
    """A rendered conversation: its text, the character spans to train, and where the last trained
    turn begins (the prompt/completion boundary that truncation uses)."""

    text: str
    spans: tuple[tuple[int, int], ...]
    boundary: int


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


def trained_token_mask(offsets: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Flags for the tokens (``offsets``: ``(n, 2)`` character start/end) overlapping any span.

    A token cut by a span's edge counts as inside it, as in transformers' assistant mask.
    """
    starts, ends = offsets[:, 0], offsets[:, 1]
    mask = np.zeros(len(offsets), dtype=bool)
    for start, end in spans:
        mask |= (starts < end) & (ends > start)
    return mask


class SFTEncoder:
    """Encodes batches of supervised records into :class:`EncodedDoc` or :class:`Rejected`."""

    def __init__(self, tokenizer: Any, config: TokenizerConfig, sft: SFTConfig) -> None:
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
        self.template: str | None = getattr(tokenizer, "chat_template", None)
        if isinstance(self.template, dict):  # several named templates: the default one renders
            self.template = self.template.get("default")
        if sft.is_chat and not self.template:
            # Refused before any record is read: every chat record would be rejected for it.
            raise ConfigError.suggesting(
                "tokenizer {name!r} has no chat template to render chat records with; give one "
                "(a Jinja file) with {option}",
                name=config.name_or_path,
                option=Option("sft.chat_template", "FILE"),
            )
        self._template_kwargs = dict(tokenizer.special_tokens_map)

    def encode_records(self, records: Sequence[Record]) -> list[EncodedDoc | Rejected]:
        """Encode a batch of records, in order; a record that cannot be trained is Rejected."""
        if self.sft.is_chat:
            return self._encode_chats(records)
        return self._encode_pairs(records)

    # prompt/completion -----------------------------------------------------------------------

    def _encode_pairs(self, records: Sequence[Record]) -> list[EncodedDoc | Rejected]:
        pairs = [_payload(r, PromptCompletion) for r in records]
        prompts = self._ids([p.prompt for p in pairs])
        completions = self._ids([p.completion for p in pairs])
        head, tail = len(self._prefix), len(self._suffix)
        docs: list[EncodedDoc | Rejected] = []
        for record, prompt, completion in zip(records, prompts, completions, strict=True):
            if self.append_eos and (not completion or completion[-1] != self.eos_id):
                completion = [*completion, self.eos_id]
            ids = np.concatenate(
                (self._prefix, np.asarray(prompt + completion, np.int32), self._suffix)
            ).astype(np.int32)
            trained = np.ones(len(ids), dtype=bool)
            if not self.sft.train_on_prompt:
                trained[: head + len(prompt)] = False
            docs.append(EncodedDoc(ids, trained, head, tail, record.location, prompt=len(prompt)))
        return docs

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(
            texts,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]

    # chat --------------------------------------------------------------------------------------

    def _encode_chats(self, records: Sequence[Record]) -> list[EncodedDoc | Rejected]:
        rendered: list[ChatSpans | Rejected] = []
        for record in records:
            conversation = _payload(record, Conversation)
            try:
                rendered.append(self._chat_spans(conversation))
            except _Unusable as exc:
                raw = json.dumps(conversation.as_json(), ensure_ascii=False)
                rendered.append(
                    Rejected(record.source, record.line, str(exc), raw, without_labels=True)
                )
        texts = [r.text for r in rendered if isinstance(r, ChatSpans)]
        tokens = iter(self._ids_and_offsets(texts))
        docs: list[EncodedDoc | Rejected] = []
        for record, item in zip(records, rendered, strict=True):
            if isinstance(item, Rejected):
                docs.append(item)
                continue
            ids, offsets = next(tokens)
            token_spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            trained = trained_token_mask(token_spans, item.spans)
            if not trained.any():
                raw = json.dumps(_payload(record, Conversation).as_json(), ensure_ascii=False)
                reason = "the chat template rendered the turns to train as no tokens"
                docs.append(Rejected(record.source, record.line, reason, raw, without_labels=True))
                continue
            ids_array = np.asarray(ids, dtype=np.int32)
            head = self._chat_head(ids_array)
            # The completion starts at the first token of the last trained turn's rendering; the
            # prompt lies between the head and it.
            start = int(np.searchsorted(token_spans[:, 0], item.boundary, side="left"))
            docs.append(
                EncodedDoc(
                    ids_array, trained, head, 0, record.location, prompt=max(start - head, 0)
                )
            )
        return docs

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

    def _ids_and_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        if not texts:  # the tokenizer cannot take an empty batch
            return []
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        return list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))

    def _chat_spans(self, conversation: Conversation) -> ChatSpans:
        """Render ``conversation`` and find the character spans to train.

        Raises ``_Unusable`` (a bad record) when there is nothing to train, the template fails,
        or its renderings are not prefix-stable.
        """
        assert self.template is not None, "checked when the encoder was made"
        messages = conversation.as_dicts()
        roles = [m["role"] for m in messages]
        if self.sft.train_on == "all":
            last = len(messages) - 1
        elif "assistant" in roles:
            last = len(roles) - 1 - roles[::-1].index("assistant")
        else:
            raise _Unusable("no assistant message to train on")
        try:
            if self.sft.train_on == "all":
                text, _ = self._render(messages)
                spans = [(0, len(text))]
            elif _GENERATION_TAG.search(self.template):
                text, spans = self._render(messages, spans=True)
                spans = [s for s in spans if s[1] > s[0]]
                if not spans:
                    raise _Unusable(
                        "the chat template's {% generation %} blocks mark no text to train"
                    )
            else:
                text, _ = self._render(messages)
                spans = self._turn_spans(messages, text)
            if self.sft.train_on == "last-assistant":
                spans = spans[-1:]
            before, _ = self._render(messages[:last]) if last else ("", [])
        except _Unusable:
            raise
        except Exception as exc:  # Jinja raises many types, including the template's own errors
            raise _Unusable(f"chat template failed: {one_line(exc)}") from None
        # Where rendering up to the last trained message is not a prefix of the whole, fall back
        # to the first character of the last trained span.
        boundary = len(before) if text.startswith(before) else spans[-1][0]
        return ChatSpans(text, tuple(spans), boundary)

    def _turn_spans(self, messages: list[dict[str, str]], text: str) -> list[tuple[int, int]]:
        """Each assistant turn's span, found by rendering the conversation up to it."""
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            opened, _ = self._render(messages[:i], add_generation_prompt=True)
            closed, _ = self._render(messages[: i + 1])
            if not (closed.startswith(opened) and text.startswith(closed)):
                raise _Unusable(
                    f"chat template is not prefix-stable: rendering messages[:{i + 1}] does not "
                    "give the start of rendering the whole conversation, so the assistant turns "
                    "cannot be located; use a template with {% generation %} blocks"
                )
            turn = closed[len(opened) :]
            content = message["content"]
            found = turn.find(content)
            if found < 0 and content.strip():
                found = turn.find(content.strip())
            if found < 0:
                raise _Unusable(
                    f"the chat template changes the content of messages[{i}]; cannot locate it"
                )
            # Whitespace after the end-of-turn token belongs to the layout, not to the answer.
            end = len(opened) + len(turn.rstrip())
            start = len(opened) + found
            spans.append((start, max(end, start + len(content.rstrip()))))
        return spans

    def _render(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = False, spans=False
    ) -> tuple[str, list[tuple[int, int]]]:
        from transformers.utils.chat_template_utils import render_jinja_template

        # Annotated as returning str, it returns (texts, spans) per conversation.
        result: Any = render_jinja_template(
            conversations=[messages],
            chat_template=self.template,
            return_assistant_tokens_mask=spans,
            add_generation_prompt=add_generation_prompt,
            **self._template_kwargs,
        )
        rendered, indices = result
        return rendered[0], [tuple(s) for s in indices[0]] if spans else []


def _payload(record: Record, kind: type) -> Any:
    if not isinstance(record.payload, kind):
        raise TypeError(f"{record.location}: expected a {kind.__name__} record")
    return record.payload
