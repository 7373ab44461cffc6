"""The model checks of ``inspect`` (``model_positions``, ``model_context``, ``model_vocabulary``):
every row held to the positions and the vocabulary of the model the data is for, where they are
known (how far a row reaches: :mod:`maskprep.reading.reach`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import outside_ids
from ..contract import ShardContract
from ..extras import require_extra
from ..reading.lists import list_column, segment_any
from ..reading.reach import PositionLimit, model_limit, row_reach, tokenizer_limit
from .checks import MODEL_CONTEXT, MODEL_POSITIONS, MODEL_VOCABULARY, CheckResult, verdict
from .options import InspectOptions
from .rows import FlaggedRows


@dataclass
class ModelChecks:
    """The farthest position and the token ids of every row added, against a model's position
    ``limit`` and vocabulary (``vocab_size``), in bounded memory: the farthest reach, the worst
    id, and the rows past either."""

    limit: PositionLimit | None = None
    vocab_size: int | None = None
    listed: int = 5
    packed: bool = False
    reach: int = 0
    worst_id: int | None = None
    beyond: FlaggedRows = field(init=False)
    bad_ids: FlaggedRows = field(init=False)

    def __post_init__(self) -> None:
        self.beyond, self.bad_ids = FlaggedRows(self.listed), FlaggedRows(self.listed)

    def add(self, batch: pa.RecordBatch, row_ids: np.ndarray) -> None:
        """Add a batch of rows (already checked by :meth:`~.stats.ColumnStats.add`); ``row_ids``
        (ascending) place them in the whole data."""
        if batch.num_rows == 0:
            return
        reach, _, packed = row_reach(batch)
        self.packed |= packed
        self.reach = max(self.reach, int(reach.max()))
        if self.limit is not None:
            self.beyond.add(reach > self.limit.positions, row_ids)
        if self.vocab_size is not None:
            ids = list_column(batch, columns.INPUT_IDS)
            bad = outside_ids(ids.values, self.vocab_size)
            if bad.any():
                self.bad_ids.add(segment_any(bad, ids.offsets), row_ids)
                values = ids.values[bad]
                worst = int(values[np.argmax(np.abs(values.astype(np.int64)))])
                if self.worst_id is None or abs(worst) > abs(self.worst_id):
                    self.worst_id = worst

    def results(self) -> tuple[CheckResult, ...]:
        """One result for the position limit (an invariant for an absolute table, else a
        warning) and one for the vocabulary, each only where it is known."""
        out = []
        if self.limit is not None:
            what = "longest document" if self.packed else "widest row"
            detail = f"{what} {self.reach} positions; {self.limit.source}"
            name = MODEL_POSITIONS if self.limit.hard else MODEL_CONTEXT
            out.append(verdict(name, self.beyond, detail))
        if self.vocab_size is not None:
            found = f"; found {self.worst_id}" if self.worst_id is not None else ""
            detail = f"token ids in [0, {self.vocab_size}){found}"
            out.append(verdict(MODEL_VOCABULARY, self.bad_ids, detail))
        return tuple(out)


def model_checks(
    options: InspectOptions, recorded: ShardContract | None, tokenizer: Any
) -> ModelChecks | None:
    """The model checks for ``options``, or ``None`` where no limit is known: the model's
    (``options.model``: its position table or context length, and its vocabulary), else the
    ``model_max_length`` of the ``tokenizer`` loaded, else of the one the manifest or the shards'
    metadata ``recorded``."""
    limit: PositionLimit | None = None
    vocab = None
    if options.model is not None:
        # The model's structure is read on torch's meta device.
        require_extra("torch", "verify", "checking rows against a model")
        from ..collate import model_facts

        facts = model_facts(
            options.model,
            revision=options.model_revision,
            trust_remote_code=options.trust_remote_code,
        )
        limit, vocab = model_limit(facts), facts.vocab_size
    if limit is None and tokenizer is not None:
        name = options.tokenizer or (recorded.tokenizer if recorded else "(unnamed)")
        limit = tokenizer_limit(getattr(tokenizer, "model_max_length", None), name)
    if limit is None and recorded is not None:
        limit = tokenizer_limit(recorded.model_max_length, recorded.tokenizer)
    if limit is None and vocab is None:
        return None
    return ModelChecks(limit=limit, vocab_size=vocab, listed=options.listed)
