"""The remedy a LEAK names never suggests the feed that leaked."""

from __future__ import annotations

import pytest

from maskprep.verifying.results import Feed, remedy


def _feed(form: str, causal: bool) -> Feed:
    return Feed(
        packed=True, left_padded=False, position_ids=True, form=form, causal=causal, absolute=False
    )


@pytest.mark.parametrize("probe", ["cross_document", "unpadded_reference"])
@pytest.mark.parametrize(
    ("form", "causal", "suggested", "not_suggested"),
    [
        # Negative control: from the leaky 2D form, position_ids is a real way out for a decoder.
        ("mask2d", True, "'position_ids' to a decoder", None),
        ("position_ids", True, "form='mask4d'", "'position_ids' to"),
        ("position_ids", False, "form='mask4d'", "'position_ids' to"),
    ],
)
def test_a_pack_leak_names_a_form_other_than_the_one_that_leaked(
    probe, form, causal, suggested, not_suggested
) -> None:
    key, text = remedy(probe, _feed(form, causal))
    assert key == "pack_form"
    assert suggested in text
    if not_suggested:
        assert not_suggested not in text
