"""Writing an output's files atomically, hashed as the bytes stream out: the shards, and
``_rejects.jsonl`` (every record a build rejected under the ``skip`` policy, with its file, line,
reason and raw text).

A file appears under its final name only when complete: each goes through a
:class:`maskprep.storage.AtomicWriter` (a local temporary file opened ``O_EXCL | O_NOFOLLOW``,
fsynced and linked into place; a multipart upload completed last on S3), which hashes the bytes
as they pass, so the manifest's sha256 never needs a read-back. Where it is written, under which
name and how it is published is the commit protocol's business (:mod:`.commit`): the writer is
given them. The manifest (:mod:`.manifest`) is written last, so an output without it is
unfinished; a build that fails leaves a published rejects file only to say why.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .. import columns, storage
from ..columns import IGNORE_INDEX
from ..config import OutputConfig
from ..errors import OutputError
from ..sources.records import Rejected
from ..storage.writers import DigestSink
from .names import PLAIN, NameSet


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard: its file name (relative to the output), counts and sha256."""

    path: str
    rows: int
    positions: int
    real_tokens: int
    label_tokens: int
    sha256: str


@dataclass(frozen=True)
class RejectsFile:
    """The rejects file of a build with the ``skip`` policy: its name in the output, size and
    sha256, so that a merge joins exactly the bytes the build wrote."""

    path: str
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file's bytes, streamed."""
    return storage.sha256_of(storage.parse_location(os.fspath(path)))


#: Opens an atomic writer for a file name; publishes a complete one (see :mod:`.commit`).
OpenWriter = Callable[[str], storage.AtomicWriter]
Publish = Callable[[storage.AtomicWriter], storage.WriteResult]


def _open_plain(target: storage.Location) -> OpenWriter:
    return lambda name: storage.write(target.join(name), exclusive=True)


def _commit(writer: storage.AtomicWriter) -> storage.WriteResult:
    return writer.commit()


class ShardWriter:
    """Writes record batches into shards that roll over at a row count or a byte size.

    Byte sizes are the batches' uncompressed Arrow sizes, so the roll points depend only on the
    data, and the same input always gives the same shards.

    Resuming (``existing``: the complete shards an interrupted build left), a shard already there
    is not rewritten: its bytes are replayed through a hash only and compared with the shard's.
    ``names`` names the shards, ``open_writer`` opens each and ``publish`` publishes it, as the
    output's commit protocol says.
    """

    def __init__(
        self,
        target: storage.Location,
        config: OutputConfig,
        schema: pa.Schema,
        *,
        existing: Collection[str] = (),
        names: NameSet = PLAIN,
        open_writer: OpenWriter | None = None,
        publish: Publish = _commit,
        on_close: Callable[[ShardInfo], None] | None = None,
    ) -> None:
        self.target = target
        self.config = config
        self.schema = schema
        self.shards: list[ShardInfo] = []
        self._existing = frozenset(existing)
        self._names = names
        self._open_writer = open_writer or _open_plain(target)
        self._publish = publish
        self._writer: Any = None
        self._sink: storage.AtomicWriter | DigestSink | None = None
        self._rows = self._bytes = 0
        self._counts = [0, 0, 0]
        #: The shard being replayed against the complete one an interrupted build left.
        self._checking: storage.Location | None = None
        #: Shards found complete and identical.
        self._reused: set[str] = set()
        self._on_close = on_close
        #: Rows still to pass over, already in shards a resumed build took up.
        self._skip = 0

    def adopt(self, shards: list[ShardInfo], skip: int) -> None:
        """Take up the complete shards of an interrupted build of the same output (checked by the
        caller) as this writer's first, and pass over the next ``skip`` rows written: they are in
        those shards already (a build resumed from a resume point, see :mod:`maskprep.resume`)."""
        assert not self.shards and self._writer is None
        self.shards = list(shards)
        self._reused = {shard.path for shard in shards}
        self._skip = skip

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch, splitting it across shard boundaries as needed."""
        bytes_per_row = batch.nbytes / max(batch.num_rows, 1)
        # Rows passed over keep the batch's own bytes per row: the shards roll where they did.
        offset = min(self._skip, batch.num_rows)
        self._skip -= offset
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

    def _open_shard(self) -> None:
        name = self._names.shard(len(self.shards), self.config.format)
        location = self.target.join(name)
        if name in self._existing:
            # Replayed, not rewritten: the bytes only go through a hash, compared at close with
            # the shard an interrupted build left complete.
            self._checking = location
            self._sink = DigestSink()
        else:
            self._sink = self._open_writer(name)
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
        self._writer.close()
        sink = self._sink
        if not isinstance(sink, storage.AtomicWriter):
            # A replayed shard, only hashed (checked first: an AtomicWriter is a DigestSink too).
            assert isinstance(sink, DigestSink)
            self._reuse_shard(sink.hexdigest())
            return
        digest = self._publish(sink).sha256
        assert digest is not None, "the writer hashes every byte it publishes"
        self._record(sink.location.name, digest)

    def _record(self, name: str, digest: str) -> None:
        positions, real, trained = self._counts
        shard = ShardInfo(name, self._rows, positions, real, trained, digest)
        self.shards.append(shard)
        self._writer = self._sink = self._checking = None
        # A batch may go on into the next shard; it must see an empty one, not this full one.
        self._rows = self._bytes = 0
        if self._on_close is not None:
            self._on_close(shard)

    def _reuse_shard(self, replayed: str) -> None:
        checking = self._checking
        assert checking is not None
        if storage.sha256_of(checking) != replayed:
            raise OutputError(
                f"{checking.url}: differs from the shard this build writes there (the inputs, "
                "options or maskprep version changed since the interrupted build); overwrite to "
                "start over"
            )
        self._reused.add(checking.name)
        self._record(checking.name, replayed)

    def written(self) -> tuple[int, int]:
        """Rows and real tokens written so far, the open shard's included (for progress)."""
        rows = sum(s.rows for s in self.shards)
        real = sum(s.real_tokens for s in self.shards)
        if self._writer is not None:
            rows += self._rows
            real += self._counts[1]
        return rows, real

    @property
    def position(self) -> int:
        """How many rows the stream has passed so far: those written, and those passed over as
        already in a resumed build's shards (the row a resume point counts from)."""
        return self.written()[0] - self._skip

    @property
    def reused(self) -> int:
        """How many complete shards of an interrupted build were checked and kept."""
        return len(self._reused)

    def close(self) -> list[ShardInfo]:
        """Finish the open shard and return every shard written."""
        self._close_shard()
        written = {s.path for s in self.shards}
        stale = sorted(self._existing - written)
        if stale:
            raise OutputError(
                f"{self.target.join(stale[0]).url}: left by the interrupted build but not "
                "written by this one (the inputs or options changed); overwrite to start over"
            )
        return self.shards

    def abort(self) -> None:
        """Throw away the shard being written (its temporary, or its upload): nothing of it
        appears. Complete shards stay, as after a kill: removing them is the commit protocol's
        business (:mod:`.commit`), never a writer's that stops."""
        sink, self._sink = self._sink, None
        if self._writer is not None:
            # The shard is being thrown away; closing its writer is best effort.
            with contextlib.suppress(Exception):
                self._writer.close()
        if isinstance(sink, storage.AtomicWriter):
            sink.abort()
        self._writer = self._checking = None


class RejectsWriter:
    """Streams rejected records to the rejects file through an atomic writer (memory stays flat
    however many there are; nothing appears under the final name before :meth:`publish`).
    ``writer`` is the atomic writer the output gives (:meth:`maskprep.output.commit.OutputSession.
    writer`), ``publish`` publishes it."""

    def __init__(
        self,
        writer: storage.AtomicWriter,
        publish: Callable[[storage.AtomicWriter], storage.WriteResult],
    ) -> None:
        self._writer = writer
        self._publish = publish
        self.published: RejectsFile | None = None

    def add(self, item: Rejected) -> str:
        """Append one rejected record; the line written."""
        record = {"file": item.source, "line": item.line, "reason": item.reason, "raw": item.raw}
        line = _one_line_json(record) + "\n"
        self.add_lines([line])
        return line

    def add_lines(self, lines: list[str]) -> None:
        """Append lines as :meth:`add` wrote them (a resumed build's, see
        :mod:`maskprep.resume`)."""
        for line in lines:
            # A lone surrogate cannot be UTF-8: written as its JSON escape, which reads back as it.
            self._writer.write(line.encode("utf-8", errors="backslashreplace"))

    def publish(self) -> RejectsFile:
        """Move the file to its final name, complete; what the manifest records of it."""
        result = self._publish(self._writer)
        assert result.sha256 is not None, "the writer hashes every byte it publishes"
        self.published = RejectsFile(result.location.name, result.size, result.sha256)
        return self.published

    def discard(self) -> None:
        """Throw the unpublished file away (a published one stays: see :mod:`.commit`)."""
        self._writer.abort()


def _one_line_json(record: dict[str, Any]) -> str:
    """JSON on one line for every reader: json.dumps escapes control characters, but leaves
    U+0085, U+2028 and U+2029, which ``str.splitlines`` and some JSONL readers treat as breaks."""
    text = json.dumps(record, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
