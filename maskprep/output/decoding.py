"""Reading parsed JSON into typed dataclasses, naming the field at fault.

The manifest is read by its dataclasses' own type hints: ``int``, ``float``, ``str``, ``bool``,
``None``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` and nested dataclasses.
A missing key or a value of the wrong JSON type is a :class:`~maskprep.errors.ManifestError`
naming the file and the field (``shards[2].rows: expected an integer, got "many"``). A key may be
missing only where its field defaults to ``None`` (something not every manifest records, such as
``part``); keys the dataclass does not have are ignored, so a manifest with more than this
version writes still reads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, TypeVar

from ..errors import ManifestError

T = TypeVar("T")

_JSON_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def json_kind(value: Any) -> str:
    """A JSON value shortly, for messages: ``"many"``, ``[...]``, ``{...}``."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(kind: Any, value: Any, path: str, where: str) -> Any:
    """``value`` (parsed JSON) as ``kind``; ``path`` names the file and ``where`` the field in
    the :class:`ManifestError` raised when it does not fit."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(kind)
        if value is None and type(None) in arms:
            return None
        others = [a for a in arms if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"cannot decode {kind}")
        return decode(others[0], value, path, where)
    if kind is type(None):
        if value is not None:
            raise ManifestError(path, where, f"expected null, got {json_kind(value)}")
        return None
    if dataclasses.is_dataclass(kind):
        return decode_fields(kind, value, path, where)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ManifestError(path, where, f"expected a list, got {json_kind(value)}")
        (item,) = typing.get_args(kind)[:1]
        items = [decode(item, v, path, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ManifestError(path, where, f"expected an object, got {json_kind(value)}")
        _, item = typing.get_args(kind)
        return {k: decode(item, v, path, f"{where}.{k}") for k, v in value.items()}
    return _scalar(kind, value, path, where)


def _scalar(kind: type, value: Any, path: str, where: str) -> Any:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        expected = _JSON_NAMES.get(kind, kind.__name__)
        raise ManifestError(path, where, f"expected {expected}, got {json_kind(value)}")
    return value


def decode_fields(cls: type[T], value: Any, path: str, where: str, **given: Any) -> T:
    """The dataclass ``cls`` from the JSON object ``value``, field by field; ``given`` supplies
    fields decoded otherwise by the caller."""
    if not isinstance(value, dict):
        raise ManifestError(path, where, f"expected an object, got {json_kind(value)}")
    hints = _hints(cls)  # type: ignore[arg-type] # a class is hashable
    kwargs: dict[str, Any] = dict(given)
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not spec.init or spec.name in given:
            continue
        inner = f"{where}.{spec.name}" if where else spec.name
        if spec.name not in value:
            if spec.default is None:
                continue
            raise ManifestError(path, inner, "missing")
        kwargs[spec.name] = decode(hints[spec.name], value[spec.name], path, inner)
    return cls(**kwargs)
