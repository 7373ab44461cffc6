"""Splitting a build's inputs into N disjoint parts, the unit of array jobs (and of Ray work).

The inputs are laid end to end as one byte stream of ``T`` bytes. Part ``I`` of ``N`` owns the
records whose line *starts* in bytes ``[I*T//N, (I+1)*T//N)``. So:

- every line belongs to exactly one part, and the parts in index order hold the records in input
  order: concatenated, they are the single build's records, in its order;
- a part reads only its own bytes (a seek to its range, plus a newline count of the bytes before
  it for ``file:line`` numbers), so N parts cost about one read of the input, not N;
- the plan needs only file sizes, so any machine computes the same parts with no coordinator;
- a compressed file cannot be entered in the middle: it goes whole to the part its first byte
  falls in. Standard input cannot be split;
- objects of a store (URLs) are planned alike, from their sizes, and read with ranged requests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from ..config import PartSpec
from ..errors import ConfigError
from ..storage import StorageOptions
from .inputs import STDIN, input_info, is_compressed, open_input

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileRange:
    """The bytes ``[start, end)`` of ``path`` that a part reads; ``start`` and ``end`` are line
    starts (or the end of the file), ``first_line`` is the line number at ``start``. ``whole``
    marks a compressed file, read whole from its beginning."""

    path: str
    start: int
    end: int
    first_line: int
    whole: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the manifest."""
        return asdict(self)


@dataclass(frozen=True)
class PlannedFile:
    """An input file as a part's plan saw it. Its size decides where every part begins and ends;
    with its modification time it tells whether the file changed between the builds of two parts
    (their ranges would no longer join)."""

    path: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the manifest."""
        return asdict(self)


def _planned(path: str, options: StorageOptions | None) -> PlannedFile:
    info = input_info(path, options)
    if not info.regular:
        # A pipe or device has no size to split by: each part would read from its start.
        raise ConfigError(
            f"{path}: not a regular file (a pipe or a device): it cannot be split into "
            "parts, as standard input cannot; give regular files"
        )
    # An object's modification time is the store's (S3: LastModified, to the second).
    mtime_ns = info.mtime_ns if info.mtime_ns is not None else int((info.mtime or 0) * 1e9)
    return PlannedFile(path, info.size, mtime_ns)


def planned_files(files: list[str], options: StorageOptions | None = None) -> list[PlannedFile]:
    """Each of ``files`` with its size and modification time, as a plan uses them; objects of a
    store (URLs) are described by the store that ``options`` configures."""
    if STDIN in files:
        raise ConfigError("standard input ('-') cannot be split into parts; give files")
    return [_planned(f, options) for f in files]


def plan_part(
    files: list[str],
    spec: PartSpec,
    planned: list[PlannedFile] | None = None,
    options: StorageOptions | None = None,
) -> list[FileRange]:
    """The byte ranges of ``files`` (in order) that make up part ``spec.index`` of ``spec.count``;
    ``planned`` are the files' sizes when already taken (:func:`planned_files`).

    An empty list is a valid part: there may be more parts than lines. Objects of a store
    (URLs, configured by ``options``) are planned the same way, with ranged reads.
    """
    planned = planned if planned is not None else planned_files(files, options)
    sizes = [p.size for p in planned]
    total = sum(sizes)
    low = spec.index * total // spec.count
    high = (spec.index + 1) * total // spec.count
    ranges: list[FileRange] = []
    offset = 0
    for path, size in zip(files, sizes, strict=True):
        begin, offset = offset, offset + size
        if size == 0 or high <= begin or low >= offset:
            continue
        with open_input(path, options) as handle:
            if is_compressed(handle):
                if low <= begin < high:
                    ranges.append(FileRange(path, 0, size, 1, whole=True))
                continue
            start = _line_start_at_or_after(handle, max(low - begin, 0), size)
            end = _line_start_at_or_after(handle, min(high - begin, size), size)
            if start < end:
                first_line = _count_newlines(handle, start) + 1
                ranges.append(FileRange(path, start, end, first_line))
    return ranges


def _line_start_at_or_after(handle: BinaryIO, position: int, size: int) -> int:
    """The first offset ``>= position`` where a line starts (or ``size``)."""
    if position <= 0:
        return 0
    # position starts a line exactly when the byte before it is a newline.
    handle.seek(position - 1)
    scanned = position - 1
    while scanned < size:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        found = chunk.find(b"\n")
        if found >= 0:
            return scanned + found + 1
        scanned += len(chunk)
    return size


def _count_newlines(handle: BinaryIO, end: int) -> int:
    handle.seek(0)
    count = done = 0
    while done < end:
        chunk = handle.read(min(_CHUNK, end - done))
        if not chunk:
            break
        count += chunk.count(b"\n")
        done += len(chunk)
    return count


def open_range(file_range: FileRange, options: StorageOptions | None = None) -> BinaryIO:
    """A binary stream of exactly the bytes of ``file_range``."""
    end = None if file_range.whole else file_range.end
    return open_input(file_range.path, options, file_range.start, end)
