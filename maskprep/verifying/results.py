"""The report: what ``verify`` returns (one :class:`ProbeResult` per probe, attention
implementation and feed form, gathered in a :class:`VerifyResult`), how a probe's per-row
measurements (a :class:`Tally`) become its verdict, and the fix a ``LEAK`` names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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


def data_check(probe: str, status: Status, **fields: Any) -> ProbeResult:
    """A result that runs once, under no attention implementation or form (the checks on the
    data and on what a collate function feeds, made without a forward pass)."""
    return ProbeResult(probe=probe, attn_implementation="-", form="-", status=status, **fields)


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
    """Per-row measurements of one probe, accumulated over batches."""

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
        """Add a note to the probe, once."""
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

    def verdict(
        self, probe: str, impl: str, form: str, skip_reason: str, remedy: tuple[str, str]
    ) -> ProbeResult:
        """The probe's result: LEAK past tolerance (its note naming the ``remedy``: a fix key
        and its words), inconclusive when the planted leak was never seen, else pass."""
        import numpy as np

        common: dict[str, Any] = {"probe": probe, "attn_implementation": impl, "form": form}
        if self.positions == 0:
            return ProbeResult(
                **common, status="skipped", note=skip_reason, elapsed_s=self.elapsed_s
            )
        diffs, tols = np.array(self.diffs), np.array(self.tols)
        ratio = diffs / tols
        worst = int(np.argmax(ratio))
        notes = list(self.notes)
        fix = ""
        status: Status = "pass"
        if ratio[worst] > 1:
            status = "LEAK"
            fix, words = remedy
            notes.insert(0, f"{_LEAK_HINTS[probe]}; fix: {words}" if words else _LEAK_HINTS[probe])
        elif self.controls and not self.control_seen:
            status = "inconclusive"
            notes.insert(0, "the planted leak did not move outputs past the tolerance")
        return ProbeResult(
            **common,
            status=status,
            max_diff=float(diffs.max()),
            tolerance=float(tols[worst]),
            positions=self.positions,
            worst_row=self.rows[worst],
            control_diff=max(self.controls) if self.controls else None,
            leaking=int((ratio > 1).sum()),
            note="; ".join(notes),
            elapsed_s=self.elapsed_s,
            fix=fix,
        )


_PACK_FORM = (
    "pack_form",
    "feed packs form='mask4d' (or 'position_ids' to a decoder): Collator.for_output picks the "
    "form this model takes",
)
_LABELS = (
    "labels",
    "labels must be IGNORE_INDEX at padding and at each packed document's first token, and not "
    "shifted: rebuild the data with maskprep build, or let Collator(check_labels=True) refuse such "
    "rows",
)


@dataclass(frozen=True)
class Feed:
    """What a remedy depends on: the rows (``packed``, some ``left_padded``) and the feed (with
    ``position_ids``, the pack ``form``) of a model (``causal``, ``absolute`` positions)."""

    packed: bool
    left_padded: bool
    position_ids: bool
    form: str
    causal: bool
    absolute: bool


def remedy(probe: str, feed: Feed) -> tuple[str, str]:
    """``(key, text)``: the :attr:`ProbeResult.fix` key and the words naming the fix for a leak
    that ``probe`` found on maskprep's collator's ``feed``."""
    if probe in ("labels_loss", "labels_gradient"):
        return _LABELS
    if probe in ("unpadded_reference", "cross_document") and feed.packed:
        if feed.form == "mask2d":
            return _PACK_FORM
        if feed.form == "position_ids":
            # The form itself leaked, so suggesting it (as for mask2d) would send the user round.
            # Why it leaked depends on the model and the transformers release: say what was seen.
            cause = "a KV cache is on, or " if feed.causal else ""
            return (
                "pack_form",
                f"this {'decoder' if feed.causal else 'encoder'} does not keep packed documents "
                f"apart by their position_ids here ({cause}its attention builds no block mask "
                "from them in this transformers version): feed packs form='mask4d'",
            )
    shifted = feed.left_padded and feed.absolute and not feed.position_ids
    if probe == "unpadded_reference" and shifted:
        return (
            "pad_position_ids",
            "left padding shifts an absolute-position model's positions: feed position_ids "
            "counted over real tokens (Collator(pad_position_ids=True), as Collator.for_output "
            "does for this model)",
        )
    if probe == "causal":
        return (
            "attention_mask",
            "the model's forward replaces its causal mask (a bidirectional mask given or built)",
        )
    text = (
        "the model does not apply the attention mask it is given: check its forward (a wrapper "
        "or its own code dropping attention_mask)"
    )
    if feed.causal and feed.left_padded and not feed.packed:
        text += "; padded on the right, a decoder's real tokens never see the padding"
    return "attention_mask", text


def collator_remedy(probe: str, source: str, fed: str, packed: bool) -> tuple[str, str]:
    """``(key, text)`` for a leak ``probe`` found in a caller's collate function's batches of
    the output at ``source``; ``fed`` says what the function gave the model (``attention_mask``
    2D, ``position_ids``, …)."""
    call = f"Collator.for_output({source!r}, model=model)"
    why = {
        "unpadded_reference": (
            "which builds the mask from the output's documents for this model (causal blocks "
            "for a decoder, full blocks for an encoder)"
            if packed
            else "which masks padding and numbers positions as this model needs"
        ),
        "cross_document": "which keeps the documents apart",
    }.get(probe, "whose labels are the output's" if probe.startswith("labels") else None)
    text = f"train with {call}" + (f", {why}" if why else "")
    return "collator", f"{text} (the feed gave {fed})" if fed else text
