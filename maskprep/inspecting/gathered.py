"""What ``inspect`` keeps of the rows it has read: every analysed batch folded into counts,
histograms and the first offending rows (:mod:`.tally`), so memory does not grow with the rows.

What the checks will hold the data to (strategy, widths, padding side, pad id) is settled only
once every row was read, so the per-row facts those checks need are kept by value: rows per
(width, real tokens) pair, per padding side, per id their padding holds. A verdict for any
layout is then a sum over those keys (see :mod:`.conclude`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .analysis import NO_EDGE, NO_PAD_MIN, ROW_FLAGS, PartStats
from .tally import Counts, KeyedRows, Offenders

#: Key of rows whose padded positions hold more than one id.
MIXED_PADDING = np.iinfo(np.int64).min


def shape_key(width: np.ndarray, real: np.ndarray) -> np.ndarray:
    """One integer per (row width, real tokens) pair: widths and lengths are below 2**31."""
    return (np.asarray(width, np.int64) << 32) | np.asarray(real, np.int64)


def split_shape_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The widths and real-token counts of :func:`shape_key` keys."""
    return keys >> 32, keys & 0xFFFFFFFF


@dataclass
class Gathered:
    """Everything the checks and the summary need of the rows read so far.

    ``max_pad_fraction`` and ``min_label_fraction`` are the warning limits, known before reading,
    so the rows past them are counted as they pass.
    """

    listed: int
    max_pad_fraction: float | None = None
    min_label_fraction: float | None = None
    rows: int = 0
    positions: int = 0
    real_tokens: int = 0
    label_tokens: int = 0
    rows_with_length: int = 0
    packed: bool = False
    eos_real_tokens: int = 0
    eos_trained_tokens: int = 0
    shapes: KeyedRows = field(init=False)
    sides: KeyedRows = field(init=False)
    padding: KeyedRows = field(init=False)
    holes: KeyedRows = field(init=False)
    edge_end: KeyedRows = field(init=False)
    edge_start: KeyedRows = field(init=False)
    documents: Counts = field(default_factory=Counts)
    trained_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    flags: dict[str, Offenders] = field(init=False)
    eos_untrained: Offenders = field(init=False)
    without_labels: Offenders = field(init=False)
    pad_heavy: Offenders = field(init=False)
    label_light: Offenders = field(init=False)
    attended_end: Offenders = field(init=False)
    attended_start: Offenders = field(init=False)
    attended_either: Offenders = field(init=False)
    several_documents: Offenders = field(init=False)

    def __post_init__(self) -> None:
        for name in ("shapes", "sides", "padding", "holes", "edge_end", "edge_start"):
            setattr(self, name, KeyedRows(self.listed))
        self.flags = {name: Offenders(self.listed) for name in ROW_FLAGS}
        for name in (
            "eos_untrained",
            "without_labels",
            "pad_heavy",
            "label_light",
            "attended_end",
            "attended_start",
            "attended_either",
            "several_documents",
        ):
            setattr(self, name, Offenders(self.listed))

    def add(self, part: PartStats) -> None:
        """Fold one analysed batch in."""
        ids = part.row_ids
        self.rows += len(ids)
        self.positions += int(part.width.sum())
        self.real_tokens += int(part.real.sum())
        self.label_tokens += int(part.trained.sum())
        self.rows_with_length += len(ids) if part.has_length else 0
        self.shapes.add(shape_key(part.width, part.real), ids)
        self.sides.add(part.side, ids)
        padded = part.pad_min != NO_PAD_MIN
        value = np.where(part.pad_min == part.pad_max, part.pad_min, MIXED_PADDING)
        self.padding.add(value[padded], ids[padded])
        if part.packed and part.documents is not None:
            self.packed = True
            self.documents.add(part.documents)
        for name in ROW_FLAGS:
            self.flags[name].add(part.flags[name], ids)
        self.eos_real_tokens += part.eos_real_tokens
        self.eos_trained_tokens += part.eos_trained_tokens
        self.eos_untrained.add(part.eos_untrained, ids)
        self.without_labels.add(part.trained == 0, ids)
        self._add_fractions(part)
        self.attended_end.add(part.attended_end, ids)
        self.attended_start.add(part.attended_start, ids)
        self.attended_either.add(part.attended_end | part.attended_start, ids)
        self.holes.add(part.hole_ids, part.hole_rows)
        if len(part.several_documents):
            self.several_documents.add(part.several_documents, ids)
        for keyed, edge in ((self.edge_end, part.edge_end), (self.edge_start, part.edge_start)):
            if len(edge):
                at = edge != NO_EDGE
                keyed.add(edge[at], ids[at])
        self._add_trained_ids(part.trained_ids)

    def _add_fractions(self, part: PartStats) -> None:
        if self.max_pad_fraction is not None:
            pad = np.divide(
                part.width - part.real,
                part.width,
                out=np.zeros(len(part.width)),
                where=part.width > 0,
            )
            self.pad_heavy.add(pad > self.max_pad_fraction, part.row_ids)
        if self.min_label_fraction is not None:
            label = np.divide(
                part.trained, part.real, out=np.zeros(len(part.real)), where=part.real > 0
            )
            self.label_light.add(label < self.min_label_fraction, part.row_ids)

    def _add_trained_ids(self, found: np.ndarray) -> None:
        if not found.size:
            return
        top = int(found.max()) + 1
        if top > len(self.trained_ids):
            grown = np.zeros(top, bool)
            grown[: len(self.trained_ids)] = self.trained_ids
            self.trained_ids = grown
        self.trained_ids[found] = True

    def trained(self, token: int) -> bool:
        """Whether ``token`` was trained at a real position anywhere (known for every id only
        while the EOS id is unknown, see :func:`~.analysis._value_holes`)."""
        return 0 <= token < len(self.trained_ids) and bool(self.trained_ids[token])

    def shape_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (width, real tokens) pair seen, and how many rows have it."""
        width, real = split_shape_keys(self.shapes.keys)
        return width, real, self.shapes.counts
