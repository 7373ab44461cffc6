"""Inputs as streams, wherever they are: local files and objects of a store
(``s3://bucket/in.jsonl``) alike, through :mod:`maskprep.storage` (a local file keeps the plain
``open``; an object is fetched as it is read, never downloaded whole first).

An input is named by its path or URL everywhere: in ``file:line`` errors, in rejects and in the
manifest.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from .. import storage


def input_info(name: str, options: storage.StorageOptions | None) -> storage.ObjectInfo:
    """What the store (or the filesystem) says of an input: size, modification time, whether it
    is a regular file."""
    return storage.stat(storage.parse_location(name, options))


def size_of(name: str, options: storage.StorageOptions | None) -> int:
    """The size of an input in bytes."""
    return input_info(name, options).size


def open_input(
    name: str, options: storage.StorageOptions | None, start: int = 0, end: int | None = None
) -> BinaryIO:
    """A buffered stream of an input's bytes from ``start`` (to ``end``, when given): a part of a
    large input reads only its own range. Seekable unless ``end`` is given. (fsspec's own files
    take no size in ``readline``, which the line cap needs: they are buffered here.)"""
    handle = storage.open_read(storage.parse_location(name, options), start)
    if end is not None:
        return io.BufferedReader(Window(handle, end - start))
    if isinstance(handle, io.BufferedIOBase):
        return handle
    return io.BufferedReader(handle)  # type: ignore[type-var]  # an fsspec file is raw I/O


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
