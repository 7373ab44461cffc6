"""What ``maskprep.build`` reports: :class:`Progress` while it runs and :class:`BuildResult` at
the end (its :class:`~maskprep.output.manifest.Totals`, every count of a build, live with the
manifest that records them; ``maskprep.results.Totals`` is the same class)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .output.manifest import Manifest, Totals
from .output.shards import ShardInfo
from .shaping.shaper import LostTokens


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
