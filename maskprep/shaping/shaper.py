"""The shaper for a strategy: :class:`~.rows.PaddedShaper` for ``pad``, ``bucket`` and
``none``, :class:`~.rows.PackShaper` for ``pack``; and the tokens shaping lost to ``overflow``
(:class:`LostTokens`), held to ``max_truncated``."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ShapeConfig
from ..errors import DataError
from .fill import ratio
from .fit import ShapeStats
from .rows import PackShaper, PaddedShaper

Shaper = PaddedShaper | PackShaper


def make_shaper(config: ShapeConfig, pad_id: int, padding_side: str) -> Shaper:
    """The shaper for ``config.strategy``; packs are always padded on the right."""
    if config.strategy == "pack":
        return PackShaper(config, pad_id)
    return PaddedShaper(config, pad_id, padding_side)


@dataclass(frozen=True)
class LostTokens:
    """The tokens a build read and lost to ``overflow``: cut by truncation, or dropped with their
    documents. ``read`` is every token of every document written or dropped (the frame
    included), as encoded: the real tokens written plus those lost (with ``overflow`` split no
    token is lost)."""

    lost: int
    read: int
    documents_truncated: int
    documents_dropped: int

    @classmethod
    def of(cls, shape: ShapeStats, real_tokens: int) -> LostTokens:
        """What ``shape`` (the fitting counts) lost of ``real_tokens`` written plus the lost."""
        lost = shape.tokens_truncated + shape.tokens_dropped
        return cls(lost, real_tokens + lost, shape.documents_truncated, shape.documents_dropped)

    @property
    def share(self) -> float:
        """Lost over read (0 when nothing was read)."""
        return ratio(self.lost, self.read)

    def past(self, limit: float) -> bool:
        """Whether more than ``limit`` (a fraction) of the tokens read were lost."""
        return self.lost > limit * self.read

    def describe(self, max_length: int) -> str:
        """One line: how much was lost, how, and at what length."""
        how = []
        if self.documents_truncated:
            how.append(f"{self.documents_truncated:,} documents truncated")
        if self.documents_dropped:
            how.append(f"{self.documents_dropped:,} dropped as too long")
        return (
            f"{self.share:.1%} of the tokens read ({self.lost:,} of {self.read:,}) were lost to "
            f"max_length {max_length} ({', '.join(how)})"
        )


class TruncationPastLimit(DataError):
    """More of the tokens read were lost to ``overflow`` than ``max_truncated`` allows: the build
    fails as a bad record under the ``fail`` policy does (no manifest; its complete shards stay
    for a resume)."""


def check_truncation(config: ShapeConfig, lost: LostTokens, where: str) -> None:
    """Raise :class:`TruncationPastLimit` when more tokens were lost than the limit allows."""
    limit = config.max_truncated
    if limit is None or not lost.past(limit):
        return
    raise TruncationPastLimit(
        f"{where}: {lost.describe(config.max_length)}, more than the max_truncated limit "
        f"of {100 * limit:g}%; the output is left unfinished (no manifest)"
    )
