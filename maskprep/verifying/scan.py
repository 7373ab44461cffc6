"""One pass over the rows to probe, before any forward pass: their columns, the widest row, the
pad id their padding holds, token ids against the model's vocabulary, and the data check that
runs beside the probes (``padding_attended``: runs of the pad id the mask marks real)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import columns
from ..column_values import list_values, outside_ids
from ..columns import IGNORE_INDEX
from ..errors import DataError
from .results import ProbeResult

if TYPE_CHECKING:
    import pyarrow as pa

#: The data check that runs beside the probes: runs of the pad id that the mask marks real.
PADDING_ATTENDED = "padding_attended"


@dataclass
class Scan:
    """What :func:`scan_rows` found: the columns of the rows (``labelled``: with labels), the
    widest row, the ids their padding holds, and the rows attending a run of the pad id (row,
    run) with the positions looked at."""

    names: tuple[str, ...] = ()
    labelled: bool = True
    width: int = 0
    padding_ids: set[int] = field(default_factory=set)
    attended: list[tuple[int, int]] = field(default_factory=list)
    positions: int = 0

    @property
    def packed(self) -> bool:
        """The rows carry the columns of packs."""
        return columns.SEQ_LENS in self.names or columns.POSITION_IDS in self.names

    def seen_pad_id(self) -> int | None:
        """The one id the rows' padding holds; ``None`` when none or several show."""
        return next(iter(self.padding_ids)) if len(self.padding_ids) == 1 else None


def with_labels(table: pa.Table) -> pa.Table:
    """Rows without a ``labels`` column (data another tool made, labelled by its collator) get
    labels that train nothing: the attention probes still run, the label probes are skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if columns.LABELS in table.schema.names:
        return table
    ids = table.column(columns.INPUT_IDS).combine_chunks()
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    values = np.full(int(offsets[-1]), IGNORE_INDEX, dtype=np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return table.append_column(columns.LABELS, labels)


def scan_rows(
    chunks: Callable[[], Iterable[tuple[pa.Table, list[int]]]],
    vocab: int,
    model: str,
    pad_id: int | None,
) -> Scan:
    """Scan every chunk of rows ``chunks()`` gives (tables with the rows' indices in the data):
    fail in one line on a token id the model's ``vocab`` cannot look up, and note runs of
    ``pad_id`` (else the one id the padding holds, in a second pass) that the mask marks real."""
    import pyarrow.compute as pc

    scan = Scan()
    for table, row_ids in chunks():
        if not scan.names:
            scan.names = tuple(table.schema.names)
            scan.labelled = columns.LABELS in scan.names
        _check_vocabulary(table, row_ids, vocab, model)
        widths = pc.list_value_length(table.column(columns.INPUT_IDS))
        scan.width = max(scan.width, int(pc.max(widths).as_py() or 0))
        ids = pc.list_flatten(table.column(columns.INPUT_IDS)).to_numpy(zero_copy_only=False)
        mask = pc.list_flatten(table.column(columns.ATTENTION_MASK)).to_numpy(zero_copy_only=False)
        if len(ids) == len(mask):
            scan.padding_ids.update(int(i) for i in np.unique(ids[mask == 0]))
        if pad_id is not None:
            _attended(scan, table, row_ids, pad_id)
    seen = scan.seen_pad_id()
    if pad_id is None and seen is not None:
        for table, row_ids in chunks():
            _attended(scan, table, row_ids, seen)
    return scan


def padding_attended(scan: Scan, pad_id: int | None) -> ProbeResult | None:
    """The ``padding_attended`` check from ``scan``: a row whose mask is 1 over a run of two or
    more pad ids at its end (or start) attends to padding that the probes, which take the mask's
    word for what is real, cannot see. A single pad id at an end is allowed: with ``pad == eos``
    it is the real EOS. ``None`` when the pad id is not known."""
    if pad_id is None:
        return None
    if not scan.attended:
        return ProbeResult(
            probe=PADDING_ATTENDED,
            attn_implementation="-",
            form="-",
            status="pass",
            positions=scan.positions,
            note=f"no run of pad id {pad_id} attended",
        )
    positions = sum(run for _, run in scan.attended)
    return ProbeResult(
        probe=PADDING_ATTENDED,
        attn_implementation="-",
        form="-",
        status="LEAK",
        positions=positions,
        worst_row=scan.attended[0][0],
        leaking=len(scan.attended),
        note=(
            f"attention_mask is 1 over {positions} positions holding the pad id {pad_id} at the "
            "ends of rows: the model attends to padding; fix: the mask must be 0 at padding "
            "(maskprep build derives it from positions, never from ids)"
        ),
        fix="attention_mask",
    )


def _attended(scan: Scan, table: pa.Table, row_ids: list[int], pad_id: int) -> None:
    ids = table.column(columns.INPUT_IDS).to_pylist()
    masks = table.column(columns.ATTENTION_MASK).to_pylist()
    for row, (row_ids_, mask) in zip(row_ids, zip(ids, masks, strict=True), strict=True):
        scan.positions += len(row_ids_)
        if len(row_ids_) != len(mask):
            continue  # the collator refuses the row, naming it, when the probes feed it
        attended_pad = (np.asarray(row_ids_) == pad_id) & (np.asarray(mask) != 0)
        run = max(_run_length(attended_pad), _run_length(attended_pad[::-1]))
        if run >= 2:
            scan.attended.append((row, run))


def _run_length(flags: np.ndarray) -> int:
    """How many of ``flags`` are true from its end."""
    false = np.flatnonzero(~flags)
    return int(len(flags) - 1 - false[-1]) if len(false) else len(flags)


def _check_vocabulary(table: pa.Table, row_ids: list[int], vocab: int, model: str) -> None:
    """Fail in one line when a token id cannot be looked up in the model's embeddings."""
    values, offsets = list_values(table.column(columns.INPUT_IDS), columns.INPUT_IDS, row_ids)
    bad = outside_ids(values, vocab)
    if not bad.any():
        return
    at = int(np.argmax(bad))
    row = int(np.searchsorted(offsets, at, side="right")) - 1
    raise DataError(
        f"row {row_ids[row]}: token id {values[at]} is outside the {vocab}-id vocabulary of "
        f"{model}; were the rows built with this model's tokenizer?"
    )
