"""``maskprep.inspect``: statistics, invariant checks and a decoded view of shards, in one pass.

The input is a build output directory (its manifest lists the shards and records the strategy,
tokenizer and totals), a single Parquet or Arrow shard, or an Arrow IPC stream. A maskprep shard
read without its manifest says the same in its schema metadata (:mod:`maskprep.contract`). Shards
from other tools work too when they have the contract's columns; what a manifest would have said
is then inferred from the rows. The rows stream through :class:`~.stats.ColumnStats` in batches,
so memory stays bounded by the batch size (and the number of distinct row widths and token ids),
not by the rows, and Arrow files are memory-mapped.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from .. import storage
from ..errors import ConfigError, DataError
from ..reading.shards import Shard, declared, open_input, shard_batches
from .checks import CheckResult
from .layout import LayoutHints, infer_layout, layout_hints, with_tokenizer
from .options import InspectOptions
from .results import InspectResult, build_facts, data_stats, decode_row
from .stats import ColumnStats
from .verdicts import (
    ModelChecks,
    check_results,
    manifest_consistent,
    model_checks,
    shards_match_manifest,
)


@dataclass
class _RowsRead:
    """What one pass over the rows keeps besides the column statistics: per-shard counts
    (positions, real tokens, trained tokens) for the manifest check, and the rows to decode."""

    counts: np.ndarray
    first_rows: list[int] = field(default_factory=list)
    kept_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    rows: int = 0


def _read_rows(
    shards: list[Shard],
    options: InspectOptions,
    chosen: np.ndarray | None,
    stats: ColumnStats,
    model: ModelChecks | None,
) -> _RowsRead:
    """Add every row (or the ``chosen`` ones) of the shards in order, batch by batch, to
    ``stats`` and, where the model's limits are known, to ``model``."""
    read = _RowsRead(np.zeros((len(shards), 3), dtype=np.int64))
    wanted = np.asarray(sorted(set(options.row_indices)), dtype=np.int64)
    shard_start = 0
    for number, shard in enumerate(shards):
        needed = None
        if chosen is not None and shard.rows is not None:
            inside = (shard_start, shard_start + shard.rows)
            lo, hi = np.searchsorted(chosen, inside)
            w_lo, w_hi = np.searchsorted(wanted, inside)
            needed = np.union1d(chosen[lo:hi], wanted[w_lo:w_hi]) - shard_start
        before = np.array([stats.positions, stats.real_tokens, stats.label_tokens])
        seen = 0
        for offset, batch in shard_batches(shard, options.batch_rows, needed):
            start = shard_start + offset
            stop = start + batch.num_rows
            seen = offset + batch.num_rows
            if chosen is None:
                take, row_ids = batch, np.arange(start, stop)
            else:
                lo, hi = np.searchsorted(chosen, [start, stop])
                take, row_ids = batch.take(chosen[lo:hi] - start), chosen[lo:hi]
            try:
                if take.num_rows:
                    stats.add(take, row_ids)
                    if model is not None:
                        model.add(take, row_ids)
            except DataError as error:
                raise DataError(f"{shard.name}: {error}") from None
            new_first = row_ids[: max(options.show_rows - len(read.first_rows), 0)].tolist()
            read.first_rows.extend(new_first)
            w_lo, w_hi = np.searchsorted(wanted, [start, stop])
            for index in [*new_first, *wanted[w_lo:w_hi].tolist()]:
                read.kept_rows[index] = batch.slice(index - start, 1).to_pylist()[0]
        read.counts[number] = [stats.positions, stats.real_tokens, stats.label_tokens] - before
        shard_start += shard.rows if shard.rows is not None else seen
    read.rows = shard_start
    return read


def hash_files(paths: dict[int, storage.Location], stop: threading.Event) -> dict[int, str]:
    """sha256 of each shard file (or object, streamed) by shard number; gives up (incomplete)
    once ``stop`` is set."""
    digests: dict[int, str] = {}
    for number, path in paths.items():
        with storage.open_read(path) as handle:
            digest = storage.sha256_stream(handle, None, stop)  # runs beside the analysis
        if digest is None:
            return digests
        digests[number] = digest
    return digests


def _check_row_indices(indices: tuple[int, ...], rows: int) -> None:
    for index in indices:
        if index >= rows:
            raise ConfigError(f"row {index} is out of range: the data has {rows} rows")


def inspect(
    path: str,
    options: InspectOptions = InspectOptions(),
    *,
    stdin: BinaryIO | None = None,
) -> InspectResult:
    """Check and summarise the rows at ``path``: a build output directory, a directory of shards
    without a manifest, a shard file, or ``"-"`` for Arrow IPC (stream or file) read from
    ``stdin``. With a model (``options.model``) or a tokenizer that sets ``model_max_length``,
    the rows are also held to the model's positions and vocabulary.

    Raises :class:`~maskprep.errors.ConfigError` for a missing path, a row number out of range or
    a tokenizer that cannot be loaded, and :class:`~maskprep.errors.DataError` for data that cannot
    be read as rows (a missing column, a file that is not Parquet or Arrow, an unfinished build).
    Failed checks are not errors: they are in the result.
    """
    started = time.perf_counter()
    shards, manifest = open_input(
        path, stdin, whole=options.sample is not None, options=options.storage_options
    )
    found = declared(shards, manifest)
    contract = found.contract
    hints = layout_hints(found, options)
    tokenizer = None
    # A tokenizer named here is loaded for its model_max_length too, not only for what the
    # options and the manifest left unsaid (with_tokenizer fills only those).
    if options.show_rows > 0 or options.row_indices or options.tokenizer is not None:
        name = options.tokenizer or (contract.tokenizer if contract else None)
        if name is None:
            raise ConfigError(
                "decoding rows needs a tokenizer, and the input has no manifest naming one"
            )
        revision = contract.tokenizer_revision if contract and options.tokenizer is None else None
        from ..tokenizing.loading import from_pretrained

        tokenizer = from_pretrained(name, revision, trust_remote_code=False)
        hints = with_tokenizer(hints, tokenizer)

    counted = [s.rows for s in shards if s.rows is not None]
    # A streamed stdin is counted as it is read; its row numbers are checked after it.
    rows_known = sum(counted) if len(counted) == len(shards) else None
    if rows_known is not None:
        _check_row_indices(options.row_indices, rows_known)
    chosen = None
    if options.sample is not None and rows_known is not None and options.sample < rows_known:
        rng = np.random.default_rng(options.seed)
        chosen = np.sort(rng.choice(rows_known, size=options.sample, replace=False))

    stats = ColumnStats(hints, options)
    stop_hashing = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="maskprep-sha256") as hashing:
        digests = None
        # A sample is a quick look: hashing would read every byte of every shard.
        if manifest is not None and options.check_hashes and chosen is None:
            paths = {i: s.location for i, s in enumerate(shards) if s.location is not None}
            digests = hashing.submit(hash_files, paths, stop_hashing)
        try:
            model = model_checks(options, contract, tokenizer)
            read = _read_rows(shards, options, chosen, stats, model)
            _check_row_indices(options.row_indices, read.rows)
        except BaseException:
            stop_hashing.set()  # the error is reported now, not once every shard is hashed
            raise
        shards_check = manifest_check = None
        if manifest is not None:
            shards_check = shards_match_manifest(
                shards,
                manifest,
                read.counts if chosen is None else None,
                digests.result() if digests is not None else None,
                options.listed,
                found.conflicts,
            )
            where = storage.parse_location(path, options.storage_options)
            manifest_check = manifest_consistent(manifest, where)

    layout = infer_layout(stats, hints)
    checks = check_results(stats, layout, hints, shards_check, manifest_check)
    shown = list(dict.fromkeys([*read.first_rows, *options.row_indices]))
    return InspectResult(
        source=path,
        shards=tuple(s.name for s in shards),
        rows_total=read.rows,
        sampled=chosen is not None,
        layout=layout,
        stats=data_stats(stats, layout),
        build=build_facts(manifest) if manifest is not None else None,
        checks=checks + (model.results() if model is not None else ()),
        decoded=tuple(decode_row(read.kept_rows[i], i, tokenizer) for i in shown)
        if tokenizer
        else (),
        elapsed_s=time.perf_counter() - started,
    )


def check_table(
    table: pa.Table | pa.RecordBatch,
    hints: LayoutHints = LayoutHints(),
    options: InspectOptions = InspectOptions(),
) -> tuple[CheckResult, ...]:
    """Every check on an in-memory table, its rows numbered from 0, held to what ``hints`` say
    (the rest inferred from the rows); ``options`` sets the warning limits and how many rows a
    check lists."""
    stats = ColumnStats(hints, options)
    stats.add(table, np.arange(table.num_rows))
    return check_results(stats, infer_layout(stats, hints), hints)
