"""The manifest of a build, assembled from what each stage counted: the read side's records and
rejects (:class:`~maskprep.sources.policy.RejectPolicy`), the inputs' own counts, what fitting
did (the shaper's :class:`~maskprep.shaping.fit.ShapeStats`), the fill, and the rows and tokens
of the shards written. Also what makes a finished stream unusable as an output."""

from __future__ import annotations

from ..config import BuildConfig
from ..shaping.fill import FillStats
from ..shaping.fit import ShapeStats
from ..sources.policy import RejectPolicy
from ..sources.records import SourceReader
from ..tokenizing.loading import TokenizerInfo
from .manifest import Manifest, Part, RecordedConfig, RejectsFile, Totals
from .shards import ShardInfo


def build_totals(
    policy: RejectPolicy, reader: SourceReader, shape: ShapeStats, shards: list[ShardInfo]
) -> Totals:
    """The build's totals: what was read, what fitting did, and what the shards hold."""
    return Totals(
        records_read=policy.read,
        blank_lines=sum(s.blank_lines for s in reader.stats),
        records_rejected=policy.rejected,
        documents_without_labels=policy.without_labels,
        rows_written=sum(s.rows for s in shards),
        positions=sum(s.positions for s in shards),
        real_tokens=sum(s.real_tokens for s in shards),
        label_tokens=sum(s.label_tokens for s in shards),
        shape=shape,
    )


def unusable(totals: Totals, reader: SourceReader, config: BuildConfig) -> str | None:
    """Why a build that read nothing, or could use nothing it read, fails; ``None`` when it
    wrote rows, every record read accounted for (an internal error otherwise). A part may be
    empty (more parts than lines): the merge checks the whole."""
    why = _unusable(totals, reader, config)
    if why is None and totals.records_read != totals.accounted:
        raise AssertionError(
            f"internal error: {totals.records_read} records read but "
            f"{totals.accounted} accounted for"
        )
    return why


def _unusable(totals: Totals, reader: SourceReader, config: BuildConfig) -> str | None:
    if config.part is not None:
        return None
    if totals.records_read == 0:
        return f"{input_names(reader)}: no documents in the input"
    if totals.rows_written == 0:
        return (
            f"{input_names(reader)}: no document could be used ({totals.records_rejected} "
            f"rejected, {totals.shape.documents_dropped} dropped as too long)"
        )
    return None


def input_names(reader: SourceReader) -> str:
    """The input, or how many there are, for a one-line message."""
    names = [s.path for s in reader.stats]
    return names[0] if len(names) == 1 else f"{len(names)} inputs"


def build_manifest(
    config: BuildConfig,
    info: TokenizerInfo,
    reader: SourceReader,
    shards: list[ShardInfo],
    totals: Totals,
    fill: FillStats,
    rejects: RejectsFile | None,
) -> Manifest:
    """The manifest of a finished build of ``config``."""
    return Manifest(
        config=RecordedConfig.from_build(config),
        tokenizer=info,
        inputs=tuple(reader.stats),
        shards=tuple(shards),
        totals=totals,
        fill=fill.result(totals.rows_written, totals.positions, totals.real_tokens),
        part=_part(config, reader),
        rejects=rejects,
    )


def _part(config: BuildConfig, reader: SourceReader) -> Part | None:
    if config.part is None:
        return None
    assert reader.planned is not None and reader.ranges is not None  # a part plans its reads
    return Part(config.part.index, config.part.count, tuple(reader.ranges), tuple(reader.planned))
