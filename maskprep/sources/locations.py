"""Inputs on object stores and other fsspec filesystems (``s3://bucket/in.jsonl``): found by
stat, listing or glob, and read as streams (never downloaded whole first), through
:mod:`maskprep.storage`. A plain path never comes here: local inputs keep the plain ``open``.

A URL input is named by its URL everywhere a local one is named by its path: in ``file:line``
errors, in rejects and in the manifest.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from .. import storage


def is_url(name: str) -> bool:
    """Whether an input is a URL of a non-local filesystem (``file://`` counts as local)."""
    return "://" in name and not storage.parse_location(name).is_local


def location_of(name: str, options: storage.StorageOptions | None) -> storage.Location:
    """The storage location of an input URL."""
    return storage.parse_location(name, options)


def size_of(name: str, options: storage.StorageOptions | None) -> int:
    """The size of an input object in bytes."""
    return storage.stat(location_of(name, options)).size


def open_url(
    name: str, options: storage.StorageOptions | None, start: int = 0, end: int | None = None
) -> BinaryIO:
    """A stream of an object's bytes from ``start`` (to ``end``, when given), fetched as it is
    read: a part of a large object reads only its own range. It is an :class:`io.BufferedReader`
    as a local file's is (fsspec's own files take no size in ``readline``, which the line cap
    needs); seekable unless ``end`` is given."""
    handle = storage.open_read(location_of(name, options), start)
    if end is None:
        return io.BufferedReader(handle)  # type: ignore[type-var]  # an fsspec file is raw I/O
    return io.BufferedReader(Window(handle, end - start))


class Window(io.RawIOBase):
    """At most ``left`` bytes of an open stream (an object's, or a local file's seeked to where
    a part starts), then its end; closing it closes the stream."""

    def __init__(self, handle: BinaryIO, left: int) -> None:
        super().__init__()
        self._handle = handle
        self._left = left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self._left)
        if want <= 0:
            return 0
        data = self._handle.read(want)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()
