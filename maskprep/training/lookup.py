"""The rows of an output, found by their tokens: which row of the output a batch's row is, when
all that reaches the model is its ids (a trainer shuffles, and hands the model no row index).

Every row's real tokens (where its ``attention_mask`` is 1) are hashed once, vectorised over
Arrow batches, into a sorted array of 64-bit keys: ~20 bytes a row, built the first time a row is
looked up. A fed row is looked up by the real tokens it may hold: where its own 2D mask says (if
it has one), or its ids with the pad id trimmed from both ends (and one pad put back at either
end, for pad == EOS or BOS), each also with the ids a masked-LM corruption changed taken back from
the labels. A hit is only a candidate: :func:`maskprep.verifying.alignment.place_rows` then holds
the fed row to the row read back, token for token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import columns
from ..column_values import list_column, segment_sum
from ..columns import IGNORE_INDEX
from ..reading.shards import declared, open_input, refuse_conflicts, shard_batches
from ..verifying.sampling import DataFacts, data_facts, take_rows

if TYPE_CHECKING:
    import pyarrow as pa

    from ..reading.shards import Shard
    from ..storage.options import StorageOptions

#: Rows hashed at once while indexing: bounded memory whatever the output's size.
INDEX_ROWS = 4096
_BASE = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class _Index:
    keys: np.ndarray  # uint64, sorted
    lengths: np.ndarray  # real tokens of the row of each key
    rows: np.ndarray  # the row of each key


def sequence_keys(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One 64-bit polynomial hash per sequence of ``values`` (the sequences' ids one after
    another, ``lengths`` long, each at least 1), computed without a loop over sequences."""
    starts = np.cumsum(lengths) - lengths
    within = np.arange(len(values)) - np.repeat(starts, lengths)
    longest = int(lengths.max()) if len(lengths) else 0
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(max(longest, 1), _BASE, dtype=np.uint64))
        terms = (values.astype(np.uint64) + np.uint64(1)) * powers[within]
        return np.add.reduceat(terms, starts) if len(lengths) else np.zeros(0, np.uint64)


class OutputRows:
    """An output's rows, found by their tokens (see the module notes). ``path`` is what
    ``maskprep inspect`` reads; ``facts`` what its manifest says about the rows."""

    def __init__(self, path: str, storage_options: StorageOptions | None = None) -> None:
        self.path = path
        shards, manifest = open_input(path, None, whole=True, options=storage_options)
        self._shards: list[Shard] = shards
        sizes = [int(s.rows or 0) for s in shards]
        self._starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        found = declared(shards, manifest)
        refuse_conflicts(shards, found)
        self.facts: DataFacts = data_facts(found.contract)
        self._index: _Index | None = None

    @property
    def total(self) -> int:
        """Rows in the output."""
        return int(self._starts[-1])

    def _batches(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        read = (columns.INPUT_IDS, columns.ATTENTION_MASK)
        for shard, start in zip(self._shards, self._starts[:-1], strict=False):
            for offset, batch in shard_batches(shard, INDEX_ROWS, read=read, required=read):
                yield int(start) + offset, batch

    def _built(self) -> _Index:
        if self._index is not None:
            return self._index
        keys, lengths, rows = [], [], []
        for first, batch in self._batches():
            ids = list_column(batch, columns.INPUT_IDS)
            mask = list_column(batch, columns.ATTENTION_MASK)
            real = mask.values != 0
            counts = segment_sum(real, ids.offsets).astype(np.int64)
            kept = counts > 0
            keys.append(sequence_keys(ids.values[real], counts[kept]))
            lengths.append(counts[kept])
            rows.append(np.flatnonzero(kept) + first)
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        order = np.argsort(all_keys, kind="stable")
        self._index = _Index(
            keys=all_keys[order],
            lengths=np.concatenate(lengths)[order] if lengths else np.zeros(0, np.int64),
            rows=np.concatenate(rows)[order] if rows else np.zeros(0, np.int64),
        )
        return self._index

    def find(
        self,
        ids: np.ndarray,
        labels: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> list[int | None]:
        """For each fed row of ``ids`` ``(batch, width)``, the first output row it may be
        (``None`` where none): see the module notes for what is tried."""
        index = self._built()
        found: list[int | None] = []
        for i in range(len(ids)):
            row = None
            for candidate in self._candidates(ids, labels, mask, i):
                key = sequence_keys(candidate, np.array([len(candidate)]))[0]
                lo = int(np.searchsorted(index.keys, key, side="left"))
                hi = int(np.searchsorted(index.keys, key, side="right"))
                match = index.rows[lo:hi][index.lengths[lo:hi] == len(candidate)]
                if len(match):
                    row = int(match.min())
                    break
            found.append(row)
        return found

    def _candidates(
        self, ids: np.ndarray, labels: np.ndarray | None, mask: np.ndarray | None, i: int
    ) -> Iterator[np.ndarray]:
        versions = [ids[i]]
        if labels is not None and labels.shape == ids.shape:
            versions.append(np.where(labels[i] != IGNORE_INDEX, labels[i], ids[i]))
        pad = self.facts.pad_id
        for row in versions:
            if mask is not None and mask.shape == ids.shape and (mask[i] != 0).any():
                yield row[mask[i] != 0]
            if pad is None:
                yield row
                continue
            kept = np.flatnonzero(row != pad)
            if not len(kept):
                continue
            first, last = int(kept[0]), int(kept[-1]) + 1
            yield row[first:last]
            if last < len(row):
                yield row[first : last + 1]
            if first > 0:
                yield row[first - 1 : last]

    def take(self, rows: list[int]) -> pa.Table:
        """The ``rows`` (in that order, repeats allowed) with every column the probes read."""
        import pyarrow as pa

        unique = np.unique(np.asarray(rows, dtype=np.int64))
        table = take_rows(self._shards, self._starts, unique, self.path)
        where = np.searchsorted(unique, np.asarray(rows, dtype=np.int64))
        return table.take(pa.array(where))
