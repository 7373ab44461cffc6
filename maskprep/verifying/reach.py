"""Rows against the model's positions, before any forward pass: a row beyond an absolute position
table is an error (the lookup would fail, on a GPU with a device-side assert); beyond a rotary
model's context or a tokenizer's ``model_max_length``, a warning."""

from __future__ import annotations

from ..errors import DataError
from ..reading.reach import PositionLimit, beyond_message


def reach_findings(
    model: PositionLimit | None,
    tokenizer: PositionLimit | None,
    reach: int,
    reach_row: int,
    packed: bool,
    width: int,
) -> tuple[str, ...]:
    """Warnings about how far rows reach; raises :class:`~maskprep.errors.DataError` for a row
    the ``model``'s position table cannot hold.

    ``reach`` is the most positions any row uses (``reach_row``), ``width`` the widest row: a
    pack wider than an absolute table whose documents fit it runs only when fed ``position_ids``
    that restart at each document, as maskprep's collator feeds it.
    """
    found = []
    for limit in (model, tokenizer):
        if limit is None or reach <= limit.positions:
            continue
        if limit.hard:
            raise DataError(beyond_message(reach_row, reach, packed, limit))
        found.append(beyond_message(reach_row, reach, packed, limit))
        break  # one warning says it; the model's own limit first
    if model is not None and model.hard and packed and width > model.positions >= reach:
        found.append(
            f"rows are {width} positions wide and {model.source}: their documents fit when fed "
            "position_ids that restart at each document (as maskprep's collator feeds them), a "
            "collator that numbers the positions of the whole row would fail"
        )
    return tuple(found)
