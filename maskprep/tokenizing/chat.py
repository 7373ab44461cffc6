"""Rendering chat records with a chat template, and finding the character spans to train.

Trained spans come from the template itself where it marks them (``{% generation %}`` blocks,
the spans behind transformers' ``return_assistant_tokens_mask``): one render per conversation.
Otherwise each assistant turn is what the template renders after the generation prompt: the
conversation up to the turn is rendered with ``add_generation_prompt=True`` (the text a model is
given at inference) and up to the turn's end, and the difference is what the model must generate:
the answer, the template's end-of-turn token, and the whitespace the template puts before the
answer (Mistral's space after ``[/INST]``). A template that ignores ``add_generation_prompt``
renders the role header inside that difference; training then starts at the answer. Every such
rendering must be the start of the whole conversation's; a template for which that fails is not
prefix-stable and the record is refused rather than guessed at.

The compiled template is transformers' (its sandboxed environment, ``raise_exception``,
``tojson``, the generation tracker), rendered directly: ``render_jinja_template`` spends most of
its time copying the conversation, which maskprep's messages (fresh dicts of strings) do not need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import one_line

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

Messages = list[dict[str, str]]


class Unusable(Exception):
    """A chat record the template cannot be trusted to render into trained spans."""


@dataclass(frozen=True)
class RenderedChat:
    """A rendered conversation: its text, the character spans to train, its messages and the
    index of the last one trained (where :meth:`ChatRenderer.boundary` finds the prompt/completion
    boundary truncation uses: only a conversation longer than a row needs it)."""

    text: str
    spans: tuple[tuple[int, int], ...]
    messages: Messages
    last: int


class ChatRenderer:
    """Renders conversations with one chat template; ``train_on`` as in
    :class:`~maskprep.config.SFTConfig`. ``variables`` are the template's extra names (the
    tokenizer's special tokens: ``bos_token``, ``eos_token``, ...)."""

    def __init__(self, template: str, train_on: str, variables: dict[str, Any]) -> None:
        from transformers.utils import chat_template_utils

        self.template = template
        self.train_on = train_on
        self.tagged = bool(_GENERATION_TAG.search(template))
        self._variables = variables
        self._utils = chat_template_utils
        self._compiled = chat_template_utils._compile_jinja_template(template)

    def render(self, messages: Messages, add_generation_prompt: bool = False) -> str:
        """``messages`` rendered as ``render_jinja_template`` renders them."""
        return self._compiled.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self._variables,
        )

    def _render_tagged(self, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
        tracked = getattr(self._utils, "_render_with_assistant_indices", None)
        if tracked is not None:
            text, spans = tracked(
                compiled_template=self._compiled,
                messages=messages,
                tools=None,
                documents=None,
                add_generation_prompt=False,
                **self._variables,
            )
            return text, [(int(a), int(b)) for a, b in spans]
        # Another transformers layout: its public function, slower by a copy of the messages.
        # Annotated as returning str, it returns (texts, spans) per conversation.
        result: Any = self._utils.render_jinja_template(
            conversations=[messages],
            chat_template=self.template,
            return_assistant_tokens_mask=True,
            **self._variables,
        )
        texts, indices = result
        return texts[0], [(int(a), int(b)) for a, b in indices[0]]

    def spans(self, messages: Messages) -> RenderedChat:
        """Render ``messages`` and find the character spans to train.

        Raises :class:`Unusable` when there is nothing to train, the template fails, or its
        renderings are not prefix-stable.
        """
        roles = [m["role"] for m in messages]
        if self.train_on == "all":
            last = len(messages) - 1
        elif "assistant" in roles:
            last = len(roles) - 1 - roles[::-1].index("assistant")
        else:
            raise Unusable("no assistant message to train on")
        try:
            if self.train_on == "all":
                text = self.render(messages)
                spans = [(0, len(text))]
            elif self.tagged:
                text, spans = self._render_tagged(messages)
                spans = [s for s in spans if s[1] > s[0]]
                if not spans:
                    raise Unusable(
                        "the chat template's {% generation %} blocks mark no text to train"
                    )
            else:
                text = self.render(messages)
                spans = self._turn_spans(messages, text)
        except Unusable:
            raise
        except Exception as exc:  # Jinja raises many types, including the template's own errors
            raise Unusable(f"chat template failed: {one_line(exc)}") from None
        if self.train_on == "last-assistant":
            spans = spans[-1:]
        return RenderedChat(text, tuple(spans), messages, last)

    def boundary(self, chat: RenderedChat) -> int:
        """Where the last trained message's rendering begins in ``chat.text``: rendering the
        messages before it, or, where that is not a prefix of the whole, the first character of
        the last trained span."""
        if not chat.last:
            return 0
        try:
            before = self.render(chat.messages[: chat.last])
        except Exception:  # rendered whole before: a template failing on a prefix has no prefix
            return chat.spans[-1][0]
        return len(before) if chat.text.startswith(before) else chat.spans[-1][0]

    def _turn_spans(self, messages: Messages, text: str) -> list[tuple[int, int]]:
        """Each assistant turn's span: what the template renders after the generation prompt,
        up to the end of the turn (whitespace after its end-of-turn token left out)."""
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            opened = self.render(messages[:i], add_generation_prompt=True)
            closed = text if i + 1 == len(messages) else self.render(messages[: i + 1])
            if not (closed.startswith(opened) and text.startswith(closed)):
                raise Unusable(
                    f"chat template is not prefix-stable: rendering messages[:{i + 1}] does not "
                    "give the start of rendering the whole conversation, so the assistant turns "
                    "cannot be located; use a template with {% generation %} blocks"
                )
            turn = closed[len(opened) :]
            content = message["content"]
            found = turn.find(content)
            if found < 0 and content.strip():
                content = content.strip()
                found = turn.find(content)
            if found < 0:
                raise Unusable(
                    f"the chat template changes the content of messages[{i}]; cannot locate it"
                )
            # What the template writes between the prompt and the answer is generated too when it
            # is layout (Mistral's space after [/INST]); a role header there (a template that
            # ignores add_generation_prompt) is not part of the answer.
            start = len(opened) + (found if turn[:found].strip() else 0)
            # Whitespace after the end-of-turn token belongs to the layout, not to the answer,
            # but the answer's own trailing whitespace is trained.
            end = len(opened) + max(len(turn.rstrip()), found + len(content.rstrip()))
            spans.append((start, end))
        return spans


def template_variables(tokenizer: Any) -> dict[str, Any]:
    """The names a tokenizer's chat template is rendered with: its special tokens."""
    return dict(tokenizer.special_tokens_map)
