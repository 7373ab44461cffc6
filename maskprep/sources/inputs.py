"""Where input files are found: paths, directories and globs expanded to files, and their
formats from their extensions; and a reader that hashes the raw bytes as they pass.

Inputs are files, directories (searched recursively for known extensions), globs, or ``-`` for
standard input; a URL (``s3://…``) names an object, a prefix or a glob of a store, found by the
same rules through :mod:`maskprep.storage`. Compression is recognised by magic bytes
(:func:`decompressed`), so a misnamed or piped compressed stream still reads.

**One rule for names, local or not:** a name that exists (a file, a directory, an object, a
prefix) is read as it is, even when it holds glob characters (``a[1].jsonl``); only a name that
does not exist and holds them (``*``, ``?``, ``[``) is a pattern. **One rule for maskprep's own
outputs:** a directory (or prefix) that holds a maskprep manifest or a writer's record is an
output, never input: a directory walk or a glob leaves it out, with everything below it, so an
output kept inside its input directory is not read back on the next build.

Inputs are opened as streams, local files and objects of a store alike (an object is fetched as it
is read, never downloaded whole first), and named by their path or URL everywhere: in
``file:line`` errors, in rejects and in the manifest.

A compressed stream cut short is an error, never a shorter file. ``gzip`` and ``bz2`` raise
:class:`EOFError` on a truncated stream themselves. zstandard's ``stream_reader`` does not:
reading across frames, it ends quietly at the end of the input even inside a frame, so a
multi-frame file (what ``zstd`` writes for streamed or concatenated input) cut short loses its
last frame without a word. :class:`ZstdFrames` reads frame by frame and raises :class:`EOFError`
when the input ends inside one, and :class:`CorruptZstd` (an ``EOFError`` too, so one handler
reports both) when a frame cannot be decoded.

A line is read with ``readline(limit)``, never whole (:func:`capped_lines`): ``/dev/zero`` or a
corrupt file without a newline cannot make one line grow until memory runs out. A line over the
limit comes out as an :class:`Overlong` (its first bytes and size) and the rest of it is skipped,
chunk by chunk. The format of an input no one names is sniffed from its first lines
(:func:`sniff_format`).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

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


#: Bytes of an over-long line kept for the rejects file.
OVERLONG_HEAD = 1024
#: How much of the start of an input the format is sniffed from (see :func:`sniff_format`).
SNIFF_LINES = 16
SNIFF_BYTES = 1 << 20
_SKIP_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Overlong:
    """A line longer than the cap: its first bytes. The rest is skipped once the reader moves on
    (so a caller that stops at it never reads the rest of an endless line)."""

    head: bytes


def capped_lines(stream: BinaryIO, limit: int) -> Iterator[bytes | Overlong]:
    """The lines of ``stream`` (each with its newline), or :class:`Overlong` for a line whose
    content (without its newline) is longer than ``limit`` bytes."""
    readline = stream.readline
    size = limit + 1  # the content and its newline
    while True:
        line = readline(size)
        if not line:
            return
        if len(line) < size or line.endswith(b"\n"):
            yield line
            continue
        yield Overlong(line[:OVERLONG_HEAD])
        while line and not line.endswith(b"\n"):
            line = readline(_SKIP_CHUNK)


def _looks_like_object(line: bytes | Overlong) -> bool:
    body = line.head if isinstance(line, Overlong) else line
    return body.lstrip().removeprefix(_BOM).lstrip().startswith(b"{")


def is_blank(line: bytes | Overlong) -> bool:
    """True for a line of whitespace only."""
    return not isinstance(line, Overlong) and not line.strip()


def sniff_format(lines: Iterable[bytes | Overlong]) -> str:
    """``"jsonl"`` or ``"text"`` for an input whose format neither the caller nor the file name
    says, from its first non-blank lines (as :func:`sample` takes them).

    The rule: JSONL when the first non-blank line starts with ``{`` (after a byte-order mark and
    spaces), or when at least half of the sampled lines do; else plain text. So one bad line does
    not decide it: a JSONL stream whose first record is corrupt is still JSONL (and that line a
    bad record, named by its number), and a text file with a line of JSON in it is still text.
    Whether a line parses is left to the reader, which names the exact problem and line.
    """
    sampled = [line for line in lines if not is_blank(line)]
    objects = sum(_looks_like_object(line) for line in sampled)
    if sampled and _looks_like_object(sampled[0]):
        return "jsonl"
    return "jsonl" if sampled and 2 * objects >= len(sampled) else "text"


def sample(lines: Iterator[bytes | Overlong]) -> list[bytes | Overlong]:
    """The first lines of ``lines`` (blank ones included) that :func:`sniff_format` needs: up to
    the first non-blank one when it starts like a JSON object (that decides it, and a stream is
    not held up), else up to :data:`SNIFF_LINES` non-blank ones or :data:`SNIFF_BYTES`; never
    past an over-long line (whose rest is not read)."""
    taken: list[bytes | Overlong] = []
    seen = size = 0
    for line in lines:
        taken.append(line)
        if isinstance(line, Overlong) or (seen == 0 and _looks_like_object(line)):
            break
        size += len(line)
        seen += not is_blank(line)
        if seen >= SNIFF_LINES or size >= SNIFF_BYTES:
            break
    return taken
