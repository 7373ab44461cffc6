"""The model checks of ``inspect`` (``model_positions``, ``model_context``, ``model_vocabulary``):
every row held to the positions and the vocabulary of the model the data is for, where they are
known (see :mod:`maskprep.reading.reach`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import columns
from ..column_values import check_columns, outside_ids
from ..reading.lists import list_column, segment_any
from ..reading.reach import PositionLimit, row_reach
from .specs import MODEL_CONTEXT, MODEL_POSITIONS, MODEL_VOCABULARY, SPECS, CheckResult, Status


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
