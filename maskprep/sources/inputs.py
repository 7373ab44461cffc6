"""Where input files are found and how their bytes are read: paths, directories and globs
expanded to files, extensions, compression recognised by magic bytes, and a reader that hashes
the raw bytes as they pass.

Inputs are files, directories (searched recursively for known extensions), globs, or ``-`` for
standard input; gzip, bzip2 and zstd are recognised by their magic bytes, so a misnamed or piped
compressed stream still reads.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError
from ..storage import StorageOptions
from .locations import expand_url, is_url

STDIN = "-"
STDIN_NAME = "<stdin>"
TEXT_EXTENSIONS = (".txt", ".text")
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
COMPRESSED_EXTENSIONS = (".gz", ".bz2", ".zst")

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The magic numbers compressed inputs are recognised by: gzip, bzip2, zstd.
COMPRESSION_MAGICS = (_GZIP_MAGIC, _BZIP2_MAGIC, _ZSTD_MAGIC)


def expand_inputs(inputs: Iterable[str], options: StorageOptions | None = None) -> list[str]:
    """Resolve paths, directories and globs to an ordered list of files (``-`` kept as is).

    Directories are searched recursively for files with a known extension, in sorted order, so the
    same tree always gives the same order. A path or glob that matches nothing is an error. URLs
    (``s3://…``) name objects, prefixes or globs of a store that ``options`` configures.
    """
    files: list[str] = []
    for item in inputs:
        if is_url(item):
            files.extend(expand_url(item, options, _known_extension))
        elif item == STDIN:
            files.append(item)
        elif os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and _known_extension(p.name)
            )
            if not found:
                raise ConfigError(f"{item}: directory holds no .txt or .jsonl files")
            files.extend(found)
        elif os.path.exists(item):
            files.append(item)
        elif glob.has_magic(item):
            matched = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matched:
                raise ConfigError(f"{item}: no file matches this pattern")
            files.extend(matched)
        else:
            raise ConfigError(f"{item}: no such file or directory")
    if files.count(STDIN) > 1:
        raise ConfigError("standard input ('-') can be read only once")
    return files


def _strip_compression(name: str) -> str:
    lowered = name.lower()
    for ext in COMPRESSED_EXTENSIONS:
        if lowered.endswith(ext):
            return lowered[: -len(ext)]
    return lowered


def _known_extension(name: str) -> bool:
    return _strip_compression(name).endswith(TEXT_EXTENSIONS + JSONL_EXTENSIONS)


def format_from_name(name: str) -> str | None:
    """``"text"`` or ``"jsonl"`` from a file name's extension (compression suffix ignored)."""
    base = _strip_compression(name)
    if base.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    if base.endswith(TEXT_EXTENSIONS):
        return "text"
    return None


class HashingReader(io.RawIOBase):
    """Counts and hashes the raw bytes that pass through, so inputs are read exactly once."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        # read1 returns what is there: a pipe's records are processed as they arrive, instead
        # of waiting for a whole buffer (or the end of the stream).
        read = getattr(self._raw, "read1", self._raw.read)
        data = read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n


def decompressed(stream: io.BufferedReader) -> BinaryIO:
    """``stream`` decompressed when it starts with a gzip, bzip2 or zstd magic, else as is."""
    head = stream.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head.startswith(_BZIP2_MAGIC):
        return bz2.BZ2File(stream)  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return io.BufferedReader(reader)
    return stream


def sniff_format(first_line: bytes | None) -> str:
    """Guess the format from the first non-blank line: a JSON object means JSONL."""
    if first_line is None:
        return "text"
    stripped = first_line.strip().lstrip(b"\xef\xbb\xbf")
    if stripped.startswith(b"{"):
        try:
            return "jsonl" if isinstance(json.loads(stripped), dict) else "text"
        except ValueError:
            return "jsonl"  # looks like JSON; let the parser name the exact problem and line
    return "text"
