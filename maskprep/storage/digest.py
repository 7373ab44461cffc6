"""The one streaming sha256 of maskprep: a file, an object or a byte range hashed in blocks, so
that memory stays flat whatever its size."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import BinaryIO, overload

from .location import Location
from .operations import open_read

#: Bytes read at a time.
BLOCK = 1 << 20


#: Told every block as it is hashed (to copy or count what passes).
Each = Callable[[bytes], object]


@overload
def sha256_stream(
    handle: BinaryIO, limit: int | None = None, stop: None = None, *, each: Each | None = None
) -> str: ...


@overload
def sha256_stream(
    handle: BinaryIO, limit: int | None, stop: threading.Event, *, each: Each | None = None
) -> str | None: ...


def sha256_stream(
    handle: BinaryIO,
    limit: int | None = None,
    stop: threading.Event | None = None,
    *,
    each: Each | None = None,
) -> str | None:
    """Hex sha256 of what ``handle`` reads from where it stands to its end, or of its next
    ``limit`` bytes (fewer if it ends first, which the caller's comparison then catches);
    ``None`` once ``stop`` is set before the end (checked between blocks). ``each`` is told
    every block (a copy written as it is hashed, a count of bytes or lines)."""
    digest = hashlib.sha256()
    remaining = limit
    while remaining is None or remaining > 0:
        if stop is not None and stop.is_set():
            return None
        block = handle.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not block:
            break
        digest.update(block)  # releases the GIL for large blocks
        if each is not None:
            each(block)
        if remaining is not None:
            remaining -= len(block)
    return digest.hexdigest()


def sha256_of(location: Location) -> str:
    """Hex sha256 of a file's or object's bytes, streamed."""
    with open_read(location) as handle:
        return sha256_stream(handle)
