"""The rows to probe: a seeded random sample of the data plus its longest rows (or every row),
read with inspect's reader (an output directory, a directory of shards, one shard file, or Arrow
IPC on stdin), with what the data says about its rows (pad id, padding side, packs) where a
manifest (or, without one, the shards' metadata) says it; and one pass over them before any
forward pass: their columns, the widest row, the pad id their padding holds, token ids against
the model's vocabulary, their reach against its positions (a row beyond an absolute position
table is an error: the lookup would fail, on a GPU with a device-side assert; beyond a rotary
model's context or a tokenizer's ``model_max_length``, a warning) and the data check that runs
beside the probes (``padding_attended``: runs of the pad id the mask marks real)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from .. import columns
from ..column_values import check_columns, list_values, outside_ids
from ..columns import IGNORE_INDEX
from ..errors import DataError
from ..reading.reach import PositionLimit, beyond_message, reach_columns, row_reach
from ..reading.shards import Shard, declared, open_input, refuse_conflicts, shard_batches
from ..storage.options import StorageOptions
from .results import ProbeResult, data_check

if TYPE_CHECKING:
    import pyarrow as pa


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

        first: tuple[str, str] | None = None
        start = 0
        for shard in self.shards:
            for offset, batch in shard_batches(shard, size, read=_READ, required=PROBED_COLUMNS):
                first = _same_columns(self.source, first, shard, batch)
                ids = list(range(start + offset, start + offset + batch.num_rows))
                try:
                    check_columns(batch, ids)  # as the sampled rows are checked
                except DataError as error:
                    raise DataError(f"{shard.name}: {error}") from None
                yield pa.Table.from_batches([batch]), ids
            start += int(shard.rows or 0)


def open_rows(
    path: str, stdin: BinaryIO | None, storage_options: StorageOptions | None
) -> tuple[list[Shard], np.ndarray, DataFacts]:
    """The data's shards (whole, their columns held to what its manifest or metadata declares),
    the index of each shard's first row (and the total rows, last), and the :class:`DataFacts`
    its manifest (or, without one, its shards' metadata) records."""
    shards, manifest = open_input(path, stdin, whole=True, options=storage_options)
    found = declared(shards, manifest)
    refuse_conflicts(shards, found)
    sizes = [int(s.rows or 0) for s in shards]
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    contract = found.contract
    if contract is None:
        return shards, starts, DataFacts()
    facts = DataFacts(
        pad_id=contract.pad_token_id,
        # Packs are padded at the end whatever side the tokenizer pads on.
        padding_side=contract.padding_side if contract.strategy in ("pad", "bucket") else None,
        packed=contract.packed,
        model_max_length=contract.model_max_length,
        tokenizer=contract.tokenizer,
        eos_id=contract.eos_token_id,
    )
    return shards, starts, facts


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
    shards, starts, facts = open_rows(path, stdin, storage_options)
    total = int(starts[-1])
    if total == 0:
        raise DataError(f"{path}: the data holds no rows")
    far, reach, reach_row = _farthest(shards, starts, longest)
    longest_ids = far[: min(longest, total)]
    table = None
    row_ids = tuple(range(total))
    if rows is not None:
        picked = np.random.default_rng(seed).choice(total, size=min(rows, total), replace=False)
        chosen = np.union1d(picked, longest_ids).astype(np.int64)
        table = take_rows(shards, starts, chosen, path)
        try:
            check_columns(table, chosen)  # as inspect and the collator check them
        except DataError as error:
            raise DataError(f"{path}: {error}") from None
        row_ids = tuple(int(i) for i in chosen)
    return Sample(
        source=path,
        table=table,
        row_ids=row_ids,
        longest=tuple(int(i) for i in longest_ids),
        total_rows=total,
        reach=reach,
        reach_row=reach_row,
        facts=facts,
        shards=tuple(shards),
    )


def _farthest(shards: list[Shard], starts: np.ndarray, keep: int) -> tuple[np.ndarray, int, int]:
    """The ``keep`` rows reaching farthest (most real tokens among equals), the most positions
    any row uses and that row; scanning only the columns that tell, in batches: a few numbers are
    kept whatever the size of the data."""
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
    return best_rows, max(reach, 0), reach_row


def take_rows(shards: list[Shard], starts: np.ndarray, chosen: np.ndarray, path: str) -> pa.Table:
    """The ``chosen`` rows (sorted data indices) of the shards, as one table."""
    import pyarrow as pa

    parts = []
    first: tuple[str, str] | None = None
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
                first = _same_columns(path, first, shard, batch)
                parts.append(pa.Table.from_batches([batch.take(pa.array(inside))]))
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{path}: the shards' columns do not agree in type: {exc}") from None


def _same_columns(
    source: str, first: tuple[str, str] | None, shard: Shard, batch: pa.RecordBatch
) -> tuple[str, str]:
    """The shard and columns of the ``first`` batch read (this one, if none was); a batch with
    other columns is refused."""
    names = ",".join(batch.schema.names)
    if first is not None and names != first[1]:
        raise DataError(
            f"{source}: shards with different columns: {first[0]} has {first[1]}, "
            f"{shard.name} has {names}"
        )
    return first or (shard.name, names)


#: The data check that runs beside the probes: runs of the pad id that the mask marks real.
PADDING_ATTENDED = "padding_attended"


@dataclass
class Scan:
    """What :func:`scan_rows` found: the columns of the rows (``labelled``: with labels), the
    widest row, the ids their padding holds, and the rows attending a run of the pad id (row,
    run) with the positions looked at."""

    names: tuple[str, ...] = ()
    labelled: bool = True
    width: int = 0
    padding_ids: set[int] = field(default_factory=set)
    attended: list[tuple[int, int]] = field(default_factory=list)
    positions: int = 0

    @property
    def packed(self) -> bool:
        """The rows carry the columns of packs."""
        return columns.SEQ_LENS in self.names or columns.POSITION_IDS in self.names

    def seen_pad_id(self) -> int | None:
        """The one id the rows' padding holds; ``None`` when none or several show."""
        return next(iter(self.padding_ids)) if len(self.padding_ids) == 1 else None


def with_labels(table: pa.Table) -> pa.Table:
    """Rows without a ``labels`` column (data another tool made, labelled by its collator) get
    labels that train nothing: the attention probes still run, the label probes are skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if columns.LABELS in table.schema.names:
        return table
    ids = table.column(columns.INPUT_IDS).combine_chunks()
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    values = np.full(int(offsets[-1]), IGNORE_INDEX, dtype=np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return table.append_column(columns.LABELS, labels)


def scan_rows(
    chunks: Callable[[], Iterable[tuple[pa.Table, list[int]]]],
    vocab: int,
    model: str,
    pad_id: int | None,
) -> Scan:
    """Scan every chunk of rows ``chunks()`` gives (tables with the rows' indices in the data):
    fail in one line on a token id the model's ``vocab`` cannot look up, and note runs of
    ``pad_id`` (else the one id the padding holds, in a second pass) that the mask marks real."""
    import pyarrow.compute as pc

    scan = Scan()
    for table, row_ids in chunks():
        if not scan.names:
            scan.names = tuple(table.schema.names)
            scan.labelled = columns.LABELS in scan.names
        _check_vocabulary(table, row_ids, vocab, model)
        widths = pc.list_value_length(table.column(columns.INPUT_IDS))
        scan.width = max(scan.width, int(pc.max(widths).as_py() or 0))
        ids = pc.list_flatten(table.column(columns.INPUT_IDS)).to_numpy(zero_copy_only=False)
        mask = pc.list_flatten(table.column(columns.ATTENTION_MASK)).to_numpy(zero_copy_only=False)
        if len(ids) == len(mask):
            scan.padding_ids.update(int(i) for i in np.unique(ids[mask == 0]))
        if pad_id is not None:
            _attended(scan, table, row_ids, pad_id)
    seen = scan.seen_pad_id()
    if pad_id is None and seen is not None:
        for table, row_ids in chunks():
            _attended(scan, table, row_ids, seen)
    return scan


def padding_attended(scan: Scan, pad_id: int | None) -> ProbeResult | None:
    """The ``padding_attended`` check from ``scan``: a row whose mask is 1 over a run of two or
    more pad ids at its end (or start) attends to padding that the probes, which take the mask's
    word for what is real, cannot see. A single pad id at an end is allowed: with ``pad == eos``
    it is the real EOS. ``None`` when the pad id is not known."""
    if pad_id is None:
        return None
    if not scan.attended:
        return data_check(
            PADDING_ATTENDED,
            "pass",
            positions=scan.positions,
            note=f"no run of pad id {pad_id} attended",
        )
    positions = sum(run for _, run in scan.attended)
    return data_check(
        PADDING_ATTENDED,
        "LEAK",
        positions=positions,
        worst_row=scan.attended[0][0],
        leaking=len(scan.attended),
        note=(
            f"attention_mask is 1 over {positions} positions holding the pad id {pad_id} at the "
            "ends of rows: the model attends to padding; fix: the mask must be 0 at padding "
            "(maskprep build derives it from positions, never from ids)"
        ),
        fix="attention_mask",
    )


def _attended(scan: Scan, table: pa.Table, row_ids: list[int], pad_id: int) -> None:
    ids = table.column(columns.INPUT_IDS).to_pylist()
    masks = table.column(columns.ATTENTION_MASK).to_pylist()
    for row, (row_ids_, mask) in zip(row_ids, zip(ids, masks, strict=True), strict=True):
        scan.positions += len(row_ids_)
        if len(row_ids_) != len(mask):
            continue  # the collator refuses the row, naming it, when the probes feed it
        attended_pad = (np.asarray(row_ids_) == pad_id) & (np.asarray(mask) != 0)
        run = max(_run_length(attended_pad), _run_length(attended_pad[::-1]))
        if run >= 2:
            scan.attended.append((row, run))


def _run_length(flags: np.ndarray) -> int:
    """How many of ``flags`` are true from its end."""
    false = np.flatnonzero(~flags)
    return int(len(flags) - 1 - false[-1]) if len(false) else len(flags)


def _check_vocabulary(table: pa.Table, row_ids: list[int], vocab: int, model: str) -> None:
    """Fail in one line when a token id cannot be looked up in the model's embeddings."""
    values, offsets = list_values(table.column(columns.INPUT_IDS), columns.INPUT_IDS, row_ids)
    bad = outside_ids(values, vocab)
    if not bad.any():
        return
    at = int(np.argmax(bad))
    row = int(np.searchsorted(offsets, at, side="right")) - 1
    raise DataError(
        f"row {row_ids[row]}: token id {values[at]} is outside the {vocab}-id vocabulary of "
        f"{model}; were the rows built with this model's tokenizer?"
    )


def reach_findings(
    model: PositionLimit | None,
    tokenizer: PositionLimit | None,
    reach: int,
    reach_row: int,
    packed: bool,
    width: int,
) -> tuple[str, ...]:
    """Warnings about how far rows reach; raises :class:`~maskprep.errors.DataError` for a row
    the ``model``'s position table cannot hold.

    ``reach`` is the most positions any row uses (``reach_row``), ``width`` the widest row: a
    pack wider than an absolute table whose documents fit it runs only when fed ``position_ids``
    that restart at each document, as maskprep's collator feeds it.
    """
    found = []
    for limit in (model, tokenizer):
        if limit is None or reach <= limit.positions:
            continue
        if limit.hard:
            raise DataError(beyond_message(reach_row, reach, packed, limit))
        found.append(beyond_message(reach_row, reach, packed, limit))
        break  # one warning says it; the model's own limit first
    if model is not None and model.hard and packed and width > model.positions >= reach:
        found.append(
            f"rows are {width} positions wide and {model.source}: their documents fit when fed "
            "position_ids that restart at each document (as maskprep's collator feeds them), a "
            "collator that numbers the positions of the whole row would fail"
        )
    return tuple(found)
