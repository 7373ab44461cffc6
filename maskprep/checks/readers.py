"""Reading rows to inspect: a build output directory (its manifest lists the shards), a single
Parquet or Arrow shard (file or stream format, told apart by its first bytes), or an Arrow IPC
stream on standard input. Rows come out as record batches of the contract's columns, Arrow files
memory-mapped, so memory stays bounded by the batch size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .. import columns
from ..errors import ConfigError, DataError
from ..output.manifest import Manifest, find_manifest, read_manifest
from ..output.names import MANIFEST_NAME
from ..sources.inputs import STDIN, STDIN_NAME
from .kernels import missing_columns

_READ_COLUMNS = columns.REQUIRED_COLUMNS + columns.PACK_COLUMNS


@dataclass(frozen=True)
class Shard:
    """One readable table: a file on disk (``path``), read in batches or, for a stream file,
    already read into ``table``; or stdin, read into ``table`` or, when the number of rows is
    not needed up front, streamed batch by batch from ``stream`` (``rows`` is then ``None``)."""

    name: str
    rows: int | None
    path: Path | None = None
    table: pa.Table | None = None
    stream: ipc.RecordBatchStreamReader | None = None


def _kind(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head[:4] == b"PAR1":
        return "parquet"
    if head == b"ARROW1":
        return "arrow-file"
    return "arrow-stream"


def _open_shard(path: Path) -> Shard:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    try:
        kind = _kind(path)
        if kind == "parquet":
            rows = pq.ParquetFile(path).metadata.num_rows
            return Shard(str(path), rows, path=path)
        if kind == "arrow-file":
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return Shard(str(path), rows, path=path)
        # A stream file (what `datasets` caches) has no footer: read it, memory-mapped.
        with pa.memory_map(str(path)) as source:
            table = ipc.open_stream(source).read_all()
        return Shard(str(path), table.num_rows, path=path, table=table)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a Parquet or Arrow file: {exc}") from None


def _read_stream(stdin: BinaryIO, whole: bool) -> Shard:
    """Standard input as a shard: read whole when ``whole`` (a sample needs the row count up
    front), else streamed, so memory stays flat whatever its size."""
    try:
        reader = ipc.open_stream(stdin)
        if whole:
            table = reader.read_all()
            return Shard(STDIN_NAME, table.num_rows, table=table)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{STDIN_NAME}: not an Arrow IPC stream: {exc}") from None
    return Shard(STDIN_NAME, None, stream=reader)


def shard_batches(
    shard: Shard, size: int, needed: np.ndarray | None = None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The shard's contract columns in record batches of at most ``size`` rows, each with the
    shard row its first row is. With ``needed`` (sorted shard rows), Parquet row groups and Arrow
    record batches holding none of them are skipped, not decoded."""
    if shard.stream is not None:
        yield from _offsets(_stream_batches(shard, size))
        return
    if shard.table is not None:
        names = [n for n in _READ_COLUMNS if n in shard.table.schema.names]
        _require_columns(shard.name, shard.table.schema.names)
        yield from _offsets(shard.table.select(names).to_batches(max_chunksize=size))
        return
    assert shard.path is not None
    if _kind(shard.path) == "parquet":
        file = pq.ParquetFile(shard.path, memory_map=True)
        _require_columns(shard.name, file.schema_arrow.names)
        names = [n for n in _READ_COLUMNS if n in file.schema_arrow.names]
        metadata = file.metadata
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        for group, first in enumerate(_wanted_parts(sizes, needed)):
            if first is None:
                continue
            batches = file.iter_batches(batch_size=size, row_groups=[group], columns=names)
            yield from _offsets(batches, first)
        return
    with pa.memory_map(str(shard.path)) as source:
        reader = ipc.open_file(source)
        _require_columns(shard.name, reader.schema.names)
        names = [n for n in _READ_COLUMNS if n in reader.schema.names]
        sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
        for i, first in enumerate(_wanted_parts(sizes, needed)):
            if first is None:
                continue
            batch = reader.get_batch(i).select(names)
            for start in range(0, batch.num_rows, size):
                yield first + start, batch.slice(start, size)


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


def _stream_batches(shard: Shard, size: int) -> Iterator[pa.RecordBatch]:
    assert shard.stream is not None
    _require_columns(shard.name, shard.stream.schema.names)
    names = [n for n in _READ_COLUMNS if n in shard.stream.schema.names]
    while True:
        try:
            batch = shard.stream.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise DataError(f"{shard.name}: broken Arrow IPC stream: {exc}") from None
        batch = batch.select(names)
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


def _require_columns(name: str, present: list[str]) -> None:
    missing = missing_columns(present)
    if missing:
        raise DataError(
            f"{name}: missing column(s) {', '.join(missing)}; a maskprep shard has "
            f"{', '.join(columns.REQUIRED_COLUMNS)}"
        )


def open_input(
    path: str, stdin: BinaryIO | None, whole: bool
) -> tuple[list[Shard], Manifest | None]:
    if path == STDIN:
        if stdin is None:
            raise ConfigError("'-' reads an Arrow IPC stream from standard input; none was given")
        return [_read_stream(stdin, whole)], None
    target = Path(path)
    if target.is_dir():
        if find_manifest(target) is None:
            raise DataError(
                f"{target}: no {MANIFEST_NAME}; the build did not finish (inspect a single "
                "shard file to check it anyway)"
            )
        manifest = read_manifest(target)
        shards = [_open_shard(target / s.path) for s in manifest.shards]
        return shards, manifest
    return [_open_shard(target)], None
