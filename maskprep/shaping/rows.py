"""Rows as flat Arrow-ready arrays, and fitted pieces made into rows by every strategy: ``pad``,
``bucket`` and ``none`` (:class:`PaddedShaper`), one row per piece, and ``pack``
(:class:`PackShaper`), whole documents concatenated into rows of ``max_length``, greedily in input
order or regrouped by best-fit decreasing; :func:`make_shaper` picks the shaper for a strategy.

A padded row of ``max_length`` 6 holding a 4-token document, right and left padded (P = pad id)::

    right:  input_ids [c a t s P P]   attention_mask [1 1 1 1 0 0]   labels [c a t s -100 -100]
    left:   input_ids [P P c a t s]   attention_mask [0 0 1 1 1 1]   labels [-100 -100 -100 a t s]

Labels come from positions (the mask and the document's trained span), never from comparing ids
with the pad id: with ``pad_token == eos_token`` that would also hide every real EOS.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns
from ..columns import IGNORE_INDEX
from ..config import ShapeConfig
from ..tokenizing.encoder import EncodedDoc
from .fit import Piece, ShapeStats, fit


@dataclass(frozen=True)
class RowBatch:
    """Rows as flat Arrow-ready arrays: row ``i`` spans ``offsets[i]:offsets[i + 1]``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    length: np.ndarray
    extra: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows in the batch."""
        return len(self.length)

    def to_arrow(self) -> pa.RecordBatch:
        """The batch as an Arrow record batch following :func:`maskprep.columns.schema`."""
        arrays = {
            columns.INPUT_IDS: columns.list_array(self.offsets, self.input_ids, np.int32),
            columns.ATTENTION_MASK: columns.list_array(self.offsets, self.attention_mask, np.int8),
            columns.LABELS: columns.list_array(self.offsets, self.labels, np.int32),
            columns.LENGTH: columns.from_numpy(self.length, np.int32),
            **self.extra,
        }
        schema = columns.schema(packed=columns.POSITION_IDS in self.extra)
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in schema], schema=schema)


def flatten_pieces(pieces: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lengths of the pieces, and their ids and trained flags concatenated."""
    lengths = np.fromiter((len(p.ids) for p in pieces), dtype=np.int64, count=len(pieces))
    if not pieces:
        return lengths, np.empty(0, np.int32), np.empty(0, bool)
    flat_ids = np.concatenate([p.ids for p in pieces]).astype(np.int32, copy=False)
    flat_trained = np.concatenate([p.trained for p in pieces]).astype(bool, copy=False)
    return lengths, flat_ids, flat_trained


def run_starts(lengths: np.ndarray) -> np.ndarray:
    """Offset of each run in the concatenation of runs of these lengths."""
    return np.cumsum(lengths) - lengths


def pad_ragged(
    pieces: Sequence[Piece], widths: np.ndarray, pad_id: int, padding_side: str
) -> RowBatch:
    """One row per piece, row ``i`` padded to ``widths[i]`` (at least the piece's length).

    Bucketed rows pass their bucket as the width; unpadded rows (strategy ``none``) pass the
    pieces' own lengths. Vectorised: every real token is scattered to its flat position at once.
    """
    lengths, flat_ids, flat_trained = flatten_pieces(pieces)
    widths = np.asarray(widths, dtype=np.int64)
    if np.any(widths < lengths):
        raise AssertionError("internal error: a row is narrower than its document")
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    lead = widths - lengths if padding_side == "left" else np.zeros_like(lengths)
    total = int(lengths.sum())
    dest = (
        np.arange(total)
        - np.repeat(run_starts(lengths), lengths)
        + np.repeat(offsets[:-1] + lead, lengths)
    )
    size = int(offsets[-1])
    input_ids = np.full(size, pad_id, dtype=np.int32)
    attention_mask = np.zeros(size, dtype=np.int8)
    labels = np.full(size, IGNORE_INDEX, dtype=np.int32)
    input_ids[dest] = flat_ids
    attention_mask[dest] = 1
    labels[dest] = np.where(flat_trained, flat_ids, IGNORE_INDEX)
    if padding_side == "left":
        # The model predicts label i from position i - 1. Left padded, that position of the first
        # real token is a pad: training it would put a pad in the loss. (Right padded, label 0 is
        # never predicted, so it may stay.)
        labels[offsets[:-1][lengths > 0] + lead[lengths > 0]] = IGNORE_INDEX
    return RowBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        offsets=offsets.astype(np.int32),
        length=lengths.astype(np.int32),
    )


class PaddedShaper:
    """The ``pad``, ``bucket`` and ``none`` strategies: each piece a row of its own, as wide as
    :meth:`widths` says, padded on ``padding_side``. Nothing is held back between batches."""

    def __init__(self, config: ShapeConfig, pad_id: int, padding_side: str) -> None:
        self.config = config
        self.pad_id = pad_id
        # An unpadded row has no padding to put on a side.
        self.padding_side = "right" if config.strategy == "none" else padding_side
        self.buckets = np.asarray(config.buckets or (), dtype=np.int64)
        self.stats = ShapeStats()

    def widths(self, lengths: np.ndarray) -> np.ndarray:
        """The width of the row for each piece length."""
        if self.config.strategy == "bucket":
            # fit() keeps every piece within max_length, the largest bucket.
            return self.buckets[np.searchsorted(self.buckets, lengths, side="left")]
        if self.config.strategy == "none":
            return lengths
        return np.full(len(lengths), self.config.max_length, dtype=np.int64)

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit a batch of documents and make their rows; yields at most one batch of rows."""
        pieces = [piece for doc in docs for piece in fit(doc, self.config, self.stats)]
        if pieces:
            lengths = np.fromiter((len(p.ids) for p in pieces), np.int64, count=len(pieces))
            yield pad_ragged(pieces, self.widths(lengths), self.pad_id, self.padding_side)

    def finish(self) -> Iterator[RowBatch]:
        """Rows still held back at the end of the input: none, every row is made at once."""
        return iter(())

    def snapshot(self) -> dict[str, Any]:
        """What this shaper holds between batches (for a resumed build, see
        :mod:`maskprep.resume`): its counts."""
        return {"stats": self.stats.as_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        """Take up a :meth:`snapshot`, as JSON gave it back."""
        self.stats = ShapeStats.from_dict(state["stats"])


def pack_rows(rows: Sequence[Sequence[Piece]], max_length: int, pad_id: int) -> RowBatch:
    """Concatenate each group of pieces into one row of exactly ``max_length``, right-padded.

    Three documents of lengths 3, 2 and 2 in a row of 8 (P = pad id, I = IGNORE_INDEX)::

        input_ids      [a b c d e f g P]
        attention_mask [1 1 1 1 1 1 1 0]
        labels         [I b c I e I g I]   first token of every document is not trained
        position_ids   [0 1 2 0 1 0 1 0]   restart per document; the tail counts as its own run
        seq_lens       [3 2 2]

    The first label of each document is ``IGNORE_INDEX`` because, with labels shifted inside the
    model, it would be predicted from the previous document's last token.
    """
    n_rows = len(rows)
    pieces = [piece for row in rows for piece in row]
    per_row = np.fromiter((len(row) for row in rows), dtype=np.int64, count=n_rows)
    lengths, flat_ids, flat_trained = flatten_pieces(pieces)
    total = int(lengths.sum())
    row_of_piece = np.repeat(np.arange(n_rows), per_row)
    row_len = np.bincount(row_of_piece, weights=lengths, minlength=n_rows).astype(np.int64)
    if np.any(row_len > max_length):
        raise AssertionError("internal error: a packed row is longer than max_length")

    in_doc = np.arange(total) - np.repeat(run_starts(lengths), lengths)
    flat_labels = np.where(flat_trained & (in_doc > 0), flat_ids, IGNORE_INDEX)
    in_row = np.arange(total) - np.repeat(run_starts(row_len), row_len)
    dest = np.repeat(np.arange(n_rows) * max_length, row_len) + in_row

    size = n_rows * max_length
    input_ids = np.full(size, pad_id, dtype=np.int32)
    attention_mask = np.zeros(size, dtype=np.int8)
    labels = np.full(size, IGNORE_INDEX, dtype=np.int32)
    # The padding tail numbers its positions from 0 like one more document, so attention built
    # from position_ids keeps it apart from the real documents.
    position_ids = (np.tile(np.arange(max_length), n_rows) - np.repeat(row_len, max_length)).astype(
        np.int32
    )
    input_ids[dest] = flat_ids
    attention_mask[dest] = 1
    labels[dest] = flat_labels
    position_ids[dest] = in_doc
    offsets = np.arange(n_rows + 1, dtype=np.int32) * max_length
    seq_offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(per_row, out=seq_offsets[1:])
    extra = {
        columns.POSITION_IDS: columns.list_array(offsets, position_ids, np.int32),
        columns.SEQ_LENS: columns.list_array(seq_offsets, lengths, np.int32),
    }
    return RowBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        offsets=offsets,
        length=row_len.astype(np.int32),
        extra=extra,
    )


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins of ``capacity`` by best-fit decreasing.

    Items are placed longest first (ties in input order) into the open bin with the least room
    that still holds them (ties to the bin opened first); every choice is deterministic. Each bin
    lists its indices in input order, and bins are ordered by their first index.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    free: list[tuple[int, int]] = []  # (room left, bin number), kept sorted
    bins: list[list[int]] = []
    for index in order:
        size = int(lengths[index])
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, number = free.pop(at)
        else:
            room, number = capacity, len(bins)
            bins.append([])
        bins[number].append(index)
        bisect.insort(free, (room - size, number))
    for members in bins:
        members.sort()
    bins.sort(key=lambda members: members[0])
    return bins


class PackShaper:
    """The ``pack`` strategy: whole pieces concatenated into rows of exactly ``max_length``.

    ``greedy`` streams in input order: a row is closed as soon as the next piece does not fit.
    ``bfd`` buffers the greedy rows until they hold at least ``pack_window`` pieces, regroups
    those pieces by :func:`best_fit_decreasing`, and keeps the greedy rows instead when that would
    not save a row. Windows therefore start and end on greedy row boundaries, which is what makes
    ``bfd`` never use more rows than ``greedy`` on the same input. ``bfd`` is the default.

    Row order under ``bfd``: windows follow one another in input order; inside a window each row
    holds its documents in input order, and rows are ordered by their first document. A document
    therefore stays within its window (at least ``pack_window`` documents) of where ``greedy``
    would put it, but documents of one window are spread over its rows by length, not order.
    """

    def __init__(self, config: ShapeConfig, pad_id: int) -> None:
        self.config = config
        self.pad_id = pad_id
        self.stats = ShapeStats()
        self._open: list[Piece] = []
        self._used = 0
        self._window: list[list[Piece]] = []
        self._window_pieces = 0

    def shape(self, docs: Sequence[EncodedDoc]) -> Iterator[RowBatch]:
        """Fit documents and add them to rows; yields the rows this batch closed."""
        closed = []
        for doc in docs:
            for piece in fit(doc, self.config, self.stats):
                if self._open and self._used + len(piece.ids) > self.config.max_length:
                    closed.append(self._open)
                    self._open, self._used = [], 0
                self._open.append(piece)
                self._used += len(piece.ids)
        yield from self._emit(closed, final=False)

    def finish(self) -> Iterator[RowBatch]:
        """The last, partly filled row (and, for ``bfd``, the last window)."""
        closed = [self._open] if self._open else []
        self._open, self._used = [], 0
        yield from self._emit(closed, final=True)

    def snapshot(self) -> dict[str, Any]:
        """What this shaper holds between batches (for a resumed build, see
        :mod:`maskprep.resume`): its counts, the open row, and for ``bfd`` the window of rows not
        yet regrouped. Cheap (the pieces are shared, never changed); :meth:`restore` takes it
        back once it went through JSON (pieces as lists)."""
        return {
            "stats": self.stats.as_dict(),
            "open": list(self._open),
            "window": [list(row) for row in self._window],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take up a :meth:`snapshot`, as JSON gave it back."""
        self.stats = ShapeStats.from_dict(state["stats"])
        self._open = [Piece.from_list(piece) for piece in state["open"]]
        self._used = sum(len(piece.ids) for piece in self._open)
        self._window = [[Piece.from_list(piece) for piece in row] for row in state["window"]]
        self._window_pieces = sum(len(row) for row in self._window)

    def _emit(self, closed: list[list[Piece]], final: bool) -> Iterator[RowBatch]:
        greedy = self.config.resolved_pack_algorithm == "greedy"
        rows = closed if greedy else self._regroup(closed, final)
        if rows:
            yield pack_rows(rows, self.config.max_length, self.pad_id)

    def _regroup(self, closed: list[list[Piece]], final: bool) -> list[list[Piece]]:
        rows: list[list[Piece]] = []
        for row in closed:
            self._window.append(row)
            self._window_pieces += len(row)
            if self._window_pieces >= self.config.pack_window:
                rows.extend(self._flush_window())
        if final and self._window:
            rows.extend(self._flush_window())
        return rows

    def _flush_window(self) -> list[list[Piece]]:
        greedy = self._window
        self._window, self._window_pieces = [], 0
        pieces = [piece for row in greedy for piece in row]
        bins = best_fit_decreasing([len(p.ids) for p in pieces], self.config.max_length)
        if len(bins) > len(greedy):
            return greedy
        return [[pieces[i] for i in members] for members in bins]


Shaper = PaddedShaper | PackShaper


def make_shaper(config: ShapeConfig, pad_id: int, padding_side: str) -> Shaper:
    """The shaper for ``config.strategy``; packs are always padded on the right."""
    if config.strategy == "pack":
        return PackShaper(config, pad_id)
    return PaddedShaper(config, pad_id, padding_side)
