"""Writing shards atomically, and the manifest that marks an output as finished.

A shard appears under its final name only when complete: it is written under a hidden temporary
name, fsynced, then renamed. ``maskprep.json`` is written last the same way, so an output
directory without it is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from . import columns
from .columns import IGNORE_INDEX
from .config import OutputConfig
from .errors import ConfigError, DataError

MANIFEST_NAME = "maskprep.json"
REJECTS_NAME = "rejects.jsonl"
MANIFEST_FORMAT = 1
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"


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
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def prepare_output(config: OutputConfig) -> Path:
    """Create the output directory, or empty it of maskprep's files with ``overwrite``.

    A directory holding anything is refused without ``overwrite``; with it, only files maskprep
    writes are removed, and a directory holding anything else is still refused.
    """
    directory = Path(config.directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: output exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in directory.iterdir())
    if not present:
        return directory
    if not config.overwrite:
        raise ConfigError(
            f"{directory}: output directory is not empty; pass overwrite to replace its contents"
        )
    foreign = [name for name in present if not _is_ours(name)]
    if foreign:
        raise ConfigError(
            f"{directory}: will not overwrite a directory holding files maskprep did not write "
            f"({', '.join(foreign[:3])})"
        )
    for name in present:
        (directory / name).unlink()
    return directory


def _is_ours(name: str) -> bool:
    bare = name.removeprefix(TMP_PREFIX)
    return bare in (MANIFEST_NAME, REJECTS_NAME) or (
        bare.startswith(SHARD_PREFIX) and bare.endswith(tuple(EXTENSIONS.values()))
    )


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
        mask = part.column(columns.ATTENTION_MASK).flatten()
        labels = part.column(columns.LABELS).flatten()
        self._counts[0] += len(mask)
        self._counts[1] += int(pc.sum(mask).as_py() or 0)
        self._counts[2] += int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0)

    def _shard_name(self, index: int) -> str:
        return f"{SHARD_PREFIX}{index:05d}{EXTENSIONS[self.config.format]}"

    def _open_shard(self) -> None:
        name = self._shard_name(len(self.shards))
        self._tmp = self.directory / (TMP_PREFIX + name)
        self._sink = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close_shard
        if self.config.format == "parquet":
            self._writer = pq.ParquetWriter(
                self._sink, self.schema, compression=self.config.compression
            )
        else:
            self._writer = ipc.new_file(self._sink, self.schema)
        self._rows = self._bytes = 0
        self._counts = [0, 0, 0]

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        assert self._tmp is not None
        final = self.directory / self._tmp.name.removeprefix(TMP_PREFIX)
        os.replace(self._tmp, final)
        _fsync_dir(self.directory)
        positions, real, trained = self._counts
        self.shards.append(
            ShardInfo(final.name, self._rows, positions, real, trained, sha256_file(final))
        )
        self._writer = self._sink = self._tmp = None
        # A batch may go on into the next shard; it must see an empty one, not this full one.
        self._rows = self._bytes = 0

    def close(self) -> list[ShardInfo]:
        """Finish the open shard and return every shard written."""
        self._close_shard()
        return self.shards

    def abort(self) -> None:
        """Remove every file this writer made: an aborted build leaves nothing that looks done."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._sink.close()
            except Exception:  # the shard is being thrown away; closing it is best effort
                pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        for shard in self.shards:
            (self.directory / shard.path).unlink(missing_ok=True)
        self.shards = []
        self._writer = self._sink = self._tmp = None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``maskprep.json`` atomically; sorted keys so equal builds give equal bytes."""
    path = directory / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a finished output's manifest; a missing one means the build did not finish."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{directory}: no {MANIFEST_NAME}; the build did not finish")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: manifest is not valid JSON: {exc.msg}") from None


def shard_paths(directory: str | os.PathLike[str]) -> list[Path]:
    """Paths of a finished output's shards, in manifest order."""
    manifest = read_manifest(directory)
    return [Path(directory) / shard["path"] for shard in manifest["shards"]]


def load_dataset(directory: str | os.PathLike[str]) -> Any:
    """Open a finished output as a Hugging Face ``datasets.Dataset`` (memory-mapped)."""
    import datasets

    paths = [str(p) for p in shard_paths(directory)]
    kind = "parquet" if paths and paths[0].endswith(".parquet") else "arrow"
    return datasets.load_dataset(kind, data_files=paths, split="train")


def shard_info_dicts(shards: list[ShardInfo]) -> list[dict[str, Any]]:
    """Shard records as plain dicts for the manifest."""
    return [asdict(s) for s in shards]
