"""Per-row measurements of one probe, accumulated over batches, and the verdict drawn from them:
LEAK past tolerance, inconclusive when the planted leak was not seen, else pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import ProbeResult, Status

_LEAK_HINTS = {
    "pad_invariance": "padding reaches real tokens: the attention mask is not applied",
    "unpadded_reference": (
        "real tokens give other outputs inside the batch than alone: check the attention mask, "
        "the padding side and position_ids"
    ),
    "labels_loss": "the loss counts positions that must not be trained (labels on padding or "
    "across documents)",
    "labels_gradient": "padded positions receive gradient: labels on padding",
    "cross_document": "documents of a packed row attend to each other",
    "causal": "earlier positions see later tokens: attention is not causal",
}


@dataclass
class Tally:
    """Per-row measurements of one check, accumulated over batches."""

    diffs: list[float] = field(default_factory=list)
    tols: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    controls: list[float] = field(default_factory=list)
    control_tols: list[float] = field(default_factory=list)
    positions: int = 0
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, diff: float, tol: float, row: int, positions: int) -> None:
        """Record one row's largest change, its tolerance and the positions compared."""
        self.diffs.append(diff)
        self.tols.append(tol)
        self.rows.append(row)
        self.positions += positions

    def control(self, diff: float, tol: float) -> None:
        """Record what a planted leak moved, and the tolerance it is held to."""
        self.controls.append(diff)
        self.control_tols.append(tol)

    def note(self, text: str) -> None:
        """Add a note to the check, once."""
        if text not in self.notes:
            self.notes.append(text)

    def noted(self, start: str) -> bool:
        """Whether a note starting with ``start`` was made."""
        return any(n.startswith(start) for n in self.notes)

    @property
    def control_seen(self) -> bool:
        """A planted leak moved outputs past its tolerance: the probe can see a leak on this
        model, so later batches need not plant one again (the verdict needs one sighting)."""
        return any(c > t for c, t in zip(self.controls, self.control_tols, strict=True))


def check_from_tally(
    probe: str,
    impl: str,
    form: str,
    tally: Tally,
    skip_reason: str,
    remedy: tuple[str, str] = ("", ""),
) -> ProbeResult:
    """Turn a tally into a check: LEAK past tolerance (its note naming the ``remedy``: a fix key
    and its words), inconclusive when blind, else pass."""
    common: dict[str, Any] = {"probe": probe, "attn_implementation": impl, "form": form}
    if tally.positions == 0:
        return ProbeResult(**common, status="skipped", note=skip_reason, elapsed_s=tally.elapsed_s)
    diffs, tols = np.array(tally.diffs), np.array(tally.tols)
    ratio = diffs / tols
    worst = int(np.argmax(ratio))
    control = max(tally.controls) if tally.controls else None
    notes = list(tally.notes)
    fix = ""
    if ratio[worst] > 1:
        status: Status = "LEAK"
        fix, words = remedy
        notes.insert(0, f"{_LEAK_HINTS[probe]}; fix: {words}" if words else _LEAK_HINTS[probe])
    elif tally.controls:
        seen = np.array(tally.controls) > np.array(tally.control_tols)
        status = "pass" if seen.any() else "inconclusive"
        if not seen.any():
            notes.insert(0, "the planted leak did not move outputs past the tolerance")
    else:
        status = "pass"
    return ProbeResult(
        **common,
        status=status,
        max_diff=float(diffs.max()),
        tolerance=float(tols[worst]),
        positions=tally.positions,
        worst_row=tally.rows[worst],
        control_diff=control,
        leaking=int((ratio > 1).sum()),
        note="; ".join(notes),
        elapsed_s=tally.elapsed_s,
        fix=fix,
    )
