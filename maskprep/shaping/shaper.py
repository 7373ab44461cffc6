"""The shaper for a strategy: :class:`~.padded.PaddedShaper` for ``pad``, ``bucket`` and
``none``, :class:`~.pack.PackShaper` for ``pack``."""

from __future__ import annotations

from ..config import ShapeConfig
from .pack import PackShaper
from .padded import PaddedShaper

Shaper = PaddedShaper | PackShaper


def make_shaper(config: ShapeConfig, pad_id: int, padding_side: str) -> Shaper:
    """The shaper for ``config.strategy``; packs are always padded on the right."""
    if config.strategy == "pack":
        return PackShaper(config, pad_id)
    return PaddedShaper(config, pad_id, padding_side)
