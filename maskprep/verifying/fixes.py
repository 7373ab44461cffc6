"""What to change when a probe finds a leak: the remedy a ``LEAK`` names, from what the rows and
the feed were."""

from __future__ import annotations

from dataclasses import dataclass

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
    """``(key, text)``: the :attr:`~.results.ProbeResult.fix` key and the words naming the fix for a
    leak that ``probe`` found on ``feed``."""
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


#: The fix key of every leak found in a caller's collate function's batches.
COLLATOR = "collator"


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
    return COLLATOR, f"{text} (the feed gave {fed})" if fed else text
