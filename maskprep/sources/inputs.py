"""Where input files are found: paths, directories and globs expanded to files, and their
formats from their extensions; and a reader that hashes the raw bytes as they pass.

Inputs are files, directories (searched recursively for known extensions), globs, or ``-`` for
standard input; URLs (``s3://…``) are found on their store by :mod:`.locations`. Compression is
recognised by magic bytes (:mod:`.compressed`), so a misnamed or piped compressed stream still
reads.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .. import storage
from ..errors import ConfigError
from ..storage import StorageOptions
from .locations import expand_url, is_url

STDIN = "-"
STDIN_NAME = "<stdin>"
TEXT_EXTENSIONS = (".txt", ".text")
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
COMPRESSED_EXTENSIONS = (".gz", ".bz2", ".zst")


def expand_inputs(inputs: Iterable[str], options: StorageOptions | None = None) -> list[str]:
    """Resolve paths, directories and globs to an ordered list of files (``-`` kept as is).

    Directories are searched recursively for files with a known extension, in sorted order, so the
    same tree always gives the same order (see :func:`directory_files`). A path or glob that
    matches nothing is an error. URLs (``s3://…``) name objects, prefixes or globs of a store
    that ``options`` configures (a store has no symbolic links to follow).
    """
    files: list[str] = []
    for given in inputs:
        # A file:// URL is its local path from here on: read, named and recorded as that path.
        item = storage.local_form(given)
        if is_url(item):
            files.extend(expand_url(item, options, _known_extension))
        elif item == STDIN:
            files.append(item)
        elif os.path.isdir(item):
            files.extend(directory_files(item))
        elif os.path.exists(item):
            files.append(item)
        elif os.path.islink(item):
            raise ConfigError(f"{item}: dangling symbolic link (its target does not exist)")
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


def directory_files(root: str) -> list[str]:
    """The input files under ``root``: files with a known extension, in sorted path order.

    Symbolic links to directories are followed, each directory read once (by device and inode),
    so a link back up the tree ends instead of looping and a tree reached twice is read once. A
    directory that cannot be listed, and a symbolic link whose target is gone, are errors: their
    files would otherwise be left out without a word.
    """

    def refuse(error: OSError) -> None:
        where = error.filename or root
        raise ConfigError(f"{where}: cannot read directory: {error.strerror}") from None

    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirs, names in os.walk(root, onerror=refuse, followlinks=True):
        info = os.stat(directory)
        if (info.st_dev, info.st_ino) in seen:
            subdirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        subdirs.sort()  # the first of two links to one directory is the one kept
        for name in names:
            path = str(Path(directory, name))  # as pathlib spells it: no ./ and no //
            if not os.path.exists(path):
                raise ConfigError(f"{path}: dangling symbolic link (its target does not exist)")
            if _known_extension(name) and os.path.isfile(path):
                found.append(path)
    if not found:
        raise ConfigError(f"{root}: directory holds no .txt or .jsonl files")
    return sorted(found)


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
