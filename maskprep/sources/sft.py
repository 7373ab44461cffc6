"""JSON records: lines parsed without letting a hostile one crash the reader, fields by dotted
path (``meta.body``), and supervised (SFT) records, prompt/completion pairs and chat
conversations, read from JSON objects, or the reason a record cannot be used."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from ..config import SFTConfig
from ..errors import one_line

#: Message roles a chat record may use.
KNOWN_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class PromptCompletion:
    """A supervised record: the prompt (context, not trained) and the completion (trained)."""

    prompt: str
    completion: str

    def as_json(self) -> dict[str, object]:
        """The record as plain JSON data, for rejects."""
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass(frozen=True)
class Message:
    """One chat turn: a known role and its text."""

    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    """A chat record: its messages in order, at least one."""

    messages: tuple[Message, ...]

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` dicts, the form chat templates read."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def as_json(self) -> dict[str, object]:
        """The record as plain JSON data, for rejects."""
        return {"messages": self.as_dicts()}


SFTPayload = PromptCompletion | Conversation


def sft_payload(obj: dict, sft: SFTConfig) -> SFTPayload | str:
    """The supervised parts of one JSON object, or the reason they cannot be used."""
    if sft.is_chat:
        assert sft.messages_field is not None
        return _conversation(obj, sft.messages_field)
    assert sft.prompt_field is not None and sft.completion_field is not None
    try:
        parts = [string_field(obj, name) for name in (sft.prompt_field, sft.completion_field)]
    except ValueError as exc:
        return str(exc)
    if not parts[1].strip():
        return f"field '{sft.completion_field}' is empty: nothing to train on"
    return PromptCompletion(parts[0], parts[1])


def _conversation(obj: dict, name: str) -> Conversation | str:
    try:
        value = field_at(obj, tuple(name.split(".")))
    except KeyError as exc:
        return f"missing field '{exc.args[0]}'"
    if not isinstance(value, list):
        return f"field '{name}' is {json_type(value)}, expected array of messages"
    if not value:
        return f"field '{name}' is an empty array: no messages"
    messages = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            return f"{where} is {json_type(item)}, expected object with role and content"
        for key in ("role", "content"):
            if key not in item:
                return f"{where} has no '{key}'"
        role, content = item["role"], item["content"]
        if role not in KNOWN_ROLES:
            shown = json.dumps(role, ensure_ascii=False)
            return f"{where}.role {shown} is not one of {', '.join(KNOWN_ROLES)}"
        if not isinstance(content, str):
            return f"{where}.content is {json_type(content)}, expected string"
        messages.append(Message(role, content))
    return Conversation(tuple(messages))


def payload_surrogate(payload: SFTPayload, sft: SFTConfig) -> str | None:
    """Which text of ``payload`` holds a lone surrogate (see
    :func:`lone_surrogate`), as a reason for the rejects file; ``None`` when none does."""
    if isinstance(payload, PromptCompletion):
        named = [(sft.prompt_field, payload.prompt), (sft.completion_field, payload.completion)]
    else:
        named = [
            (f"{sft.messages_field}[{i}].content", m.content)
            for i, m in enumerate(payload.messages)
        ]
    for name, text in named:
        problem = lone_surrogate(text)
        if problem is not None:
            return f"field '{name}' is not text: {problem}"
    return None


def field_at(obj: dict, path: tuple[str, ...]) -> object:
    """The value at ``path`` (keys, outermost first); ``KeyError`` naming the dotted path up to
    the first key that is missing."""
    value: object = obj
    for i, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(".".join(path[: i + 1]))
        value = value[key]
    return value


def string_field(obj: dict, name: str) -> str:
    """The string at dotted path ``name``; ``ValueError`` with the reason when it is missing or
    not a string."""
    try:
        value = field_at(obj, tuple(name.split(".")))
    except KeyError as exc:
        raise ValueError(f"missing field '{exc.args[0]}'") from None
    if not isinstance(value, str):
        raise ValueError(f"field '{name}' is {json_type(value)}, expected string")
    return value


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for messages (``object``, ``array``, ``number``…)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


@dataclass(frozen=True)
class JSONProblem:
    """Why a line is not JSON, in words for the rejects file and the error message."""

    reason: str


def parse_json(text: str) -> object:
    """The JSON value of ``text``, or a :class:`JSONProblem`. Hostile lines are problems too, not
    crashes: nesting past the interpreter's recursion limit, and integers longer than Python
    converts from a string (4300 digits by default)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return JSONProblem(f"{exc.msg} (column {exc.colno})")
    except RecursionError:
        return JSONProblem("nested too deeply")
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            digits = sys.get_int_max_str_digits()
            return JSONProblem(f"an integer of more than {digits} digits")
        return JSONProblem(one_line(exc))


def lone_surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate (from an escape such as ``\\ud800``), which is not
    Unicode text and which no tokenizer accepts; ``None`` when it holds none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate \\u{ord(text[exc.start]):04x} at character {exc.start}"
    return None
