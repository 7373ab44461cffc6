"""What the storage layer reports about objects, and how its temporary names look."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .location import Location

#: Prefix of the names a writer uses while an object is incomplete (local files, and stores
#: without staged uploads). Hidden from listings; a crashed writer's leftovers match
#: :func:`is_temporary` and may be removed.
TEMP_PREFIX = ".tmp-"
_TEMPORARY = re.compile(r"\.tmp-.+\.[0-9a-f]{16}")


@dataclass(frozen=True)
class ObjectInfo:
    """One object (or directory / prefix) as the store describes it.

    ``mtime`` is seconds since the epoch (``mtime_ns`` exactly, in nanoseconds, where the
    filesystem says); ``etag`` is the store's entity tag as it gives it (quotes included on S3),
    ``None`` on local files, whose identity is size and mtime. ``regular`` is false for what is
    no regular file nor directory (a named pipe, a device: it cannot be read twice, nor sized).
    """

    location: Location
    size: int
    is_dir: bool = False
    mtime: float | None = None
    etag: str | None = None
    regular: bool = True
    mtime_ns: int | None = None

    @property
    def name(self) -> str:
        """The object's last path component."""
        return self.location.name


@dataclass(frozen=True)
class WriteResult:
    """A completed write: where, how many bytes, their sha256 (computed as they streamed out;
    ``None`` for a server-side copy, whose bytes never passed through), and the new ETag where
    the store returned one."""

    location: Location
    size: int
    sha256: str | None
    etag: str | None = None


def temporary_name(name: str, tag: str | None = None) -> str:
    """A temporary name for ``name`` in the same directory: ``.tmp-NAME.<16 hex>``, the hex
    being the writer's ``tag`` (so that it can find its own) or fresh."""
    return f"{TEMP_PREFIX}{name}.{tag or secrets.token_hex(8)}"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of :func:`temporary_name`'s names (a writer's, never final)."""
    return _TEMPORARY.fullmatch(name) is not None
