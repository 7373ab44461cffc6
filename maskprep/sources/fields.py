"""Fields of a JSON record by dotted path (``meta.body``), as text and SFT records read them."""

from __future__ import annotations


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
