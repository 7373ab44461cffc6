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
tokenizer) and ``maskprep verify`` share what is here; both stream rows through
:class:`ReachScan`, which keeps a few numbers whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import check_columns, outside_ids
from ..tokenizing.loading import real_model_max_length
from .kernels import list_column, segment_any, segment_extreme, segment_sum
from .specs import (
    MODEL_CONTEXT,
    MODEL_POSITIONS,
    MODEL_VOCABULARY,
    SPECS,
    CheckResult,
    Status,
)


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
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else None
        if batch is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), False
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


@dataclass
class ReachScan:
    """The farthest position and the token ids of every row streamed through :meth:`add`,
    against a model's position ``limit`` and vocabulary (``vocab_size``), in bounded memory: the
    worst row, counts and the first ``listed`` offending rows."""

    limit: PositionLimit | None = None
    vocab_size: int | None = None
    listed: int = 5
    packed: bool = False
    reach: int = 0
    reach_row: int | None = None
    beyond: int = 0
    beyond_rows: list[int] = field(default_factory=list)
    bad_ids: int = 0
    bad_id_rows: list[int] = field(default_factory=list)
    worst_id: int | None = None

    def add(self, batch: pa.RecordBatch, row_ids: np.ndarray) -> None:
        """Add a batch of rows; ``row_ids`` place them in the whole data."""
        if batch.num_rows == 0:
            return
        check_columns(batch, row_ids)
        reach, _, packed = row_reach(batch)
        self.packed |= packed
        widest = int(np.argmax(reach))
        if self.reach_row is None or int(reach[widest]) > self.reach:
            self.reach, self.reach_row = int(reach[widest]), int(row_ids[widest])
        if self.limit is not None:
            over = reach > self.limit.positions
            self.beyond += int(np.count_nonzero(over))
            self._list(self.beyond_rows, row_ids[over])
        if self.vocab_size is not None and columns.INPUT_IDS in batch.schema.names:
            ids = list_column(batch, columns.INPUT_IDS)
            bad = outside_ids(ids.values, self.vocab_size)
            if bad.any():
                rows = segment_any(bad, ids.offsets)
                self.bad_ids += int(np.count_nonzero(rows))
                self._list(self.bad_id_rows, row_ids[rows])
                values = ids.values[bad]
                worst = int(values[np.argmax(np.abs(values.astype(np.int64)))])
                if self.worst_id is None or abs(worst) > abs(self.worst_id):
                    self.worst_id = worst

    def _list(self, kept: list[int], rows: np.ndarray) -> None:
        room = self.listed - len(kept)
        if room > 0:
            kept.extend(int(r) for r in rows[:room])

    def checks(self) -> tuple[CheckResult, ...]:
        """One result for the position limit (an invariant for an absolute table, else a
        warning) and one for the vocabulary, each only where it is known."""
        out = []
        if self.limit is not None:
            name = MODEL_POSITIONS if self.limit.hard else MODEL_CONTEXT
            spec = SPECS[name]
            what = "longest document" if self.packed else "widest row"
            detail = f"{what} {self.reach} positions; {self.limit.source}"
            status: Status = "pass" if self.beyond == 0 else ("fail" if self.limit.hard else "warn")
            rows = tuple(self.beyond_rows)
            out.append(CheckResult(name, spec.kind, status, self.beyond, rows, detail))
        if self.vocab_size is not None:
            detail = f"token ids in [0, {self.vocab_size})"
            if self.worst_id is not None:
                detail += f"; found {self.worst_id}"
            vocab_status: Status = "pass" if self.bad_ids == 0 else "fail"
            out.append(
                CheckResult(
                    MODEL_VOCABULARY,
                    "invariant",
                    vocab_status,
                    self.bad_ids,
                    tuple(self.bad_id_rows),
                    detail,
                )
            )
        return tuple(out)
