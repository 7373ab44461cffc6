"""Rows to probe: a seeded random sample of the data plus its longest rows, read with inspect's
reader (an output directory, a directory of shards, one shard file, or Arrow IPC on stdin), and
what the data says about its rows (pad id, padding side, packs) where a manifest (or, without one,
the shards' metadata) says it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from .. import columns
from ..column_values import check_columns
from ..errors import DataError
from ..reading.reach import reach_columns, row_reach
from ..reading.shards import Shard, declared, open_input, refuse_conflicts, shard_batches
from ..storage.options import StorageOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from ..contract import ShardContract

#: Rows read at once while looking for the longest rows.
SCAN_ROWS = 65536
#: The columns a row must have to be probed.
PROBED_COLUMNS = (columns.INPUT_IDS, columns.ATTENTION_MASK)
_READ = (*columns.REQUIRED_COLUMNS, *columns.PACK_COLUMNS)


@dataclass(frozen=True)
class DataFacts:
    """What the data's manifest says about its rows; ``None`` where it says nothing (or there
    is no manifest): the pad id, the padding side of padded rows, whether the rows are packs,
    the tokenizer's ``model_max_length`` and name, and its EOS id."""

    pad_id: int | None = None
    padding_side: str | None = None
    packed: bool | None = None
    model_max_length: int | None = None
    tokenizer: str | None = None
    eos_id: int | None = None


@dataclass(frozen=True)
class Sample:
    """Rows drawn from the data: ``table`` holds them in data order (``None`` when every row is
    taken: they are then read from ``shards`` as they are probed), ``row_ids`` their indices in
    the data and ``longest`` those added for their length. ``reach`` is the most positions any
    row of the whole data uses (its width, or a pack's longest document), ``reach_row`` that
    row."""

    source: str
    table: pa.Table | None
    row_ids: tuple[int, ...]
    longest: tuple[int, ...]
    total_rows: int
    reach: int
    reach_row: int
    facts: DataFacts
    shards: tuple[Shard, ...] = ()

    def chunks(self, size: int) -> Iterator[tuple[pa.Table, list[int]]]:
        """The rows in tables of at most ``size`` rows, each with the rows' indices in the data."""
        size = min(size, max(self.total_rows, 1))  # Arrow takes a C long; the rows are fewer
        if self.table is not None:
            for start in range(0, self.table.num_rows, size):
                yield self.table.slice(start, size), list(self.row_ids[start : start + size])
            return
        import pyarrow as pa

        first_names: tuple[str, str] | None = None
        start = 0
        for shard in self.shards:
            for offset, batch in shard_batches(shard, size, read=_READ, required=PROBED_COLUMNS):
                names = ",".join(batch.schema.names)
                if first_names is None:
                    first_names = (shard.name, names)
                elif names != first_names[1]:
                    raise DataError(
                        f"{self.source}: shards with different columns: {first_names[0]} has "
                        f"{first_names[1]}, {shard.name} has {names}"
                    )
                ids = list(range(start + offset, start + offset + batch.num_rows))
                try:
                    check_columns(batch, ids)  # as the sampled rows are checked
                except DataError as error:
                    raise DataError(f"{shard.name}: {error}") from None
                yield pa.Table.from_batches([batch]), ids
            start += int(shard.rows or 0)


def data_facts(contract: ShardContract | None) -> DataFacts:
    """The :class:`DataFacts` a build's manifest (or, without one, its shards' metadata)
    records."""
    if contract is None:
        return DataFacts()
    strategy = contract.strategy
    return DataFacts(
        pad_id=contract.pad_token_id,
        # Packs are padded at the end whatever side the tokenizer pads on.
        padding_side=contract.padding_side if strategy in ("pad", "bucket") else None,
        packed=contract.packed,
        model_max_length=contract.model_max_length,
        tokenizer=contract.tokenizer,
        eos_id=contract.eos_token_id,
    )


def sample_rows(
    path: str,
    rows: int | None,
    longest: int,
    seed: int,
    stdin: BinaryIO | None = None,
    storage_options: StorageOptions | None = None,
) -> Sample:
    """Draw ``rows`` rows at random (``seed``; ``None``: every row) and add the ``longest`` rows
    that reach farthest (ties: most real tokens, then the first), from the data at ``path`` (a
    path or a URL, whose store ``storage_options`` configures)."""
    shards, manifest = open_input(path, stdin, whole=True, options=storage_options)
    found = declared(shards, manifest)
    refuse_conflicts(shards, found)
    sizes = [int(s.rows or 0) for s in shards]
    total = sum(sizes)
    if total == 0:
        raise DataError(f"{path}: the data holds no rows")
    starts = np.concatenate(([0], np.cumsum(sizes)))
    far = _farthest(shards, starts, longest)
    if rows is None:
        return Sample(
            source=path,
            table=None,
            row_ids=tuple(range(total)),
            longest=tuple(int(i) for i in far.rows[: min(longest, total)]),
            total_rows=total,
            reach=far.reach,
            reach_row=far.reach_row,
            facts=data_facts(found.contract),
            shards=tuple(shards),
        )
    rng = np.random.default_rng(seed)
    picked = rng.choice(total, size=min(rows, total), replace=False)
    longest_ids = far.rows[: min(longest, total)]
    chosen = np.union1d(picked, longest_ids).astype(np.int64)
    table = take_rows(shards, starts, chosen, path)
    try:
        check_columns(table, chosen)  # as inspect and the collator check them
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    return Sample(
        source=path,
        table=table,
        row_ids=tuple(int(i) for i in chosen),
        longest=tuple(int(i) for i in longest_ids),
        total_rows=total,
        reach=far.reach,
        reach_row=far.reach_row,
        facts=data_facts(found.contract),
    )


@dataclass(frozen=True)
class _Farthest:
    rows: np.ndarray
    reach: int
    reach_row: int


def _farthest(shards: list[Shard], starts: np.ndarray, keep: int) -> _Farthest:
    """The ``keep`` rows reaching farthest (most real tokens among equals), scanning only the
    columns that tell, in batches: a few numbers are kept whatever the size of the data."""
    best_keys = np.zeros(0, np.int64)
    best_rows = np.zeros(0, np.int64)
    reach, reach_row = -1, 0
    for shard, start in zip(shards, starts[:-1], strict=False):
        read = reach_columns(shard.schema.names)
        for offset, batch in shard_batches(shard, SCAN_ROWS, read=read, required=PROBED_COLUMNS):
            ids = np.arange(batch.num_rows, dtype=np.int64) + int(start) + offset
            try:
                check_columns(batch, ids)
            except DataError as error:
                raise DataError(f"{shard.name}: {error}") from None
            far, real, _ = row_reach(batch)
            top = int(np.argmax(far))
            if int(far[top]) > reach:
                reach, reach_row = int(far[top]), int(ids[top])
            if keep == 0:
                continue
            # Reach first, real tokens second; both fit 31 bits.
            keys = np.concatenate((best_keys, (far << 32) + real))
            rows = np.concatenate((best_rows, ids))
            order = np.lexsort((rows, -keys))[:keep]
            best_keys, best_rows = keys[order], rows[order]
    return _Farthest(best_rows, max(reach, 0), reach_row)


def take_rows(shards: list[Shard], starts: np.ndarray, chosen: np.ndarray, path: str) -> pa.Table:
    """The ``chosen`` rows (sorted data indices) of the shards, as one table."""
    import pyarrow as pa

    parts = []
    names: dict[str, str] = {}
    for shard, start, stop in zip(shards, starts[:-1], starts[1:], strict=False):
        lo, hi = np.searchsorted(chosen, [start, stop])
        if lo == hi:
            continue
        local = chosen[lo:hi] - start
        for offset, batch in shard_batches(
            shard, SCAN_ROWS, local, read=_READ, required=PROBED_COLUMNS
        ):
            inside = local[(local >= offset) & (local < offset + batch.num_rows)] - offset
            if len(inside):
                parts.append(pa.Table.from_batches([batch.take(pa.array(inside))]))
                names[shard.name] = ",".join(batch.schema.names)
    kinds = list(dict.fromkeys(names.values()))
    if len(kinds) > 1:
        first, second = (next(n for n, c in names.items() if c == kind) for kind in kinds[:2])
        raise DataError(
            f"{path}: shards with different columns: {first} has {kinds[0]}, "
            f"{second} has {kinds[1]}"
        )
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{path}: the shards' columns do not agree in type: {exc}") from None
