"""The shaper for a strategy: :class:`~.padded.PadShaper`, :class:`~.padded.BucketShaper`,
:class:`~.padded.UnpaddedShaper` or :class:`~.pack.PackShaper`."""

from __future__ import annotations

from ..config import ShapeConfig
from .pack import PackShaper
from .padded import BucketShaper, PadShaper, UnpaddedShaper

Shaper = PadShaper | BucketShaper | PackShaper | UnpaddedShaper


def make_shaper(config: ShapeConfig, pad_id: int, padding_side: str) -> Shaper:
    """The shaper for ``config.strategy``; packs are always padded on the right."""
    if config.strategy == "bucket":
        return BucketShaper(config, pad_id, padding_side)
    if config.strategy == "pack":
        return PackShaper(config, pad_id)
    if config.strategy == "none":
        return UnpaddedShaper(config, pad_id)
    return PadShaper(config, pad_id, padding_side)
