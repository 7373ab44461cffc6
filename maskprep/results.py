"""What ``maskprep.build`` reports: :class:`Progress` while it runs, :class:`Totals` (every count
of a build, as its manifest records them) and :class:`BuildResult` at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .output.decoding import decode_fields
from .shaping.fill import ratio
from .shaping.fit import ShapeStats
from .shaping.shaper import LostTokens

if TYPE_CHECKING:
    from .output.manifest import Manifest
    from .output.shards import ShardInfo


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running build, handed to the ``on_progress`` callback after each batch."""

    records: int
    rows: int
    real_tokens: int
    bytes_read: int
    bytes_total: int | None
    elapsed_s: float


@dataclass(frozen=True)
class Totals:
    """Every count of a build. Each record read ends up written, rejected or dropped:
    ``records_read == shape.documents_written + shape.documents_dropped + records_rejected``
    (see :attr:`accounted`). Rows, positions, real and label tokens are the written shards'."""

    records_read: int = 0
    blank_lines: int = 0
    records_rejected: int = 0
    documents_without_labels: int = 0
    rows_written: int = 0
    positions: int = 0
    real_tokens: int = 0
    label_tokens: int = 0
    shape: ShapeStats = field(default_factory=ShapeStats)

    @property
    def pad_tokens(self) -> int:
        """Positions that hold padding."""
        return self.positions - self.real_tokens

    @property
    def fill(self) -> float:
        """Real tokens over positions."""
        return ratio(self.real_tokens, self.positions)

    @property
    def accounted(self) -> int:
        """Records that were written, dropped or rejected; equals ``records_read`` when every
        record is accounted for."""
        shape = self.shape
        return shape.documents_written + shape.documents_dropped + self.records_rejected

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for the manifest and ``--json``, with the derived counts and fractions."""
        return {
            "records_read": self.records_read,
            "blank_lines": self.blank_lines,
            "records_rejected": self.records_rejected,
            "documents_without_labels": self.documents_without_labels,
            **self.shape.as_dict(),
            "rows_written": self.rows_written,
            "positions": self.positions,
            "real_tokens": self.real_tokens,
            "pad_tokens": self.pad_tokens,
            "label_tokens": self.label_tokens,
            "fill": self.fill,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str, where: str = "totals") -> Totals:
        """Read the flat dict :meth:`as_dict` writes (derived values are recomputed)."""
        shape = decode_fields(ShapeStats, data, path, where)
        return decode_fields(cls, data, path, where, shape=shape)

    @classmethod
    def sum(cls, items: Sequence[Totals]) -> Totals:
        """The totals of the parts ``items`` of one build taken together (``merge``)."""
        shape = ShapeStats(
            **{f.name: sum(getattr(t.shape, f.name) for t in items) for f in fields(ShapeStats)}
        )
        counts = {
            f.name: sum(getattr(t, f.name) for t in items) for f in fields(cls) if f.name != "shape"
        }
        return cls(**counts, shape=shape)


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: where (a path, or the URL of an object-store output), the
    manifest written, and how long it took."""

    output: Path | str
    manifest: Manifest
    elapsed_s: float
    #: With resume: complete shards of the interrupted build that were checked and kept.
    reused_shards: int = 0
    #: The tokenizer came from the tokenizer cache (transformers was not loaded).
    tokenizer_cached: bool = False

    @property
    def totals(self) -> Totals:
        """Every count of the build (the manifest's)."""
        return self.manifest.totals

    @property
    def shards(self) -> tuple[ShardInfo, ...]:
        """The shards written, in order (the manifest's)."""
        return self.manifest.shards

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user should know about the output that is not an error, one line each
        (see :func:`build_warnings`)."""
        return build_warnings(self.manifest)

    @classmethod
    def finished(
        cls, directory: Path | str, manifest: Manifest, elapsed_s: float = 0.0
    ) -> BuildResult:
        """The result of an output that was already finished, returned as it is: every shard
        counts as reused."""
        return cls(directory, manifest, elapsed_s, reused_shards=len(manifest.shards))


#: A build that loses more than this share of the tokens it read to ``overflow`` warns.
TRUNCATION_WARNING = 0.05


def build_warnings(manifest: Manifest) -> tuple[str, ...]:
    """Warnings about a finished output, from its manifest: more than
    :data:`TRUNCATION_WARNING` of the tokens read lost to ``overflow``, and rows allowed longer
    than the tokenizer's ``model_max_length`` (where the tokenizer sets one)."""
    warnings = []
    max_length = manifest.config.max_length
    lost = LostTokens.of(manifest.totals.shape, manifest.totals.real_tokens)
    if lost.past(TRUNCATION_WARNING):
        warnings.append(
            f"{lost.describe(max_length)}: a longer max_length keeps them, or overflow 'split' "
            "(windows of max_length) for plain text"
        )
    limit = manifest.tokenizer.model_max_length
    if limit is not None and max_length > limit:
        warnings.append(
            f"max_length {max_length} exceeds the tokenizer's model_max_length {limit}: rows "
            "longer than the model's positions fail on absolute-position models and run on "
            "untrained positions on rotary ones; check the output against the model (maskprep "
            "verify)"
        )
    return tuple(warnings)
