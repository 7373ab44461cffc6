"""Storage options: the keyword arguments fsspec passes to a filesystem (``endpoint_url``,
``anon``, ``client_kwargs``...), given as ``key=value`` text.

A key applies to every protocol, or to one when prefixed with it (``s3:endpoint_url=...``), so an
``hf://`` input and an ``s3://`` output can be configured side by side. Dots nest
(``client_kwargs.region_name=eu-west-1`` gives ``{"client_kwargs": {"region_name": ...}}``).
A value is read as JSON when it is JSON (``true``, ``3``, ``{"a": 1}``), else kept as text, so
``anon=true`` is a bool and ``endpoint_url=http://host:9000`` a string.

Nothing here reads the environment: the credentials and endpoint variables (``AWS_*``) are read by
the filesystems themselves, the standard way, and a caller that takes options from a variable
passes its text to :func:`parse_options_text`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

_PROTOCOL = re.compile(r"[a-z][a-z0-9+.-]*")
_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class StorageOption:
    """One option: ``protocol`` (None: every protocol), the dotted key path, the value."""

    protocol: str | None
    key: tuple[str, ...]
    value: Any


@dataclass(frozen=True)
class StorageOptions:
    """Options in the order given; a later one overrides an earlier one with the same key."""

    entries: tuple[StorageOption, ...] = ()

    def for_protocol(self, protocol: str) -> dict[str, Any]:
        """The keyword arguments for ``protocol``'s filesystem: unscoped options, then its own."""
        result: dict[str, Any] = {}
        for scoped in (False, True):
            for entry in self.entries:
                if (entry.protocol is not None) == scoped and entry.protocol in (None, protocol):
                    _set_nested(result, entry.key, entry.value)
        return result

    def merged(self, later: StorageOptions) -> StorageOptions:
        """These options with ``later`` applied on top (flags over an environment variable)."""
        return StorageOptions(self.entries + later.entries)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], protocol: str | None = None
    ) -> StorageOptions:
        """Options from a dict of keyword arguments, for every protocol or for ``protocol``."""
        return cls(tuple(StorageOption(protocol, (key,), value) for key, value in mapping.items()))

    def __bool__(self) -> bool:
        return bool(self.entries)


def _set_nested(target: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        inner = target.get(part)
        if not isinstance(inner, dict):
            inner = target[part] = {}
        target = inner
    target[key[-1]] = value


def parse_option(item: str, *, source: str = "storage option") -> StorageOption:
    """Parse one ``[protocol:]key[.sub]=value``; ``source`` names where it came from in errors."""
    key_text, sep, value_text = item.partition("=")
    if not sep:
        raise ConfigError(f"{source} {item!r}: expected key=value")
    protocol, colon, dotted = key_text.strip().rpartition(":")
    if colon and not _PROTOCOL.fullmatch(protocol):
        raise ConfigError(f"{source} {item!r}: {protocol!r} is not a protocol name")
    parts = tuple(dotted.split("."))
    bad = [p for p in parts if not _KEY_PART.fullmatch(p)]
    if bad:
        raise ConfigError(f"{source} {item!r}: {bad[0]!r} is not a valid option name")
    return StorageOption(protocol or None, parts, _value(value_text))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_option_items(items: Iterable[str], *, source: str = "storage option") -> StorageOptions:
    """Parse ``key=value`` items (one per command-line flag, say)."""
    return StorageOptions(tuple(parse_option(item, source=source) for item in items))


def parse_options_text(text: str, *, source: str) -> StorageOptions:
    """Parse options kept in one string (an environment variable): a JSON object, or
    whitespace-separated ``key=value`` items (shell quoting allowed).

    In the JSON form a top-level key may be scoped (``{"s3:endpoint_url": ...}``); nested objects
    are values, so dots are not split there.
    """
    stripped = text.strip()
    if not stripped:
        return StorageOptions()
    if stripped.startswith("{"):
        try:
            mapping = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON: {exc}") from None
        entries = []
        for key, value in mapping.items():
            protocol, colon, name = key.rpartition(":")
            if colon and not _PROTOCOL.fullmatch(protocol):
                raise ConfigError(f"{source}: {protocol!r} in {key!r} is not a protocol name")
            if not _KEY_PART.fullmatch(name):
                raise ConfigError(f"{source}: {name!r} is not a valid option name")
            entries.append(StorageOption(protocol or None, (name,), value))
        return StorageOptions(tuple(entries))
    try:
        items = shlex.split(stripped)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return parse_option_items(items, source=source)
