"""How far rows reach into a model's positions and vocabulary, against what the model has.

A padded row uses positions up to its width: the model numbers them itself, padding included. A
packed row fed ``position_ids`` that restart at every document (as maskprep's collator feeds it)
uses positions up to its longest document only::

    padded   [a0 a1 a2 a3  P  P]          positions 0…5: the row's width, 6
    packed   [a0 a1 a2 b0 b1  P]          positions 0…2: the longest document, 3

A model with an absolute position table (GPT-2's ``n_positions``, BERT's and MiniLM's
``max_position_embeddings``, RoBERTa's, which numbers positions from ``padding_idx + 1``) cannot
look a position beyond it up: on a CPU the forward pass raises, on a GPU it stops with a
device-side assert. Rotary models run beyond the context length their config names, on positions
they were not trained on; a tokenizer's ``model_max_length`` says what its model was made for. So
the first is an error and the others are warnings. ``maskprep inspect`` (with a model or a
tokenizer: its ``model_*`` checks) and ``maskprep verify`` (before any forward pass) share what is
here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import list_column, segment_extreme, segment_sum
from ..tokenizing.loading import real_model_max_length


@dataclass(frozen=True)
class PositionLimit:
    """How many positions rows may use on a model.

    ``positions`` counts the positions a row may use (a table of ``N`` entries numbered from
    ``offset`` holds ``N - offset``); ``hard`` is true for an absolute table (a row beyond it
    cannot run), false for a context length (rotary models; a tokenizer's ``model_max_length``),
    beyond which a model runs on positions it was not trained on. ``source`` names the limit in
    words, for messages.
    """

    positions: int
    hard: bool
    source: str


def model_limit(facts: Any) -> PositionLimit | None:
    """The limit of a model from its :class:`~maskprep.collate.ModelFacts`; ``None`` when it has
    neither a position table nor a context length in its config."""
    if facts.max_positions is not None:
        offset = facts.position_offset
        numbered = f", numbered from {offset}" if offset else ""
        return PositionLimit(
            facts.max_positions - offset,
            True,
            f"{facts.name} has {facts.max_positions} position embeddings{numbered}",
        )
    if facts.context_positions is not None:
        return PositionLimit(
            facts.context_positions,
            False,
            f"the {facts.context_positions}-position context {facts.name}'s config names",
        )
    return None


def tokenizer_limit(model_max_length: Any, name: str) -> PositionLimit | None:
    """The soft limit a tokenizer's ``model_max_length`` sets; ``None`` where it is unset."""
    value = real_model_max_length(model_max_length)
    if value is None:
        return None
    return PositionLimit(value, False, f"the model_max_length {value} of tokenizer {name}")


def reach_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The columns :func:`row_reach` reads from a shard with the columns ``names``: the fewest
    that tell each row's reach and its number of real tokens."""
    if columns.SEQ_LENS in names:
        return (columns.SEQ_LENS,)
    if columns.POSITION_IDS in names:
        return (columns.POSITION_IDS, columns.ATTENTION_MASK)
    return (columns.ATTENTION_MASK,)


def row_reach(batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per row: the positions it uses and its real tokens; and whether the rows are packs.

    Packs reach as far as their longest document (``seq_lens``, else where ``position_ids``
    restart at real tokens); other rows as far as their width.
    """
    names = batch.schema.names
    if columns.SEQ_LENS in names:
        lens = list_column(batch, columns.SEQ_LENS)
        reach = segment_extreme(lens.values, lens.offsets, np.maximum, 0)
        return reach, segment_sum(lens.values, lens.offsets), True
    mask = list_column(batch, columns.ATTENTION_MASK)
    real = segment_sum(mask.values != 0, mask.offsets)
    if columns.POSITION_IDS in names:
        positions = list_column(batch, columns.POSITION_IDS)
        values = np.where(mask.values != 0, positions.values, -1)
        return segment_extreme(values, positions.offsets, np.maximum, -1) + 1, real, True
    return np.diff(mask.offsets), real, False


def beyond_message(row: int, reach: int, packed: bool, limit: PositionLimit) -> str:
    """One line: row ``row`` needs ``reach`` positions, past ``limit``, and what follows."""
    what = "its longest document" if packed else "its width"
    if limit.hard:
        return (
            f"row {row} needs {reach} positions ({what}), but {limit.source}: rebuild the data "
            f"with a max length of at most {limit.positions}"
        )
    return (
        f"row {row} needs {reach} positions ({what}), beyond {limit.source}: the model runs "
        "there, but on positions it was not trained on"
    )
