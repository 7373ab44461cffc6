"""The layout the checks hold the data to (strategy, widths, padding side, pad id): from what the
build recorded or the caller gave, else inferred from the data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import columns
from ..errors import DataError
from .analysis import SIDE_LEFT, SIDE_RIGHT, ScanFacts
from .gathered import MIXED_PADDING, Gathered


@dataclass(frozen=True)
class LayoutHints:
    """Facts about the data known before reading it (from a manifest or the caller); ``None``
    fields are inferred from the data."""

    strategy: str | None = None
    max_length: int | None = None
    buckets: tuple[int, ...] | None = None
    padding_side: str | None = None
    pad_id: int | None = None
    eos_id: int | None = None
    strategy_source: str = "given"
    pad_id_source: str = "given"
    bos_id: int | None = None
    vocab_size: int | None = None
    vocab_source: str = "given"
    #: ``eos_id`` is ``None`` because the tokenizer has no EOS token (the manifest or a loaded
    #: tokenizer said so), not because nothing told it.
    no_eos: bool = False
    #: What the records were (``text``, ``prompt_completion``, ``chat``), where declared.
    records: str | None = None
    #: Shards declared packs whose ``seq_lens``/``position_ids`` are gone.
    stripped: tuple[str, ...] = ()

    def scan_facts(self) -> ScanFacts:
        """What the analysis of each batch may count on."""
        return ScanFacts(self.eos_id, self.pad_id, self.bos_id, self.vocab_size)


@dataclass(frozen=True)
class Layout:
    """The shape the checks held the data to, and where each fact came from."""

    strategy: str
    strategy_source: str
    max_length: int | None
    buckets: tuple[int, ...] | None
    padding_side: str | None
    pad_id: int | None
    pad_id_source: str
    eos_id: int | None


def resolve_layout(data: Gathered, hints: LayoutHints) -> Layout:
    """Settle the strategy, widths, padding side and pad id: from ``hints`` where given, else
    from the data (pack columns mean ``pack``; one width ``pad``; no padding at all ``none``;
    several widths ``bucket`` with the widths seen as buckets)."""
    width, real, rows = data.shape_counts()
    widths = np.unique(width)
    if hints.strategy is not None:
        strategy, source = hints.strategy, hints.strategy_source
    elif data.packed:
        strategy, source = "pack", "inferred"
    elif len(widths) <= 1:
        strategy, source = "pad", "inferred"
    elif (width == real).all():
        strategy, source = "none", "inferred"
    else:
        strategy, source = "bucket", "inferred"
    if strategy == "pack" and not data.packed:
        raise DataError(
            f"the data is said to be packed but has no {columns.POSITION_IDS}/{columns.SEQ_LENS}"
        )
    max_length = hints.max_length
    if max_length is None and len(widths) and strategy in ("pad", "pack"):
        # The most common width (the smallest of equally common ones).
        per_width = np.zeros(len(widths), np.int64)
        np.add.at(per_width, np.searchsorted(widths, width), rows)
        max_length = int(widths[per_width.argmax()])
    buckets = hints.buckets
    if strategy == "bucket" and buckets is None:
        buckets = tuple(int(w) for w in widths)
    if strategy == "bucket" and hints.buckets is None and max_length is not None:
        # The largest bucket is the row length the build was given, even if no row reached it.
        buckets = tuple(sorted({*(buckets or ()), max_length}))

    padding_side = hints.padding_side
    if padding_side is None:
        right = int(data.sides.of(SIDE_RIGHT).count)
        left = int(data.sides.of(SIDE_LEFT).count)
        padding_side = None if right == left == 0 else ("right" if right >= left else "left")

    pad_id, pad_source = hints.pad_id, hints.pad_id_source
    if pad_id is None:
        pad_source = "inferred"
        uniform = data.padding.keys != MIXED_PADDING
        if uniform.any():
            # The id most rows pad with (the smallest of equally common ones).
            values, counts = data.padding.keys[uniform], data.padding.counts[uniform]
            pad_id = int(values[counts.argmax()])
        else:
            pad_source = "unknown"
    return Layout(
        strategy=strategy,
        strategy_source=source,
        max_length=max_length,
        buckets=buckets,
        padding_side=padding_side,
        pad_id=pad_id,
        pad_id_source=pad_source,
        eos_id=hints.eos_id,
    )
