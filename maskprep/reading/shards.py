"""Reading rows to inspect or verify: a build output directory (its manifest lists the shards), a
directory of shards without a manifest (data another tool wrote: its ``.parquet`` and ``.arrow``
files, in name order), a single Parquet or Arrow shard (file or stream format, told apart by its
first bytes), or Arrow IPC on standard input (a stream, read batch by batch, or a file, which needs
its footer and so is read whole). Rows come out as record batches of the contract's columns, Arrow
files memory-mapped, so memory stays bounded by the batch size.

Any of these may be a URL (``s3://bucket/out``, ``file:///data/out``) read through
:mod:`maskprep.storage`: a local path or ``file://`` URL keeps the memory-mapped path; an object
is read with ranged requests as pyarrow asks for its footer and column chunks, never downloaded
whole first (an Arrow *stream* file has no footer and is read whole, as it is locally).

What the rows are declared to be before they are read (:func:`declared`): the output's manifest
says it, else the contract each shard carries in its schema metadata (:mod:`maskprep.contract`),
else nothing (another tool's data: inspect then infers the layout from the rows). Where both speak
they must agree: a shard whose metadata contradicts the manifest that lists it is not the shard
the build wrote. ``inspect`` reports it as a failed ``shards_match_manifest``; ``verify`` and the
collator, which would act on the wrong facts, refuse it (:func:`refuse_conflicts`). Shards without
a manifest must agree with each other; a directory mixing shards of different builds is refused.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .. import columns, storage
from ..contract import ShardContract, read_contract
from ..errors import ConfigError, DataError, first_line, os_failure
from ..output.manifest import Manifest, find_manifest_at, read_manifest
from ..output.names import EXTENSIONS, MANIFEST_NAME, TMP_PREFIX, is_writer_name
from ..sources.inputs import STDIN, STDIN_NAME

#: Columns a shard needs to be read: ``length``, the fourth required column, is computed from
#: ``attention_mask`` where another tool left it out.
CHECKED_COLUMNS = (columns.INPUT_IDS, columns.ATTENTION_MASK, columns.LABELS)
_READ_COLUMNS = columns.REQUIRED_COLUMNS + columns.PACK_COLUMNS
#: What an Arrow IPC file (not stream) starts with.
_ARROW_FILE_MAGIC = b"ARROW1"


@dataclass(frozen=True)
class Shard:
    """One readable table: a file or object (``location``), read in batches or, for a stream
    file, already read into ``table``; or stdin, read into ``table`` or, when the number of rows
    is not needed up front, streamed batch by batch from ``stream`` (``rows`` is then ``None``)."""

    name: str
    rows: int | None
    #: The shard's schema as its file states it, metadata included (read with its row count:
    #: no second request for it).
    schema: pa.Schema
    location: storage.Location | None = None
    table: pa.Table | None = None
    stream: ipc.RecordBatchStreamReader | None = None
    #: ``"parquet"`` or ``"arrow-file"`` for a file read in batches (its first bytes, read once:
    #: on a store each look is a request).
    kind: str | None = None

    @property
    def contract(self) -> ShardContract | None:
        """What the shard's metadata says its rows are (see :mod:`maskprep.contract`);
        ``None`` for a shard that carries none."""
        return read_contract(self.schema, self.name)


def _kind(location: storage.Location) -> str:
    head = storage.read_range(location, 0, len(_ARROW_FILE_MAGIC))
    if head[:4] == b"PAR1":
        return "parquet"
    if head == _ARROW_FILE_MAGIC:
        return "arrow-file"
    return "arrow-stream"


@contextlib.contextmanager
def _source(location: storage.Location) -> Iterator[Any]:
    """The bytes of a shard for pyarrow: a local file memory-mapped, an object as a seekable
    stream that fetches what pyarrow reads (its footer, then the column chunks asked for)."""
    if location.is_local:
        with pa.memory_map(location.path) as mapped:
            yield mapped
    else:
        with storage.open_read(location) as handle:
            yield handle


@contextlib.contextmanager
def _parquet(location: storage.Location) -> Iterator[pq.ParquetFile]:
    if location.is_local:
        with pq.ParquetFile(location.path, memory_map=True) as file:
            yield file
        return
    with _source(location) as handle, pq.ParquetFile(handle) as file:
        yield file


def _shown(location: storage.Location) -> str:
    """How a shard or directory is named in results and errors: a URL, or a local path as
    pathlib spells it (no ``./``, no ``//``), as it always was."""
    return str(PurePath(location.path)) if location.is_local else location.url


def _is_file(location: storage.Location) -> bool:
    if location.is_local:
        return os.path.isfile(location.path)
    try:
        return not storage.stat(location).is_dir
    except storage.NotFound:
        return False


def _is_directory(location: storage.Location) -> bool:
    if location.is_local:
        return os.path.isdir(location.path)
    try:
        return storage.stat(location).is_dir
    except storage.NotFound:
        return False


def _open_shard(location: storage.Location) -> Shard:
    if not _is_file(location):
        raise ConfigError(f"{_shown(location)}: no such file or directory")
    name = _shown(location)
    try:
        kind = _kind(location)
        if kind == "parquet":
            with _parquet(location) as file:
                rows, schema = file.metadata.num_rows, file.schema_arrow
            return Shard(name, rows, schema, location=location, kind=kind)
        if kind == "arrow-file":
            with _source(location) as source:
                reader = ipc.open_file(source)
                rows, schema = _count_rows(reader), reader.schema
            return Shard(name, rows, schema, location=location, kind=kind)
        # A stream file (what `datasets` caches) has no footer: read it (memory-mapped locally).
        with _source(location) as source:
            table = ipc.open_stream(source).read_all()
        return Shard(name, table.num_rows, table.schema, location=location, table=table)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{name}: not a Parquet or Arrow file: {exc}") from None


def _count_rows(reader: ipc.RecordBatchFileReader) -> int:
    """The rows of an Arrow IPC file: from the batches' metadata where pyarrow can (not their
    bodies, which on a store would be downloaded), else by reading each batch."""
    count = getattr(reader, "count_rows", None)
    if count is not None:
        return int(count())
    return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


class _Rejoined(io.RawIOBase):
    """Standard input with the bytes already read from its head put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        chunk = self._rest.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)


def _read_stdin(stdin: BinaryIO, whole: bool) -> Shard:
    """Standard input as a shard. An Arrow IPC file is read whole (its footer, at the end, says
    where the batches are); a stream is read whole when ``whole`` (a sample needs the row count
    up front), else streamed, so memory stays flat whatever its size."""
    head = stdin.read(len(_ARROW_FILE_MAGIC))
    try:
        if head == _ARROW_FILE_MAGIC:
            table = ipc.open_file(pa.py_buffer(head + stdin.read())).read_all()
            return Shard(STDIN_NAME, table.num_rows, table.schema, table=table)
        reader = ipc.open_stream(io.BufferedReader(_Rejoined(head, stdin)))
        if whole:
            table = reader.read_all()
            return Shard(STDIN_NAME, table.num_rows, table.schema, table=table)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{STDIN_NAME}: not an Arrow IPC stream or file: {exc}") from None
    return Shard(STDIN_NAME, None, reader.schema, stream=reader)


def shard_batches(
    shard: Shard,
    size: int,
    needed: np.ndarray | None = None,
    *,
    read: Sequence[str] = _READ_COLUMNS,
    required: Sequence[str] | None = None,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The shard's contract columns in record batches of at most ``size`` rows, each with the
    shard row its first row is. With ``needed`` (sorted shard rows), Parquet row groups and Arrow
    record batches holding none of them are skipped, not decoded. ``read`` names the columns
    read where present (default: every contract column), ``required`` those that must be there
    (default: the contract's required columns).
    """
    _require_columns(shard.name, shard.schema.names, required)
    names = [n for n in read if n in shard.schema.names]
    if shard.stream is not None:
        yield from _offsets(_stream_batches(shard, size, names))
        return
    if shard.table is not None:
        yield from _offsets(shard.table.select(names).to_batches(max_chunksize=size))
        return
    assert shard.location is not None
    if shard.kind == "parquet":
        with _parquet(shard.location) as file:
            metadata = file.metadata
            sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
            for group, first in enumerate(_wanted_parts(sizes, needed)):
                if first is None:
                    continue
                batches = file.iter_batches(batch_size=size, row_groups=[group], columns=names)
                yield from _offsets(batches, first)
        return
    with _source(shard.location) as source:
        reader = ipc.open_file(source)
        # Each record batch is fetched once (from a store, a second look is a second download):
        # its size is known only once it is read.
        first = 0
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            if (
                _wanted_parts([batch.num_rows], None if needed is None else needed - first)[0]
                is not None
            ):
                batch = batch.select(names)
                for start in range(0, batch.num_rows, size):
                    yield first + start, batch.slice(start, size)
            first += batch.num_rows


def _wanted_parts(sizes: list[int], needed: np.ndarray | None) -> list[int | None]:
    """For consecutive parts of ``sizes`` rows: each part's first row, or ``None`` when it holds
    none of the ``needed`` rows (all parts are wanted when ``needed`` is ``None``)."""
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    if needed is None:
        return [int(x) for x in starts[:-1]]
    hits = np.searchsorted(needed, starts[1:]) - np.searchsorted(needed, starts[:-1])
    return [int(x) if hit else None for x, hit in zip(starts[:-1], hits, strict=True)]


def _offsets(
    batches: Iterator[pa.RecordBatch] | list[pa.RecordBatch], first: int = 0
) -> Iterator[tuple[int, pa.RecordBatch]]:
    for batch in batches:
        yield first, batch
        first += batch.num_rows


def _stream_batches(shard: Shard, size: int, names: list[str]) -> Iterator[pa.RecordBatch]:
    assert shard.stream is not None
    while True:
        try:
            batch = shard.stream.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            # A stream cut short inside a batch is an Arrow IOError (an OSError without errno);
            # the pipe itself failing is an OSError with one.
            if isinstance(exc, OSError) and exc.errno is not None:
                raise os_failure(shard.name, "reading", exc) from None
            raise DataError(f"{shard.name}: broken Arrow IPC stream: {first_line(exc)}") from None
        batch = batch.select(names)
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


def missing_columns(names: Sequence[str]) -> list[str]:
    """The columns a shard needs to be read (:data:`CHECKED_COLUMNS`) absent from ``names``."""
    return [name for name in CHECKED_COLUMNS if name not in names]


def _require_columns(name: str, present: list[str], required: Sequence[str] | None) -> None:
    if required is None:
        missing = missing_columns(present)
    else:
        missing = [column for column in required if column not in present]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {', '.join(missing)}; a maskprep shard has "
            f"{', '.join(columns.REQUIRED_COLUMNS)}"
        )


def open_input(
    path: str,
    stdin: BinaryIO | None,
    whole: bool,
    options: storage.StorageOptions | None = None,
) -> tuple[list[Shard], Manifest | None]:
    """The shards at ``path`` and the manifest that lists them (``None`` where there is none).

    ``path`` is a build output directory, a directory of shards another tool wrote, one shard
    file (each a local path or a URL, whose store ``options`` configures), or ``"-"`` for Arrow
    IPC on ``stdin`` (read whole when ``whole``, else streamed).
    """
    if path == STDIN:
        if stdin is None:
            raise ConfigError("'-' reads Arrow IPC from standard input; none was given")
        return [_read_stdin(stdin, whole)], None
    target = storage.parse_location(path, options)
    if _is_directory(target):
        if find_manifest_at(target) is None:
            return [_open_shard(p) for p in _directory_shards(target)], None
        # The manifest reader admits only plain shard names in the directory itself.
        manifest = read_manifest(target)
        shards = [_open_shard(target.join(s.path)) for s in manifest.shards]
        return shards, manifest
    return [_open_shard(target)], None


def _entries(directory: storage.Location) -> dict[str, bool]:
    """The names directly in a directory or under a prefix, each with whether it is a file."""
    if directory.is_local:
        with os.scandir(directory.path) as entries:
            return {entry.name: entry.is_file() for entry in entries}
    return {info.name: not info.is_dir for info in storage.listdir(directory)}


def _directory_shards(directory: storage.Location) -> list[storage.Location]:
    """The shard files of a directory (or prefix) without a manifest, in name order.

    Names starting with ``_`` or ``.`` are skipped, as dataset readers skip them. A directory
    where a maskprep build is running or was cut short (a writer's record, temporary files) is
    refused: its shards are not all there.
    """
    entries = _entries(directory)
    names = sorted(entries)
    if any(n.startswith(TMP_PREFIX) or is_writer_name(n) for n in names):
        raise DataError(
            f"{_shown(directory)}: no {MANIFEST_NAME}; the build did not finish (a build is "
            "running or was cut short here)"
        )
    suffixes = tuple(EXTENSIONS.values())
    found = [
        directory.join(n)
        for n in names
        if n.endswith(suffixes) and not n.startswith(("_", ".")) and entries[n]
    ]
    if not found:
        raise DataError(
            f"{_shown(directory)}: no {MANIFEST_NAME}; the build did not finish, or this is not a "
            f"data directory (it holds no {' or '.join(suffixes)} files)"
        )
    return found


#: Where a contract came from, as results and reports name it.
FROM_MANIFEST = "manifest"
FROM_METADATA = "shard metadata"


@dataclass(frozen=True)
class Declared:
    """The contract the rows are held to and where it came from (``None``, ``""``: nothing
    declares them). ``conflicts`` maps a shard's number to how its metadata contradicts the
    manifest. ``stripped`` names the shards declared packs that lack ``seq_lens`` or
    ``position_ids``: a pipeline dropped them."""

    contract: ShardContract | None = None
    source: str = ""
    conflicts: dict[int, str] | None = None
    stripped: tuple[str, ...] = ()


def declared(shards: Sequence[Shard], manifest: Manifest | None) -> Declared:
    """The declared contract of ``shards``: the ``manifest``'s (with each shard's metadata
    checked against it), else the one their metadata agrees on, else none.

    Raises :class:`~maskprep.errors.DataError` for unreadable metadata and for shards without a
    manifest whose metadata disagree.
    """
    found = [shard.contract for shard in shards]
    if manifest is not None:
        expected = ShardContract.of_manifest(manifest)
        conflicts = {
            number: "metadata: " + ", ".join(contract.differences(expected, "manifest"))
            for number, contract in enumerate(found)
            if contract is not None and contract != expected
        }
        return Declared(expected, FROM_MANIFEST, conflicts, _stripped(shards, expected))
    carried = [(shard, contract) for shard, contract in zip(shards, found, strict=True) if contract]
    if not carried:
        return Declared()
    first_shard, first = carried[0]
    for shard, contract in carried[1:]:
        if contract != first:
            differ = ", ".join(contract.differences(first, first_shard.name))
            raise DataError(
                f"{shard.name}: its maskprep metadata says {differ}: shards of different "
                "builds; read them apart"
            )
    return Declared(first, FROM_METADATA, None, _stripped(shards, first))


def _stripped(shards: Sequence[Shard], contract: ShardContract) -> tuple[str, ...]:
    """The shards declared packs whose schema lacks a pack column."""
    if not contract.packed:
        return ()
    return tuple(
        shard.name
        for shard in shards
        if not all(name in shard.schema.names for name in columns.PACK_COLUMNS)
    )


def refuse_conflicts(shards: Sequence[Shard], found: Declared) -> None:
    """Raise :class:`~maskprep.errors.DataError` for the first shard whose metadata contradicts
    its manifest, or that is declared a pack and lost its pack columns (readers that act on the
    facts: verify, the collator)."""
    if found.conflicts:
        number = min(found.conflicts)
        raise DataError(
            f"{shards[number].name}: its {found.conflicts[number]}; not the shard this build "
            "wrote (copied in from another output?)"
        )
    if found.stripped:
        raise DataError(
            f"{found.stripped[0]}: declared packed rows, but seq_lens and position_ids are gone "
            "(dropped by a pipeline?): the documents of a row cannot be kept apart; restore both "
            "columns or rebuild"
        )
