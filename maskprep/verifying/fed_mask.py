"""The attention mask a foreign feed gives, held to the output's documents (no forward pass).

``mask_structure``: for every real query position of every fed row (placed by
:mod:`.alignment`), the keys the fed mask lets it attend must be exactly the real tokens of its
own document (those up to it, for a decoder). What each form allows:

- a 2D mask ``(batch, length)``: every position whose mask is 1 (a decoder adds causality);
  on a row holding two documents or more, each sees the ones before it, whatever the model;
- a 4D mask ``(batch, 1 or heads, query, key)``: where it is 0 (an additive float mask, as
  transformers 5 hands it to attention untouched) or true (a boolean one);
- no mask: the model builds one (from ``position_ids`` on transformers 5 decoders, without a KV
  cache), so this check cannot judge it and says so; the forward comparison does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..collate import RowArrays, block_mask
from .results import ProbeResult

MASK_STRUCTURE = "mask_structure"


@dataclass
class MaskTally:
    """Counts over the real query positions of every fed row compared; ``rows``: the first rows
    (indices in the data) where the mask let a position see another document or padding, or hid
    its own document."""

    positions: int = 0
    forms: dict[str, None] = field(default_factory=dict)
    across: int = 0
    padding: int = 0
    hidden: int = 0
    rows: list[int] = field(default_factory=list)
    unjudged: int = 0

    def add(self, mask: Any, truth: RowArrays, row_ids: list[int], *, causal: bool) -> None:
        """Count one batch: the fed ``mask`` (a tensor, or ``None``) against ``truth``, row by
        row (a row's query × key matrix at a time, whatever the batch)."""
        real = truth.attention_mask > 0
        rows, width = real.shape
        shape = tuple(mask.shape) if mask is not None else None
        if shape == (rows, width):
            self.forms["2D"] = None
        elif (
            shape is not None
            and len(shape) == 4
            and shape[0] == rows
            and shape[2:]
            == (
                width,
                width,
            )
        ):
            self.forms["4D"] = None
        else:
            self.forms["no attention_mask" if mask is None else f"shape {shape}"] = None
            self.unjudged += int(real.sum())
            return
        lower = np.tril(np.ones((width, width), dtype=bool))
        expected = block_mask(truth.segments, causal=causal)[:, 0]
        for i in range(rows):
            row = mask[i].detach().cpu()
            values = (row.float() if row.is_floating_point() else row).numpy()
            if values.ndim == 1:
                widest = np.broadcast_to(values != 0, (width, width))
                if causal:
                    widest = widest & lower
                narrowest = widest
            else:
                allowed = values != 0 if values.dtype == bool else values == 0
                # Every head must keep to the document: the most and least any head allows.
                widest, narrowest = allowed.any(axis=0), allowed.all(axis=0)
            self._judge(i, widest, narrowest, expected[i], real[i], row_ids)

    def _judge(
        self,
        i: int,
        widest: np.ndarray,
        narrowest: np.ndarray,
        expected: np.ndarray,
        real: np.ndarray,
        row_ids: list[int],
    ) -> None:
        queries, keys = real[:, None], real[None, :]
        across = (queries & keys & widest & ~expected).any(axis=1)
        padding = (queries & ~keys & widest).any(axis=1)
        hidden = (queries & keys & expected & ~narrowest).any(axis=1)
        self.positions += int(real.sum())
        # Per query position: it saw another document, it saw padding, it lost part of its own.
        self.across += int(across.sum())
        self.padding += int(padding.sum())
        self.hidden += int(hidden.sum())
        if (across | padding | hidden).any() and len(self.rows) < 4:
            self.rows.append(row_ids[i])


def mask_check(tally: MaskTally, fix: tuple[str, str]) -> ProbeResult:
    """The ``mask_structure`` check from ``tally``; a failing one names ``fix`` (key, words)."""
    forms = ", ".join(tally.forms) or "nothing"
    common: dict[str, Any] = {"probe": MASK_STRUCTURE, "attn_implementation": "-", "form": "-"}
    if tally.positions == 0:
        note = f"fed {forms}: the model builds the mask itself; the probes judge it"
        return ProbeResult(**common, status="skipped", note=note)
    parts = []
    if tally.across:
        parts.append(f"{tally.across} real positions see tokens of another document")
    if tally.padding:
        parts.append(f"{tally.padding} see padding")
    if tally.hidden:
        parts.append(f"{tally.hidden} are hidden tokens of their own document")
    counts: dict[str, Any] = {"positions": tally.positions, "leaking": len(tally.rows)}
    if not parts:
        note = f"fed a {forms} mask: every real position sees exactly its own document"
        return ProbeResult(**common, status="pass", note=note, **counts)
    key, words = fix
    note = f"fed a {forms} mask: {'; '.join(parts)}" + (f"; fix: {words}" if words else "")
    return ProbeResult(
        **common, status="LEAK", note=note, fix=key, worst_row=tally.rows[0], **counts
    )
