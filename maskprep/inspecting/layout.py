"""The layout the checks hold the rows to: strategy, row widths, padding side, pad id, EOS id.

What is known before reading (:class:`LayoutHints`) comes from the options, else from the contract
that the manifest or the shards' metadata declares (:func:`layout_hints`), and from a loaded
tokenizer (:func:`with_tokenizer`). What nothing declares (shards another tool wrote) is inferred
from the rows once every one was read (:func:`infer_layout`): the one place where a layout is
inferred.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import columns
from ..config import STRATEGIES
from ..errors import DataError
from ..reading.shards import Declared
from .options import InspectOptions

if TYPE_CHECKING:
    from .stats import ColumnStats

# Which padding side a row's mask fits: both (no padding inside the row, or none at all), only
# right (``1…1 0…0``), only left (``0…0 1…1``), or neither.
SIDE_ANY, SIDE_RIGHT, SIDE_LEFT, SIDE_NEITHER = 0, 1, 2, 3
#: What stands for the pad id of rows whose padded positions hold more than one id.
MIXED_PADDING = int(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class LayoutHints:
    """Facts about the data known before reading it (from the options, a manifest or the shards'
    metadata); ``None`` fields are inferred from the data."""

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


def layout_hints(found: Declared, options: InspectOptions) -> LayoutHints:
    """What the options and the declared contract (the manifest's, else the shards' metadata,
    see :func:`maskprep.reading.shards.declared`) say about the data before it is read."""
    contract = found.contract
    source = found.source or "manifest"
    strategy = options.strategy or (contract.strategy if contract else None)
    if strategy is not None and strategy not in STRATEGIES:
        strategy = None  # a strategy this version does not know: infer it from the data
    if strategy == "pack" and found.stripped and options.strategy is None:
        # Declared packs whose pack columns are gone: hold the rows to what they now are, and
        # let the undeclared_packs check say what happened.
        strategy = None
    buckets = options.buckets or (contract.buckets if contract and contract.buckets else None)
    pad_id, eos_id, vocab = options.pad_id, options.eos_id, options.vocab_size
    if contract is not None:
        pad_id = contract.pad_token_id if pad_id is None else pad_id
        eos_id = contract.eos_token_id if eos_id is None else eos_id
        vocab = contract.vocab_size if vocab is None else vocab
    return LayoutHints(
        strategy=strategy,
        max_length=contract.max_length if contract else None,
        buckets=buckets,
        # Packed rows may be padded at the end whatever side the tokenizer pads on.
        padding_side=contract.padding_side if contract and strategy in ("pad", "bucket") else None,
        pad_id=pad_id,
        eos_id=eos_id,
        strategy_source="option" if options.strategy else source,
        pad_id_source="option" if options.pad_id is not None else source,
        bos_id=contract.bos_token_id if contract is not None else None,
        vocab_size=vocab,
        vocab_source="option" if options.vocab_size is not None else source,
        # The contract records the tokenizer's EOS id, null when it has none.
        no_eos=eos_id is None and contract is not None,
        records=contract.records if contract is not None else None,
        stripped=found.stripped,
    )


def with_tokenizer(hints: LayoutHints, tokenizer: Any) -> LayoutHints:
    """``hints`` with the EOS and BOS ids and the vocabulary size a loaded tokenizer knows, where
    neither the options nor the manifest said. Not its pad id: data is often padded with another
    token than the tokenizer's own (EOS, for one), so the pad id is inferred from the data."""
    changes: dict[str, Any] = {}
    if hints.eos_id is None:
        changes["eos_id"] = tokenizer.eos_token_id
        changes["no_eos"] = tokenizer.eos_token_id is None
    if hints.bos_id is None and tokenizer.bos_token_id is not None:
        changes["bos_id"] = tokenizer.bos_token_id
    if hints.vocab_size is None:
        changes.update(vocab_size=len(tokenizer), vocab_source="tokenizer")
    return dataclasses.replace(hints, **changes)


def infer_layout(stats: ColumnStats, hints: LayoutHints) -> Layout:
    """The layout: from ``hints`` where given, else from the rows (pack columns mean ``pack``;
    one width ``pad``; no padding at all ``none``; several widths ``bucket``, the widths seen
    being the buckets; the padding side and the pad id most rows show)."""
    width, real, rows = stats.shape_counts()
    widths = np.unique(width)
    if hints.strategy is not None:
        strategy, source = hints.strategy, hints.strategy_source
    elif stats.packed:
        strategy, source = "pack", "inferred"
    elif len(widths) <= 1:
        strategy, source = "pad", "inferred"
    elif (width == real).all():
        strategy, source = "none", "inferred"
    else:
        strategy, source = "bucket", "inferred"
    if strategy == "pack" and not stats.packed:
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
        if max_length is not None:
            # The largest bucket is the row length the build was given, even if no row reached it.
            buckets = tuple(sorted({*buckets, max_length}))

    padding_side = hints.padding_side
    if padding_side is None:
        right = stats.sides.of(SIDE_RIGHT).count
        left = stats.sides.of(SIDE_LEFT).count
        padding_side = None if right == left == 0 else ("right" if right >= left else "left")

    pad_id, pad_source = hints.pad_id, hints.pad_id_source
    if pad_id is None:
        pad_source = "inferred"
        uniform = stats.padding.values != MIXED_PADDING
        if uniform.any():
            # The id most rows pad with (the smallest of equally common ones).
            values, counts = stats.padding.values[uniform], stats.padding.counts[uniform]
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
