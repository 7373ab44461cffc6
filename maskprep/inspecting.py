"""``maskprep.inspect``: statistics, invariant checks and a decoded view of shards.

The input is a build output directory (its manifest lists the shards and records the strategy,
tokenizer and totals), a single Parquet or Arrow shard, or an Arrow IPC stream. Shards from other
tools work too when they have the contract's columns; what a manifest would have said is then
inferred from the data. Rows stream through :mod:`maskprep.stats` in batches, so memory stays
bounded by the batch size, and Arrow files are memory-mapped.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from . import columns, stats
from .columns import IGNORE_INDEX
from .errors import ConfigError, DataError
from .output.layout import MANIFEST_NAME
from .output.manifest import read_manifest

Role = Literal["trained", "prompt", "padding"]
_READ_COLUMNS = columns.REQUIRED_COLUMNS + columns.PACK_COLUMNS


@dataclass(frozen=True)
class InspectOptions:
    """What to inspect and how.

    ``sample`` inspects that many rows drawn at random (``seed``) instead of all. ``strategy``,
    ``buckets``, ``pad_id`` and ``eos_id`` override what the manifest records (or stand in for it
    on shards without one). ``tokenizer`` (Hub name or directory) decodes rows and supplies the EOS
    id when nothing else does. ``show_rows`` decodes the first rows inspected, ``row_indices``
    those rows of the whole data. ``listed`` is how many offending row indices a check reports.
    ``batch_rows`` bounds the rows analysed at once (and so the memory used). ``check_hashes``
    compares each shard's sha256 with the manifest's when every row is inspected (the files are
    read once more, on a thread beside the analysis).
    """

    sample: int | None = None
    seed: int = 0
    strategy: str | None = None
    buckets: tuple[int, ...] | None = None
    pad_id: int | None = None
    eos_id: int | None = None
    tokenizer: str | None = None
    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None
    show_rows: int = 0
    row_indices: tuple[int, ...] = ()
    listed: int = 5
    batch_rows: int = 32768
    check_hashes: bool = True

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"sample must be at least 1 row, not {self.sample}")
        if self.strategy is not None and self.strategy not in stats.STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {', '.join(stats.STRATEGIES)}, not {self.strategy!r}"
            )
        if self.buckets is not None and (not self.buckets or min(self.buckets) < 1):
            raise ConfigError(f"bucket widths must be positive, not {self.buckets}")
        for name in ("max_pad_fraction", "min_label_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie between 0 and 1, not {value}")
        if self.show_rows < 0 or any(i < 0 for i in self.row_indices):
            raise ConfigError("row numbers must not be negative")
        if self.listed < 0 or self.batch_rows < 1:
            raise ConfigError("listed must be >= 0 and batch_rows >= 1")


@dataclass(frozen=True)
class BuildFacts:
    """What the manifest says about the build that wrote the data."""

    maskprep_version: str | None
    documents_read: int | None
    documents_truncated: int | None
    documents_dropped: int | None
    documents_split: int | None
    records_rejected: int | None
    tokens_lost: int | None
    tokenizer: dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """A run of one row's tokens with one role, inside one packed document (``document`` is its
    number within the row; ``None`` for padding and for unpacked rows)."""

    role: Role
    document: int | None
    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class DecodedRow:
    """One row shown as decoded segments; ``index`` is its row number in the whole data."""

    index: int
    width: int
    real_tokens: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class InspectResult:
    """Everything ``maskprep inspect`` reports. ``rows_total`` rows exist; ``stats.rows`` of them
    were inspected (fewer when sampled)."""

    source: str
    shards: tuple[str, ...]
    rows_total: int
    sampled: bool
    layout: stats.Layout
    stats: stats.DataStats
    build: BuildFacts | None
    checks: tuple[stats.CheckResult, ...]
    decoded: tuple[DecodedRow, ...]
    elapsed_s: float

    def failures(self, strict: bool = False) -> list[stats.CheckResult]:
        """Checks that failed; with ``strict``, warnings too."""
        return stats.failures(self.checks, strict)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed), as ``maskprep inspect`` exits 0."""
        return not self.failures()

    def passes(self, strict: bool = False) -> bool:
        """True when no check failed and, with ``strict``, none warned."""
        return not self.failures(strict)


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Shard:
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


def _open_shard(path: Path) -> _Shard:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    try:
        kind = _kind(path)
        if kind == "parquet":
            rows = pq.ParquetFile(path).metadata.num_rows
            return _Shard(str(path), rows, path=path)
        if kind == "arrow-file":
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return _Shard(str(path), rows, path=path)
        # A stream file (what `datasets` caches) has no footer: read it, memory-mapped.
        with pa.memory_map(str(path)) as source:
            table = ipc.open_stream(source).read_all()
        return _Shard(str(path), table.num_rows, path=path, table=table)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a Parquet or Arrow file: {exc}") from None


def _read_stream(stdin: BinaryIO, whole: bool) -> _Shard:
    """Standard input as a shard: read whole when ``whole`` (a sample needs the row count up
    front), else streamed, so memory stays flat whatever its size."""
    try:
        reader = ipc.open_stream(stdin)
        if whole:
            table = reader.read_all()
            return _Shard("<stdin>", table.num_rows, table=table)
    except pa.ArrowInvalid as exc:
        raise DataError(f"<stdin>: not an Arrow IPC stream: {exc}") from None
    return _Shard("<stdin>", None, stream=reader)


def _batches(
    shard: _Shard, size: int, needed: np.ndarray | None = None
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


def _stream_batches(shard: _Shard, size: int) -> Iterator[pa.RecordBatch]:
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
    missing = stats.missing_columns(present)
    if missing:
        raise DataError(
            f"{name}: missing column(s) {', '.join(missing)}; a maskprep shard has "
            f"{', '.join(columns.REQUIRED_COLUMNS)}"
        )


def _open_input(
    path: str, stdin: BinaryIO | None, whole: bool
) -> tuple[list[_Shard], dict[str, Any] | None]:
    if path == "-":
        if stdin is None:
            raise ConfigError("'-' reads an Arrow IPC stream from standard input; none was given")
        return [_read_stream(stdin, whole)], None
    target = Path(path)
    if target.is_dir():
        if not (target / MANIFEST_NAME).is_file():
            raise DataError(
                f"{target}: no {MANIFEST_NAME}; the build did not finish (inspect a single "
                "shard file to check it anyway)"
            )
        manifest = read_manifest(target)
        shards = [_open_shard(target / s["path"]) for s in manifest.get("shards", [])]
        return shards, manifest
    return [_open_shard(target)], None


# ----------------------------------------------------------------------------- manifest facts


_COUNTED = ("positions", "real_tokens", "label_tokens")


@dataclass
class _Scan:
    """What one pass over the rows gathered: the analysed parts, per-shard counts (positions,
    real tokens, trained tokens) for the manifest check, and the rows to decode."""

    parts: list[stats.PartStats]
    counts: np.ndarray
    first_rows: list[int]
    kept_rows: dict[int, dict[str, Any]]
    rows: int = 0


def _scan(
    shards: list[_Shard], options: InspectOptions, chosen: np.ndarray | None, eos_id: int | None
) -> _Scan:
    """Analyse every row (or the ``chosen`` ones) of the shards in order, batch by batch."""
    scan = _Scan([], np.zeros((len(shards), 3), dtype=np.int64), [], {})
    wanted = np.asarray(sorted(set(options.row_indices)), dtype=np.int64)
    shard_start = 0
    for number, shard in enumerate(shards):
        needed = None
        if chosen is not None and shard.rows is not None:
            inside = (shard_start, shard_start + shard.rows)
            lo, hi = np.searchsorted(chosen, inside)
            w_lo, w_hi = np.searchsorted(wanted, inside)
            needed = np.union1d(chosen[lo:hi], wanted[w_lo:w_hi]) - shard_start
        seen = 0
        for offset, batch in _batches(shard, options.batch_rows, needed):
            start = shard_start + offset
            stop = start + batch.num_rows
            seen = offset + batch.num_rows
            if chosen is None:
                local = None
                row_ids = np.arange(start, stop)
            else:
                lo, hi = np.searchsorted(chosen, [start, stop])
                local = chosen[lo:hi] - start
                row_ids = chosen[lo:hi]
            take = batch if local is None else batch.take(local)
            try:
                if take.num_rows:
                    part = stats.analyse(take, row_ids, eos_id)
                    scan.parts.append(part)
                    scan.counts[number] += (part.width.sum(), part.real.sum(), part.trained.sum())
            except DataError as error:
                raise DataError(f"{shard.name}: {error}") from None
            need = max(options.show_rows - len(scan.first_rows), 0)
            new_first = row_ids[:need].tolist()
            scan.first_rows.extend(new_first)
            w_lo, w_hi = np.searchsorted(wanted, [start, stop])
            for index in [*new_first, *wanted[w_lo:w_hi].tolist()]:
                scan.kept_rows[index] = batch.slice(index - start, 1).to_pylist()[0]
        shard_start += shard.rows if shard.rows is not None else seen
    scan.rows = shard_start
    return scan


def _check_row_indices(indices: tuple[int, ...], rows: int) -> None:
    for index in indices:
        if index >= rows:
            raise ConfigError(f"row {index} is out of range: the data has {rows} rows")


def _hash_files(paths: dict[int, Path], stop: threading.Event) -> dict[int, str]:
    """sha256 of each shard file by shard number; gives up (incomplete) once ``stop`` is set."""
    digests = {}
    for number, path in paths.items():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if stop.is_set():
                    return digests
                digest.update(chunk)  # releases the GIL: runs beside the analysis
        digests[number] = digest.hexdigest()
    return digests


def _shards_check(
    shards: list[_Shard],
    manifest: dict[str, Any],
    counts: np.ndarray | None,
    digests: dict[int, str] | None,
    listed: int,
) -> stats.CheckResult:
    """Whether the shard files are the ones the manifest lists: same sha256, rows and (when every
    row was read) positions, real and trained tokens. A shard copied short, replaced or edited
    since the build fails it; the rows it names are the first row of each such shard."""
    entries = manifest.get("shards", [])
    problems: list[str] = []
    first_rows: list[int] = []
    bad_rows = 0
    start = 0
    for number, (shard, entry) in enumerate(zip(shards, entries, strict=True)):
        differs = []
        recorded = entry.get("sha256")
        if digests is not None and recorded and digests.get(number, recorded) != recorded:
            differs.append("sha256")
        if entry.get("rows", shard.rows) != shard.rows:
            differs.append(f"rows {shard.rows:,} (manifest {entry['rows']:,})")
        for column, key in enumerate(_COUNTED):
            found = None if counts is None else int(counts[number, column])
            if found is not None and entry.get(key, found) != found:
                differs.append(f"{key.replace('_', ' ')} {found:,} (manifest {entry[key]:,})")
        if differs:
            problems.append(f"{entry.get('path', shard.name)}: {', '.join(differs)}")
            first_rows.append(start)
            bad_rows += shard.rows
        start += shard.rows
    what = ", ".join(
        ["sha256"] * (digests is not None) + ["rows"] + (["tokens"] if counts is not None else [])
    )
    if not problems:
        skipped = []
        if digests is None:
            skipped.append("sha256 not checked")
        if counts is None:
            skipped.append("tokens not counted in a sample")
        note = f"; {', '.join(skipped)}" if skipped else ""
        detail = f"{len(shards)} shard(s) match the manifest ({what}){note}"
        return stats.CheckResult(stats.SHARDS_MATCH_MANIFEST, "invariant", "pass", 0, (), detail)
    detail = f"{len(problems)} of {len(shards)} shard(s) differ from the manifest: " + "; ".join(
        problems[:3]
    )
    if len(problems) > 3:
        detail += f"; and {len(problems) - 3} more"
    return stats.CheckResult(
        stats.SHARDS_MATCH_MANIFEST,
        "invariant",
        "fail",
        bad_rows,
        tuple(first_rows[:listed]),
        detail,
    )


def _hints(manifest: dict[str, Any] | None, options: InspectOptions, eos: int | None) -> Any:
    shape = (manifest or {}).get("config", {}).get("shape", {})
    tokenizer = (manifest or {}).get("tokenizer", {})
    strategy = options.strategy or shape.get("strategy")
    if strategy is not None and strategy not in stats.STRATEGIES:
        strategy = None  # a strategy this version does not know: infer it from the data
    buckets = options.buckets or (tuple(shape["buckets"]) if shape.get("buckets") else None)
    pad_id = options.pad_id if options.pad_id is not None else tokenizer.get("pad_token_id")
    return stats.LayoutHints(
        strategy=strategy,
        max_length=shape.get("max_length"),
        buckets=buckets,
        # Packed rows may be padded at the end whatever side the tokenizer pads on.
        padding_side=tokenizer.get("padding_side") if strategy in ("pad", "bucket") else None,
        pad_id=pad_id,
        eos_id=eos,
        strategy_source="option" if options.strategy else "manifest",
        pad_id_source="option" if options.pad_id is not None else "manifest",
    )


def _build_facts(manifest: dict[str, Any]) -> BuildFacts:
    totals = manifest.get("totals", {})
    tokenizer = manifest.get("tokenizer", {})
    lost = [totals[k] for k in ("tokens_truncated", "tokens_dropped") if k in totals]
    keep = (
        "name_or_path",
        "revision",
        "tokenizer_class",
        "vocab_size",
        "fingerprint",
        "pad_token",
        "pad_token_id",
        "eos_token",
        "eos_token_id",
        "bos_token_id",
        "padding_side",
    )
    return BuildFacts(
        maskprep_version=manifest.get("maskprep_version"),
        documents_read=totals.get("records_read"),
        documents_truncated=totals.get("documents_truncated"),
        documents_dropped=totals.get("documents_dropped"),
        documents_split=totals.get("documents_split"),
        records_rejected=totals.get("records_rejected"),
        tokens_lost=sum(v for v in lost if v is not None)
        if any(v is not None for v in lost)
        else None,
        tokenizer={k: tokenizer[k] for k in keep if k in tokenizer},
    )


def _load_tokenizer(name_or_path: str, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load tokenizer {name_or_path!r}: {first}") from None


# ----------------------------------------------------------------------------- decoding


def decode_row(row: dict[str, Any], index: int, tokenizer: Any) -> DecodedRow:
    """Cut one row (a dict of its columns' values) into runs of one role and one document, and
    decode each run as a whole, so multi-byte characters split across tokens read correctly."""
    ids = np.asarray(row[columns.INPUT_IDS], np.int64)
    mask = np.asarray(row[columns.ATTENTION_MASK], np.int64)
    labels = np.asarray(row[columns.LABELS], np.int64)
    width = min(len(ids), len(mask), len(labels))
    ids, mask, labels = ids[:width], mask[:width], labels[:width]
    role = np.where(mask == 0, 2, np.where(labels != IGNORE_INDEX, 0, 1))
    document = np.full(width, -1, np.int64)
    seq_lens = row.get(columns.SEQ_LENS)
    real_at = np.flatnonzero(mask != 0)
    if seq_lens is not None and len(real_at):
        # Documents fill the real positions in order; anything beyond sum(seq_lens) is shown as
        # part of the last document so a broken row still displays every token.
        bounds = np.cumsum(np.maximum(np.asarray(seq_lens, np.int64), 0))
        numbers = np.searchsorted(bounds, np.arange(len(real_at)), side="right")
        document[real_at] = np.minimum(numbers, max(len(seq_lens) - 1, 0))
    change = np.flatnonzero((np.diff(role) != 0) | (np.diff(document) != 0)) + 1
    cuts = np.concatenate(([0], change, [width])).astype(int)
    names: tuple[Role, Role, Role] = ("trained", "prompt", "padding")
    segments = []
    for start, stop in itertools.pairwise(cuts):
        if start == stop:
            continue
        kind = names[int(role[start])]
        run = tuple(int(i) for i in ids[start:stop])
        text = "" if kind == "padding" else tokenizer.decode(list(run), skip_special_tokens=False)
        doc = int(document[start]) if seq_lens is not None and document[start] >= 0 else None
        segments.append(Segment(kind, doc, run, text))
    return DecodedRow(index, width, int(np.count_nonzero(mask)), tuple(segments))


# ----------------------------------------------------------------------------- inspect


def inspect(
    path: str,
    options: InspectOptions = InspectOptions(),
    *,
    stdin: BinaryIO | None = None,
) -> InspectResult:
    """Check and summarise the rows at ``path``: a build output directory, a shard file, or
    ``"-"`` for an Arrow IPC stream read from ``stdin``.

    Raises :class:`~maskprep.errors.ConfigError` for a missing path, a row number out of range or
    a tokenizer that cannot be loaded, and :class:`~maskprep.errors.DataError` for data that cannot
    be read as rows (a missing column, a file that is not Parquet or Arrow, an unfinished build).
    Failed checks are not errors: they are in the result.
    """
    started = time.perf_counter()
    shards, manifest = _open_input(path, stdin, whole=options.sample is not None)
    tokenizer_facts = (manifest or {}).get("tokenizer", {})
    tokenizer_name = options.tokenizer or tokenizer_facts.get("name_or_path")
    revision = tokenizer_facts.get("revision") if options.tokenizer is None else None
    wants_rows = options.show_rows > 0 or bool(options.row_indices)
    eos_id = options.eos_id if options.eos_id is not None else tokenizer_facts.get("eos_token_id")
    tokenizer = None
    if wants_rows or (eos_id is None and options.tokenizer is not None):
        if tokenizer_name is None:
            raise ConfigError(
                "decoding rows needs a tokenizer, and the input has no manifest naming one"
            )
        tokenizer = _load_tokenizer(tokenizer_name, revision)
        if eos_id is None:
            eos_id = tokenizer.eos_token_id

    counted = [s.rows for s in shards if s.rows is not None]
    # A streamed stdin is counted as it is read; its row numbers are checked after it.
    rows_known = sum(counted) if len(counted) == len(shards) else None
    if rows_known is not None:
        _check_row_indices(options.row_indices, rows_known)
    chosen = None
    if options.sample is not None and rows_known is not None and options.sample < rows_known:
        rng = np.random.default_rng(options.seed)
        chosen = np.sort(rng.choice(rows_known, size=options.sample, replace=False))

    stop_hashing = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="maskprep-sha256") as hashing:
        digests = None
        # A sample is a quick look: hashing would read every byte of every shard.
        if manifest is not None and options.check_hashes and chosen is None:
            paths = {i: s.path for i, s in enumerate(shards) if s.path is not None}
            digests = hashing.submit(_hash_files, paths, stop_hashing)
        try:
            scan = _scan(shards, options, chosen, eos_id)
            _check_row_indices(options.row_indices, scan.rows)
        except BaseException:
            stop_hashing.set()  # the error is reported now, not once every shard is hashed
            raise
        shards_check = None
        if manifest is not None:
            shards_check = _shards_check(
                shards,
                manifest,
                scan.counts if chosen is None else None,
                digests.result() if digests is not None else None,
                options.listed,
            )

    hints = _hints(manifest, options, eos_id)
    thresholds = stats.Thresholds(options.max_pad_fraction, options.min_label_fraction)
    layout, data_stats, checks = stats.conclude(
        scan.parts, hints, thresholds, options.listed, shards_check
    )
    shown = list(dict.fromkeys([*scan.first_rows, *options.row_indices]))
    decoded = tuple(decode_row(scan.kept_rows[i], i, tokenizer) for i in shown) if tokenizer else ()
    return InspectResult(
        source=path,
        shards=tuple(s.name for s in shards),
        rows_total=scan.rows,
        sampled=chosen is not None,
        layout=layout,
        stats=data_stats,
        build=_build_facts(manifest) if manifest is not None else None,
        checks=checks,
        decoded=decoded,
        elapsed_s=time.perf_counter() - started,
    )
