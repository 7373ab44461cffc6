"""Where input files are found: paths, directories and globs expanded to files, and their
formats from their extensions; and a reader that hashes the raw bytes as they pass.

Inputs are files, directories (searched recursively for known extensions), globs, or ``-`` for
standard input; a URL (``s3://…``) names an object, a prefix or a glob of a store, found by the
same rules through :mod:`maskprep.storage`. Compression is recognised by magic bytes
(:mod:`.compressed`), so a misnamed or piped compressed stream still reads.

**One rule for names, local or not:** a name that exists (a file, a directory, an object, a
prefix) is read as it is, even when it holds glob characters (``a[1].jsonl``); only a name that
does not exist and holds them (``*``, ``?``, ``[``) is a pattern. **One rule for maskprep's own
outputs:** a directory (or prefix) that holds a maskprep manifest or a writer's record is an
output, never input: a directory walk or a glob leaves it out, with everything below it, so an
output kept inside its input directory is not read back on the next build.
"""

from __future__ import annotations

import glob
import hashlib
import io
from collections.abc import Iterable
from typing import BinaryIO

from .. import storage
from ..errors import ConfigError
from ..storage import StorageOptions

STDIN = "-"
STDIN_NAME = "<stdin>"
TEXT_EXTENSIONS = (".txt", ".text")
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
COMPRESSED_EXTENSIONS = (".gz", ".bz2", ".zst")
#: Names that make a directory a maskprep output (see the module notes); the names of
#: :mod:`maskprep.output.names`, repeated here so that reading inputs needs none of the output
#: package.
_OUTPUT_MARKERS = ("_maskprep.json",)
_WRITER_PREFIX = ".maskprep-writer-"


def is_output_directory(names: Iterable[str]) -> bool:
    """Whether a directory holding ``names`` is a maskprep output (a manifest, or a writer's
    record: a build finished or writing there)."""
    return any(n in _OUTPUT_MARKERS or n.startswith(_WRITER_PREFIX) for n in names)


def expand_inputs(inputs: Iterable[str], options: StorageOptions | None = None) -> list[str]:
    """Resolve paths, directories, globs and URLs to an ordered list of files (``-`` kept as
    is); see the module notes for the rules.

    Directories are searched recursively for files with a known extension, in sorted order, so the
    same tree always gives the same order (see :func:`directory_files`). A path or glob that
    matches nothing is an error. URLs (``s3://…``) name objects, prefixes or globs of a store
    that ``options`` configures.
    """
    files: list[str] = []
    for given in inputs:
        # A file:// URL is its local path from here on: read, named and recorded as that path.
        item = storage.local_form(given)
        if item == STDIN:
            files.append(item)
        else:
            files.extend(_expand(item, storage.parse_location(item, options)))
    if files.count(STDIN) > 1:
        raise ConfigError("standard input ('-') can be read only once")
    return files


def _expand(item: str, location: storage.Location) -> list[str]:
    """The files one input names: itself, a directory's (or prefix's) files, or a glob's."""
    try:
        found = storage.stat(location)
    except storage.NotFound as missing:
        if storage.is_link(location):
            raise ConfigError(
                f"{item}: dangling symbolic link (its target does not exist)"
            ) from None
        if glob.has_magic(location.path):
            return _matches(item, location)
        if location.is_local:
            raise ConfigError(f"{item}: no such file or directory") from None
        raise missing from None
    return directory_files(location) if found.is_dir else [location.url]


def _matches(item: str, pattern: storage.Location) -> list[str]:
    """The files a glob matches, those inside maskprep outputs left out."""
    matched = [i.location for i in storage.glob(pattern) if i.regular and not i.is_dir]
    matched = [m for m in matched if not _in_output(m)]
    if not matched:
        kind = "file" if pattern.is_local else "object"
        raise ConfigError(f"{item}: no {kind} matches this pattern")
    return [m.url for m in matched]


def _in_output(location: storage.Location) -> bool:
    """Whether a file a glob matched lies directly in a maskprep output directory."""
    try:
        return is_output_directory(info.name for info in storage.listdir(location.parent))
    except storage.StorageError:
        return False


def directory_files(root: storage.Location | str) -> list[str]:
    """The input files under a directory or prefix: files with a known extension, in sorted path
    order, maskprep outputs inside it left out (see the module notes). Walked by
    :func:`maskprep.storage.walk`, whose rule for symbolic links applies: a link to a directory
    is followed once, a dangling link or a directory that cannot be listed is an error."""
    location = root if isinstance(root, storage.Location) else storage.parse_location(root)
    try:
        walked = storage.walk(location, skip_directory=is_output_directory)
        found = [i.location.url for i in walked if i.regular and _known_extension(i.name)]
    except storage.StorageRequestError as exc:
        raise ConfigError(str(exc)) from None
    if not found:
        what = "directory holds no .txt or .jsonl files"
        if not location.is_local:
            what = "prefix holds no .txt or .jsonl objects"
        raise ConfigError(f"{location.url}: {what}")
    return found


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
