"""Compressed inputs: gzip, bzip2 and zstd recognised by their magic bytes and decompressed as
they are read, with a stream cut short reported as an error rather than read as a shorter file.

``gzip`` and ``bz2`` raise :class:`EOFError` on a truncated stream themselves. zstandard's
``stream_reader`` does not: reading across frames, it ends quietly at the end of the input even
inside a frame, so a multi-frame file (what ``zstd`` writes for streamed or concatenated input)
cut short loses its last frame without a word. :class:`ZstdFrames` reads frame by frame and
raises :class:`EOFError` when the input ends inside one, and :class:`CorruptZstd` (an
``EOFError`` too, so one handler reports both) when a frame cannot be decoded.
"""

from __future__ import annotations

import bz2
import gzip
import io
from typing import Any, BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAGICS = (GZIP_MAGIC, BZIP2_MAGIC, ZSTD_MAGIC)

#: Compressed bytes handed to the zstd decompressor at a time. A zstd block holds at most
#: 128 KiB and takes at least 4 bytes, so one call can expand its input 32768-fold: 2 KiB in
#: gives at most 64 MiB out, the size of the largest record read.
_ZSTD_FEED = 2048
_READ = 1 << 20


class CorruptZstd(EOFError):
    """A zstd frame that cannot be decoded: the input is corrupt from here on."""


class ZstdFrames(io.RawIOBase):
    """Decompresses the zstd frames of ``raw`` one after another; :class:`EOFError` when ``raw``
    ends inside a frame."""

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame: Any = self._decompressor.decompressobj()
        self._in_frame = False
        self._input = b""
        self._output = b""
        self._taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._taken == len(self._output):
            if not self._input:
                self._input = self._raw.read(_READ)
                if not self._input:
                    if self._in_frame:
                        raise EOFError("compressed file ended inside a zstd frame")
                    return 0
            self._feed()
        start = self._taken
        count = min(len(buffer), len(self._output) - start)
        buffer[:count] = memoryview(self._output)[start : start + count]
        self._taken += count
        return count

    def _feed(self) -> None:
        data, self._input = self._input[:_ZSTD_FEED], self._input[_ZSTD_FEED:]
        self._in_frame = True
        try:
            self._output = self._frame.decompress(data)
        except self._error as exc:
            raise CorruptZstd(f"corrupt zstd data ({exc})") from None
        self._taken = 0
        if self._frame.eof:
            # The frame ended inside this slice: what follows it starts the next frame.
            self._input = self._frame.unused_data + self._input
            self._frame = self._decompressor.decompressobj()
            self._in_frame = False


def decompressed(stream: io.BufferedReader) -> BinaryIO:
    """``stream`` decompressed when it starts with a gzip, bzip2 or zstd magic, else as is."""
    head = stream.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head.startswith(BZIP2_MAGIC):
        return bz2.BZ2File(stream)  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        return io.BufferedReader(ZstdFrames(stream), buffer_size=_READ)
    return stream


def is_compressed(handle: BinaryIO) -> bool:
    """True when an input opened at its start begins with a gzip, bzip2 or zstd magic number
    (the stream is left after those bytes)."""
    return handle.read(4).startswith(MAGICS)
