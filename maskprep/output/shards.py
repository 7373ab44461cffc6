"""Writing shards atomically.

A shard appears under its final name only when complete: it is written under a hidden temporary
name, fsynced, then renamed. The manifest (:mod:`.manifest`) is written last the same way, so an
output directory without it is unfinished.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .. import columns
from ..columns import IGNORE_INDEX
from ..config import OutputConfig
from ..errors import OutputError
from .names import EXTENSIONS, SHARD_PREFIX, TMP_PREFIX, complete_shards


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard: its file name (relative to the output), counts and sha256."""

    path: str
    rows: int
    positions: int
    real_tokens: int
    label_tokens: int
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    tmp = path.with_name(TMP_PREFIX + path.name)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a truncated copy behind
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ShardWriter:
    """Writes record batches into shards that roll over at a row count or a byte size.

    Byte sizes are the batches' uncompressed Arrow sizes, so the roll points depend only on the
    data, and the same input always gives the same shards.
    """

    def __init__(self, directory: Path, config: OutputConfig, schema: pa.Schema) -> None:
        self.directory = directory
        self.config = config
        self.schema = schema
        self.shards: list[ShardInfo] = []
        self._writer: Any = None
        self._sink: Any = None
        self._tmp: Path | None = None
        self._rows = self._bytes = 0
        self._counts = [0, 0, 0]
        #: Resuming: the complete shard the open one is being checked against, and the shards
        #: reused (found complete and identical; never removed by :meth:`abort`).
        self._checking: Path | None = None
        self._reused: set[str] = set()

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch, splitting it across shard boundaries as needed."""
        bytes_per_row = batch.nbytes / max(batch.num_rows, 1)
        offset = 0
        while offset < batch.num_rows:
            room = batch.num_rows - offset
            if self.config.shard_rows is not None:
                room = min(room, self.config.shard_rows - self._rows)
            if self.config.shard_size is not None:
                by_size = int((self.config.shard_size - self._bytes) // max(bytes_per_row, 1))
                room = min(room, max(by_size, 1 if self._rows == 0 else 0))
            if room <= 0:
                self._close_shard()
                continue
            part = batch.slice(offset, room)
            self._append(part)
            offset += room
            self._bytes += int(room * bytes_per_row)
            if self._full():
                self._close_shard()

    def _full(self) -> bool:
        rows_full = self.config.shard_rows is not None and self._rows >= self.config.shard_rows
        size_full = self.config.shard_size is not None and self._bytes >= self.config.shard_size
        return rows_full or size_full

    def _append(self, part: pa.RecordBatch) -> None:
        if self._writer is None:
            self._open_shard()
        self._writer.write_batch(part)
        self._rows += part.num_rows
        # flatten(), unlike .values, respects the slice's offsets.
        mask = columns.to_numpy(part.column(columns.ATTENTION_MASK).flatten(), np.int8)
        labels = columns.to_numpy(part.column(columns.LABELS).flatten(), np.int32)
        self._counts[0] += len(mask)
        self._counts[1] += int(np.count_nonzero(mask))
        self._counts[2] += int(np.count_nonzero(labels != IGNORE_INDEX))

    def _shard_name(self, index: int) -> str:
        return f"{SHARD_PREFIX}{index:05d}{EXTENSIONS[self.config.format]}"

    def _open_shard(self) -> None:
        name = self._shard_name(len(self.shards))
        self._tmp = self.directory / (TMP_PREFIX + name)
        if self.config.resume and (self.directory / name).is_file():
            # Replayed, not rewritten: the bytes only go through a hash, compared at close with
            # the shard an interrupted build left complete.
            self._checking = self.directory / name
            self._sink = DigestSink()
        else:
            self._sink = DigestSink(open(self._tmp, "wb"))  # noqa: SIM115 - closed at close
        if self.config.format == "parquet":
            # Without dictionary pages: token ids and masks came out smaller and ~25 % cheaper
            # to write than with them (bench/build_bench.py's corpus, pad and pack).
            self._writer = pq.ParquetWriter(
                self._sink, self.schema, compression=self.config.compression, use_dictionary=False
            )
        else:
            self._writer = ipc.new_file(self._sink, self.schema)
        self._rows = self._bytes = 0
        self._counts = [0, 0, 0]

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        if self._checking is not None:
            self._reuse_shard()
            return
        self._writer.close()
        self._sink.sync_and_close()
        assert self._tmp is not None
        final = self.directory / self._tmp.name.removeprefix(TMP_PREFIX)
        os.replace(self._tmp, final)
        _fsync_dir(self.directory)
        positions, real, trained = self._counts
        self.shards.append(
            ShardInfo(final.name, self._rows, positions, real, trained, self._sink.hexdigest())
        )
        self._writer = self._sink = self._tmp = None
        # A batch may go on into the next shard; it must see an empty one, not this full one.
        self._rows = self._bytes = 0

    def _reuse_shard(self) -> None:
        assert self._checking is not None
        self._writer.close()
        replayed = self._sink.hexdigest()
        if sha256_file(self._checking) != replayed:
            raise OutputError(
                f"{self._checking}: differs from the shard this build writes there (the inputs, "
                "options or maskprep version changed since the interrupted build); overwrite to "
                "start over"
            )
        positions, real, trained = self._counts
        name = self._checking.name
        self.shards.append(ShardInfo(name, self._rows, positions, real, trained, replayed))
        self._reused.add(name)
        self._writer = self._sink = self._tmp = self._checking = None
        self._rows = self._bytes = 0

    def written(self) -> tuple[int, int]:
        """Rows and real tokens written so far, the open shard's included (for progress)."""
        rows = sum(s.rows for s in self.shards)
        real = sum(s.real_tokens for s in self.shards)
        if self._writer is not None:
            rows += self._rows
            real += self._counts[1]
        return rows, real

    @property
    def reused(self) -> int:
        """How many complete shards of an interrupted build were checked and kept."""
        return len(self._reused)

    def close(self) -> list[ShardInfo]:
        """Finish the open shard and return every shard written."""
        self._close_shard()
        if self.config.resume:
            self._check_no_stale_shards()
        return self.shards

    def _check_no_stale_shards(self) -> None:
        """Resuming: a complete shard past the last one this build writes means the interrupted
        build read other inputs; its leftover temporary files are removed."""
        names = [p.name for p in self.directory.iterdir()]
        written = {s.path for s in self.shards}
        stale = [n for n in complete_shards(names) if n not in written]
        if stale:
            raise OutputError(
                f"{self.directory / stale[0]}: left by the interrupted build but not written by "
                "this one (the inputs or options changed); overwrite to start over"
            )
        for name in names:
            if name.startswith(TMP_PREFIX + SHARD_PREFIX):
                (self.directory / name).unlink(missing_ok=True)

    def abort(self, keep_complete: bool = False) -> None:
        """Remove every file this writer made: an aborted build leaves nothing that looks done.
        With ``keep_complete`` (an interrupted build), complete shards stay for a resume to
        reuse, as after a kill; only the open shard's temporary file goes."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._sink.sync_and_close()
            except Exception:  # the shard is being thrown away; closing it is best effort
                pass
        if self._tmp is not None and self._checking is None:
            self._tmp.unlink(missing_ok=True)
        for shard in [] if keep_complete else self.shards:
            if shard.path not in self._reused:
                (self.directory / shard.path).unlink(missing_ok=True)
        self.shards = []
        self._writer = self._sink = self._tmp = self._checking = None


class DigestSink(io.RawIOBase):
    """A write-only stream that hashes (sha256) what is written to it and, when given a file,
    writes it there too: a shard's hash comes with writing it, not from reading it back."""

    def __init__(self, file: BinaryIO | None = None) -> None:
        self._file = file
        self._digest = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        if self._file is not None:
            self._file.write(view)
        self._digest.update(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._size

    def hexdigest(self) -> str:
        """Hex sha256 of everything written so far."""
        return self._digest.hexdigest()

    def sync_and_close(self) -> None:
        """Flush the file to disk and close it (nothing to do without a file)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
