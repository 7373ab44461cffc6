"""The rows a check flags, kept in memory that does not grow with them: how many, and the first
``listed`` of them (the smallest row numbers), as a check reports them.

- :class:`FlaggedRows`: the rows one check flags;
- :class:`RowsByValue`: the rows per value of a per-row fact (a row's width and real tokens, its
  padding side, the id its padding holds), for checks whose verdict depends on a layout that is
  settled only once every row was read: the verdict then picks the values at fault. Memory is
  bounded by the number of distinct values, never by the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EMPTY = np.zeros(0, np.int64)


@dataclass
class FlaggedRows:
    """Rows a check flags: how many, and the ``listed`` smallest row numbers among them."""

    listed: int
    count: int = 0
    rows: np.ndarray = field(default_factory=lambda: _EMPTY)

    def add(self, flags: np.ndarray, row_ids: np.ndarray) -> None:
        """Count the rows ``flags`` marks; ``row_ids`` (ascending) are their row numbers."""
        hits = np.flatnonzero(flags)
        if not hits.size:
            return
        self.count += int(hits.size)
        if len(self.rows) < self.listed or (self.listed and row_ids[hits[0]] < self.rows[-1]):
            self.rows = np.union1d(self.rows, row_ids[hits[: self.listed]])[: self.listed]

    def merged(self, other: FlaggedRows) -> FlaggedRows:
        """The rows flagged by this or ``other`` when no row is flagged by both."""
        rows = np.union1d(self.rows, other.rows)[: self.listed]
        return FlaggedRows(self.listed, self.count + other.count, rows)

    def first(self) -> tuple[int, ...]:
        """The listed rows as plain ints."""
        return tuple(int(r) for r in self.rows)


@dataclass
class RowsByValue:
    """Per value of a per-row fact: how many rows have it, and the ``listed`` smallest row
    numbers of them. ``values`` are sorted; ``rows`` has one line per value, padded with -1."""

    listed: int
    values: np.ndarray = field(default_factory=lambda: _EMPTY)
    counts: np.ndarray = field(default_factory=lambda: _EMPTY)
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def add(self, values: np.ndarray, row_ids: np.ndarray) -> None:
        """Count row ``row_ids[i]`` under ``values[i]`` (one entry per row)."""
        if not len(values):
            return
        values = np.asarray(values, np.int64)
        row_ids = np.asarray(row_ids, np.int64)
        new_values, new_counts = np.unique(values, return_counts=True)
        stored = self.rows >= 0
        candidate_values = np.concatenate((np.repeat(self.values, stored.sum(axis=1)), values))
        candidate_rows = np.concatenate((self.rows[stored], row_ids))
        every = np.union1d(self.values, new_values)
        counts = np.zeros(len(every), np.int64)
        counts[np.searchsorted(every, self.values)] += self.counts
        counts[np.searchsorted(every, new_values)] += new_counts
        order = np.lexsort((candidate_rows, candidate_values))
        slot = np.searchsorted(every, candidate_values[order])
        rank = np.arange(len(slot)) - np.searchsorted(slot, slot, side="left")
        keep = rank < self.listed
        rows = np.full((len(every), self.listed), -1, np.int64)
        rows[slot[keep], rank[keep]] = candidate_rows[order][keep]
        self.values, self.counts, self.rows = every, counts, rows

    def select(self, chosen: np.ndarray) -> FlaggedRows:
        """The rows of the values ``chosen`` marks (a flag per value), as one
        :class:`FlaggedRows`."""
        chosen = np.asarray(chosen, bool)
        picked = self.rows[chosen]
        rows = np.unique(picked[picked >= 0])[: self.listed]
        return FlaggedRows(self.listed, int(self.counts[chosen].sum()), rows)

    def of(self, value: int) -> FlaggedRows:
        """The rows with ``value``."""
        return self.select(self.values == value)
