"""``maskprep.build``: records → encode → shape → shards + manifest, streamed in batches."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

from . import columns, storage
from ._version import __version__
from .config import BuildConfig
from .errors import BadRecordError, DataError
from .output.directory import Action
from .output.freshness import check_inputs_unchanged, check_same_build, check_tokenizer_unchanged
from .output.lock import DEFAULT_LEASE_TTL
from .output.manifest import MANIFEST_FORMAT
from .output.rejects import RejectsWriter
from .output.session import OutputRequest, OutputSession, write_failures
from .output.shards import ShardInfo, ShardWriter, shard_info_dicts
from .shaping.fill import FillStats
from .shaping.fit import ShapeStats, check_room, loses_all_labels
from .shaping.rows import RowBatch
from .shaping.shaper import make_shaper
from .sources.parts import part_manifest
from .sources.records import Record, Rejected, SourceReader
from .tokenizing.cache import TokenizerCache
from .tokenizing.encoder import EncodedDoc
from .tokenizing.pool import EncodingPool
from .tokenizing.prepare import PreparedTokenizer, prepare_tokenizer


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running build, handed to the ``on_progress`` callback after each batch."""

    records: int
    rows: int
    real_tokens: int
    bytes_read: int
    bytes_total: int | None
    elapsed_s: float


@dataclass
class Totals:
    """Every count of a build. Each record read ends up written, rejected or dropped."""

    records_read: int = 0
    blank_lines: int = 0
    records_rejected: int = 0
    documents_without_labels: int = 0
    rows_written: int = 0
    positions: int = 0
    real_tokens: int = 0
    label_tokens: int = 0
    shape: ShapeStats = field(default_factory=ShapeStats)

    @property
    def pad_tokens(self) -> int:
        """Positions that hold padding."""
        return self.positions - self.real_tokens

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for the manifest and ``--json``, with the derived fractions."""
        return {
            "records_read": self.records_read,
            "blank_lines": self.blank_lines,
            "records_rejected": self.records_rejected,
            "documents_without_labels": self.documents_without_labels,
            **self.shape.as_dict(),
            "rows_written": self.rows_written,
            "positions": self.positions,
            "real_tokens": self.real_tokens,
            "pad_tokens": self.pad_tokens,
            "label_tokens": self.label_tokens,
            "fill": round(self.real_tokens / self.positions, 6) if self.positions else 0.0,
        }


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: where (a path, or the URL of an object-store output), the
    manifest written, and how long it took."""

    output: Path | str
    manifest: dict[str, Any]
    totals: Totals
    shards: list[ShardInfo]
    elapsed_s: float
    #: With resume: complete shards of the interrupted build that were checked and kept.
    reused_shards: int = 0
    #: The tokenizer came from the tokenizer cache (transformers was not loaded).
    tokenizer_cached: bool = False


def _batches(
    reader: SourceReader, size: int, on_reject: Callable[[Rejected], None]
) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for item in reader:
        if isinstance(item, Rejected):
            on_reject(item)
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build(
    config: BuildConfig,
    *,
    stdin: BinaryIO | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    tokenizer: Any = None,
    tokenizer_cache: TokenizerCache | None = None,
    storage_options: storage.StorageOptions | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> BuildResult:
    """Build masked shards (padded, bucketed, packed or unpadded, per ``config.shape.strategy``)
    and a manifest from ``config``; return what was written.

    Raises :class:`~maskprep.errors.ConfigError` for unusable options, inputs or tokenizers,
    :class:`~maskprep.errors.OutputError` (a ``ConfigError``) when another build holds the output
    directory, it cannot be written or the disk fills up, and
    :class:`~maskprep.errors.DataError` for bad data under the ``fail`` policy; on any error the
    shards this call wrote are removed, so nothing left behind looks finished. A build killed
    outright leaves its complete shards, which ``config.output.resume`` reuses. ``tokenizer`` is
    the tokenizer ``load_tokenizer(config.tokenizer)`` returns, already loaded (a worker building
    several parts loads it once).

    ``tokenizer_cache``, when given, lets a plain-text build with a local tokenizer skip loading
    transformers once an earlier build has cached that tokenizer (see
    :mod:`maskprep.tokenizing.cache`); without one nothing is cached. It never changes the output.

    ``config.output.directory`` is a local directory or an object-store URL (``s3://…``), whose
    filesystem ``storage_options`` configures; there the output's lock is a lease that lapses
    ``lease_ttl`` seconds after its holder stops renewing it (see docs/storage.md).
    """
    location = storage.parse_location(config.output.directory, storage_options)
    request = OutputRequest(
        overwrite=config.output.overwrite, resume=config.output.resume, lease_ttl=lease_ttl
    )
    with write_failures(location), OutputSession.open(location, request) as output:
        if output.action is Action.FINISHED:
            finished = finished_build(output, config, storage_options)
            if finished is not None:
                return finished
        return _build_locked(
            config,
            output,
            storage_options,
            stdin=stdin,
            on_progress=on_progress,
            loaded=tokenizer,
            tokenizer_cache=tokenizer_cache,
        )


def finished_build(
    output: OutputSession,
    config: BuildConfig,
    storage_options: storage.StorageOptions | None = None,
) -> BuildResult | None:
    """Resuming an output that already finished: its result, unchanged, when it is still what
    this build makes (same options and part, inputs and tokenizer files unchanged); refused when
    it is not. ``None`` when a shard it lists is gone: the output is then unfinished again (its
    manifest removed) and the build resumes it."""
    manifest = output.state.manifest
    assert manifest is not None
    where = output.location.url
    check_same_build(manifest, config, where)
    check_inputs_unchanged(manifest, config, where, storage_options)
    check_tokenizer_unchanged(manifest, config, where)
    if output.state.missing:
        output.unfinish()
        return None
    output.tidy()
    return result_from_manifest(_result_path(output.location), manifest, 0.0, reused_all=True)


def _result_path(location: storage.Location) -> Path | str:
    return Path(location.path) if location.is_local else location.url


def result_from_manifest(
    directory: Path | str,
    manifest: dict[str, Any],
    elapsed_s: float,
    *,
    reused_all: bool = False,
) -> BuildResult:
    """A :class:`BuildResult` for a finished output, rebuilt from its manifest."""
    counts = manifest["totals"]
    shape = ShapeStats(**{f.name: counts[f.name] for f in fields(ShapeStats)})
    totals = Totals(
        **{f.name: counts[f.name] for f in fields(Totals) if f.name != "shape"}, shape=shape
    )
    shards = [ShardInfo(**entry) for entry in manifest["shards"]]
    reused = len(shards) if reused_all else 0
    return BuildResult(directory, manifest, totals, shards, elapsed_s, reused_shards=reused)


def _build_locked(
    config: BuildConfig,
    output: OutputSession,
    storage_options: storage.StorageOptions | None,
    *,
    stdin: BinaryIO | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    loaded: Any = None,
    tokenizer_cache: TokenizerCache | None = None,
) -> BuildResult:
    """The build proper, run while this process holds the output's lock."""
    started = time.perf_counter()
    reader = SourceReader(
        config.source,
        stdin=stdin,
        sft=config.sft,
        part=config.part,
        storage_options=storage_options,
    )
    tokenizing = prepare_tokenizer(config, loaded, tokenizer_cache)
    info = tokenizing.info
    check_room(config.shape, len(info.prefix_ids) + len(info.suffix_ids))
    shaper = make_shaper(config.shape, info.pad_token_id, info.padding_side)
    fill = FillStats.for_shape(config.shape)

    output.begin()
    packed = config.shape.strategy == "pack"
    writer = ShardWriter(
        output.target,
        config.output,
        columns.schema(packed=packed),
        existing=output.existing_shards,
        keepalive=output.keepalive,
    )
    totals = Totals(shape=shaper.stats)
    skip = config.source.on_bad_record == "skip"
    rejects = RejectsWriter(output.target) if skip else None

    def on_reject(item: Rejected) -> None:
        if rejects is None:
            raise BadRecordError(item.location, item.reason)
        totals.records_rejected += 1
        totals.documents_without_labels += item.without_labels
        rejects.add(item)

    def emit(batch: RowBatch) -> None:
        record_batch = batch.to_arrow()
        writer.write(record_batch)
        totals.rows_written += batch.num_rows
        totals.positions += len(batch.attention_mask)
        totals.real_tokens += int(batch.length.sum())
        totals.label_tokens += int((batch.labels != columns.IGNORE_INDEX).sum())
        fill.add(batch)

    spec = tokenizing.spec
    pool = EncodingPool(spec) if spec is not None else None
    batches = _batches(reader, config.batch_size, on_reject)
    encoded = _encoded(batches, pool, tokenizing, config, on_reject)
    try:
        for _records, docs in encoded:
            # Rejected records are added to records_read once, at the end.
            totals.records_read += len(docs)
            for batch in shaper.shape(docs):
                emit(batch)
            if on_progress is not None:
                on_progress(_progress(totals, reader, started))
        for batch in shaper.finish():
            emit(batch)
        totals.records_read += totals.records_rejected
        totals.blank_lines = sum(s.blank_lines for s in reader.stats)
        # A part may be empty (more parts than lines): the merge checks the whole.
        if totals.records_read == 0 and config.part is None:
            raise DataError(f"{_names(reader)}: no documents in the input")
        if totals.rows_written == 0 and config.part is None:
            shape = totals.shape
            raise DataError(
                f"{_names(reader)}: no document could be used ({totals.records_rejected} "
                f"rejected, {shape.documents_dropped} dropped as too long)"
            )
        shards = writer.close()
    except BaseException:
        encoded.close()  # stops the reader thread before the rejects file is closed
        writer.abort()
        if rejects is not None and totals.records_rejected:
            rejects.publish()  # kept so the user can see why records were rejected
        elif rejects is not None:
            rejects.discard()
        raise
    finally:
        if pool is not None:
            pool.close()
    _check_accounting(totals)
    if rejects is not None:
        rejects.publish()
    if on_progress is not None:
        on_progress(_progress(totals, reader, started))
    manifest = {
        "format": MANIFEST_FORMAT,
        "maskprep_version": __version__,
        "config": config.to_manifest(),
        "tokenizer": asdict(info),
        "inputs": [asdict(s) for s in reader.stats],
        "shards": shard_info_dicts(shards),
        "totals": totals.as_dict(),
        "fill": fill.as_dict(totals.rows_written, totals.positions, totals.real_tokens),
    }
    if config.part is not None:
        manifest["part"] = part_manifest(config.part, reader.ranges or [])
    output.commit(manifest)
    elapsed = time.perf_counter() - started
    return BuildResult(
        _result_path(output.location),
        manifest,
        totals,
        shards,
        elapsed,
        reused_shards=writer.reused,
        tokenizer_cached=tokenizing.cached,
    )


def _encoded(
    batches: Iterator[list[Record]],
    pool: EncodingPool | None,
    tokenizing: PreparedTokenizer,
    config: BuildConfig,
    on_reject: Callable[[Rejected], None],
) -> Generator[tuple[list[Record], list[EncodedDoc]], None, None]:
    """Each batch of records with its encoded documents: through the pool when the fast path
    applies, else encoded here in turn."""
    if pool is not None:
        yield from pool.encode(batches)
        return
    sft_encoder, encoder = tokenizing.sft_encoder, tokenizing.encoder
    for records in batches:
        if sft_encoder is not None:
            encoded = sft_encoder.encode_records(records)
            yield records, _trainable(records, encoded, config, on_reject)
        else:
            assert encoder is not None, "a cached tokenizer always has the fast path"
            yield records, encoder.encode([r.text for r in records], [r.location for r in records])


def _trainable(
    records: list[Record],
    encoded: list[EncodedDoc | Rejected],
    config: BuildConfig,
    on_reject: Callable[[Rejected], None],
) -> list[EncodedDoc]:
    """Supervised documents that keep a trained token once fitted; the others are rejected."""
    docs = []
    for record, item in zip(records, encoded, strict=True):
        if isinstance(item, Rejected):
            on_reject(item)
        elif loses_all_labels(item, config.shape):
            limit = config.shape.max_length
            reason = f"no trained token left after truncation to max_length {limit}"
            payload = record.payload.as_json() if record.payload is not None else {}
            raw = json.dumps(payload, ensure_ascii=False)
            on_reject(Rejected(record.source, record.line, reason, raw, without_labels=True))
        else:
            docs.append(item)
    return docs


def _progress(totals: Totals, reader: SourceReader, started: float) -> Progress:
    return Progress(
        records=totals.records_read,
        rows=totals.rows_written,
        real_tokens=totals.real_tokens,
        bytes_read=reader.bytes_read,
        bytes_total=reader.bytes_total,
        elapsed_s=time.perf_counter() - started,
    )


def _names(reader: SourceReader) -> str:
    names = [s.path for s in reader.stats]
    return names[0] if len(names) == 1 else f"{len(names)} inputs"


def _check_accounting(totals: Totals) -> None:
    shape = totals.shape
    accounted = shape.documents_written + shape.documents_dropped + totals.records_rejected
    if accounted != totals.records_read:
        raise AssertionError(
            f"internal error: {totals.records_read} records read but {accounted} accounted for"
        )
