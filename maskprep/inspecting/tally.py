"""Accumulators that keep what ``inspect`` reports about any number of rows in memory that does
not grow with them: counts, histograms of bounded integers, and the first few offending rows.

- :class:`Offenders`: how many rows a check flags, and the first ``listed`` of them;
- :class:`KeyedRows`: the same per integer key (a row's width and length, the id its padding
  holds), for checks whose verdict depends on facts settled only once every row was read;
- :class:`Counts`: a histogram of small non-negative integers (``np.bincount``), with exact
  percentiles.

Memory is bounded by the number of distinct keys (row widths and lengths, token ids), never by
the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EMPTY = np.zeros(0, np.int64)


@dataclass
class Offenders:
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
        if len(self.rows) < self.listed or row_ids[hits[0]] < self.rows[-1]:
            self.rows = np.union1d(self.rows, row_ids[hits[: self.listed]])[: self.listed]

    def merged(self, other: Offenders) -> Offenders:
        """The rows flagged by this or ``other`` when no row is flagged by both."""
        rows = np.union1d(self.rows, other.rows)[: self.listed]
        return Offenders(self.listed, self.count + other.count, rows)

    def first(self) -> tuple[int, ...]:
        """The listed rows as plain ints."""
        return tuple(int(r) for r in self.rows)


@dataclass
class KeyedRows:
    """Per integer key: how many rows have it, and the ``listed`` smallest row numbers of them.
    ``keys`` are sorted; ``rows`` has one line per key, padded with -1."""

    listed: int
    keys: np.ndarray = field(default_factory=lambda: _EMPTY)
    counts: np.ndarray = field(default_factory=lambda: _EMPTY)
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def add(self, keys: np.ndarray, row_ids: np.ndarray) -> None:
        """Count row ``row_ids[i]`` under ``keys[i]`` (one entry per row and key)."""
        if not len(keys):
            return
        keys = np.asarray(keys, np.int64)
        row_ids = np.asarray(row_ids, np.int64)
        new_keys, new_counts = np.unique(keys, return_counts=True)
        stored = self.rows >= 0
        cand_keys = np.concatenate((np.repeat(self.keys, stored.sum(axis=1)), keys))
        cand_rows = np.concatenate((self.rows[stored], row_ids))
        all_keys = np.union1d(self.keys, new_keys)
        counts = np.zeros(len(all_keys), np.int64)
        counts[np.searchsorted(all_keys, self.keys)] += self.counts
        counts[np.searchsorted(all_keys, new_keys)] += new_counts
        order = np.lexsort((cand_rows, cand_keys))
        cand_keys, cand_rows = cand_keys[order], cand_rows[order]
        slot = np.searchsorted(all_keys, cand_keys)
        rank = np.arange(len(slot)) - np.searchsorted(slot, slot, side="left")
        keep = rank < self.listed
        rows = np.full((len(all_keys), self.listed), -1, np.int64)
        rows[slot[keep], rank[keep]] = cand_rows[keep]
        self.keys, self.counts, self.rows = all_keys, counts, rows

    def select(self, chosen: np.ndarray) -> Offenders:
        """The rows of the keys ``chosen`` marks (a flag per key), as one :class:`Offenders`."""
        chosen = np.asarray(chosen, bool)
        picked = self.rows[chosen]
        rows = np.unique(picked[picked >= 0])[: self.listed]
        return Offenders(self.listed, int(self.counts[chosen].sum()), rows)

    def of(self, key: int) -> Offenders:
        """The rows with ``key``."""
        return self.select(self.keys == key)


@dataclass
class Counts:
    """How many times each small non-negative integer was seen."""

    counts: np.ndarray = field(default_factory=lambda: _EMPTY)

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (non-negative integers)."""
        if not len(values):
            return
        found = np.bincount(np.asarray(values, np.int64))
        if len(found) > len(self.counts):
            found[: len(self.counts)] += self.counts
            self.counts = found
        else:
            self.counts[: len(found)] += found

    @property
    def total(self) -> int:
        """How many values were counted."""
        return int(self.counts.sum())


def percentiles(values: np.ndarray, counts: np.ndarray, q: list[float]) -> list[float]:
    """``np.percentile(data, q)`` (linear interpolation) of the data in which each of the sorted
    ``values`` occurs ``counts`` times, without making that data: the same arithmetic as NumPy's,
    so the same floats."""
    n = int(counts.sum())
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    # NumPy's virtual index for the linear method, written as NumPy writes it.
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = n - 1
    following[above] = n - 1
    gamma = virtual - np.floor(virtual)
    ends = np.cumsum(counts)
    low = values[np.searchsorted(ends, previous.astype(np.int64), side="right")]
    high = values[np.searchsorted(ends, following.astype(np.int64), side="right")]
    diff = high - low
    result = low + diff * gamma
    result = np.where(gamma >= 0.5, high - diff * (1 - gamma), result)
    return [float(x) for x in result]
