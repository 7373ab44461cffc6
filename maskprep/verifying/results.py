"""What ``verify`` returns: one :class:`ProbeResult` per probe, attention implementation and feed
form, gathered in a :class:`VerifyResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "LEAK", "inconclusive", "skipped"]


@dataclass(frozen=True)
class ProbeResult:
    """One probe under one attention implementation and feed form.

    ``max_diff`` is the largest change seen at the positions that must not change, ``tolerance``
    the bound it was held to (for the worst row), ``positions`` how many positions were compared,
    ``worst_row`` the dataset index of the row closest to (or furthest past) its bound, and
    ``control_diff`` what the planted leak moved (``None`` where no control applies).
    ``leaking`` counts the rows past their tolerance (batches, for ``labels_loss``, whose loss is
    one number per batch). A ``LEAK`` names its remedy in ``note``; ``fix`` is that remedy's
    stable key where it is a setting (``pad_position_ids``, ``pack_form``, ``use_cache``) or a
    change elsewhere (``labels``: the data; ``attention_mask``: the model's code or the data).
    """

    probe: str
    attn_implementation: str
    form: str
    status: Status
    max_diff: float | None = None
    tolerance: float | None = None
    positions: int = 0
    worst_row: int | None = None
    control_diff: float | None = None
    leaking: int = 0
    note: str = ""
    elapsed_s: float = 0.0
    fix: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """Everything ``verify`` found. ``ok`` is false when any check reports a leak.

    ``rows`` are the probed rows' indices in the data, ``longest`` those of them added for their
    length; ``reach`` is the most positions any row of the data uses (its width, or a pack's
    longest document) and ``position_limit`` how many an absolute-position model holds (its table
    less a RoBERTa-style offset), where it has such a table. ``warnings`` are
    findings that are not leaks (rows beyond a rotary model's context length, …).
    ``total_rows`` is how many rows the data holds (:attr:`sampled` when fewer were probed);
    ``collate`` names the caller's collate function whose batches were probed (``""``:
    maskprep's collator).
    """

    model: str
    kind: str
    device: str
    dtype: str
    rows: tuple[int, ...]
    packed: bool
    checks: tuple[ProbeResult, ...]
    elapsed_s: float
    source: str = ""
    longest: tuple[int, ...] = ()
    reach: int | None = None
    position_limit: int | None = None
    warnings: tuple[str, ...] = ()
    total_rows: int | None = None
    collate: str = ""

    @property
    def sampled(self) -> bool:
        """Only some rows of the data were probed: a defect in one row is found only if that
        row was drawn."""
        return self.total_rows is not None and len(self.rows) < self.total_rows

    @property
    def ok(self) -> bool:
        """No check found a leak."""
        return not any(c.status == "LEAK" for c in self.checks)
