"""JSON records: lines parsed without letting a hostile one crash the reader, and fields by
dotted path (``meta.body``), as text and SFT records read them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from ..errors import one_line


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
