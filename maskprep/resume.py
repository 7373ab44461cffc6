"""Resuming a build where it stopped, so that a resume costs the work that remains.

A resumed build used to replay the whole input (reading, tokenizing and shaping it again) only to
skip the writes of the shards already there: 82 % of a build's time. Now, as each shard is
published, the build writes beside it a *resume point*, ``.resume-<shard>.json``: where the
batch in which the shard ended began (the input, the line, and how many bytes of that input had
been read with their sha256), everything the build had counted by then (records, rejects,
blank lines, what fitting did, the fill), what the shaper held (a pack's open row and window),
how many rows of that batch were already in the shard, and the rejected-record lines since the
previous point.

A resume (:func:`find_resume`) takes the last point whose shards, and every shard before it, are
there with the bytes the points record, made by the same build (config, tokenizer, part,
inputs), and whose inputs are unchanged up to it (every input before its input hashed whole, its
own input's bytes read so far hashed). The build then starts there: the inputs before the point
are read only to be hashed (the manifest records their sha256), the lines before it only
counted, never parsed or tokenized; the shaper and the counts are those of the point; the rows
already in shards are passed over. The shards, rejects and manifest are those of an undisturbed
build, byte for byte. Anything that does not hold (a point missing or from another build, a
shard changed, an input changed, standard input, which cannot be read twice) falls back to the
replay, which checks every shard as before.

Resume points are the build's own scratch: hidden from dataset readers (``.`` names), written
create-if-absent like shards (two attempts of one build write the same bytes), and removed with
the other leftovers once the output is committed (:mod:`maskprep.output.commit`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import storage
from ._version import __version__
from .config import BuildConfig
from .output.manifest import RecordedConfig
from .output.names import PLAIN, resume_name
from .output.shards import ShardInfo
from .shaping.fit import Piece
from .sources.records import InputStats, SourcePosition, SourceReader
from .tokenizing.loading import TokenizerInfo

RESUME_FORMAT = 1
#: A resume point larger than this (a pack window of very long documents) is not written: the
#: resume falls back to an earlier one, or to the replay.
LARGEST = 64 << 20


@dataclass(frozen=True)
class ResumePoint:
    """What a build wrote as ``shard`` was published: see the module notes."""

    build: str
    shard: ShardInfo
    restart: SourcePosition
    #: Rows the stream had passed when the restart batch began, and those of that batch that
    #: were already in shards (this one or earlier) when this one closed.
    rows: int
    skip: int
    read: dict[str, int]
    shaper: dict[str, Any]
    fill: dict[str, Any]
    #: Rejected-record lines, as the rejects file holds them, since the previous point.
    rejects: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The point as written (sorted keys: two attempts of one build write the same bytes)."""
        data = asdict(self)
        data["format"] = RESUME_FORMAT
        data["shaper"] = _plain(self.shaper)
        return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResumePoint | None:
        """The point in ``data``, or ``None`` for anything that is not one of this version's."""
        try:
            raw = json.loads(data)
            if raw.pop("format") != RESUME_FORMAT:
                return None
            start = raw["restart"]
            start["done"] = tuple(InputStats(**stats) for stats in start["done"])
            raw["restart"] = SourcePosition(**start)
            raw["shard"] = ShardInfo(**raw["shard"])
            raw["rejects"] = tuple(str(line) for line in raw["rejects"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _plain(value: Any) -> Any:
    """A shaper's snapshot as JSON: its pieces as lists."""
    if isinstance(value, Piece):
        return value.as_list()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def build_digest(config: BuildConfig, tokenizer: TokenizerInfo, files: list[str]) -> str:
    """What makes a build's output, as one hash: a resume point of another build is not used."""
    part = None if config.part is None else [config.part.index, config.part.count]
    made_of = {
        "config": RecordedConfig.from_build(config).raw,
        "tokenizer": asdict(tokenizer),
        "part": part,
        "inputs": files,
        "version": __version__,
        "format": RESUME_FORMAT,
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()


@dataclass
class Snapshot:
    """The build's state when a batch began (the restart of a resume point written during it)."""

    start: SourcePosition
    rows: int
    read: dict[str, int]
    shaper: dict[str, Any]
    fill: dict[str, Any]
    #: Rejected-record lines logged before this batch, since the previous point.
    rejects: int


@dataclass
class ResumeLog:
    """Writes a resume point as each shard is published (see the module notes). ``write`` puts
    a point's bytes under a name; a point that cannot be written is only a slower resume."""

    build: str
    write: Callable[[str, bytes], None]
    current: Snapshot | None = None
    #: Rejected-record lines since the previous point's restart batch began.
    lines: list[str] = field(default_factory=list)

    def batch(self, snapshot: Snapshot) -> None:
        """A batch begins, in this state."""
        snapshot.rejects = len(self.lines)
        self.current = snapshot

    def rejected(self, line: str) -> None:
        """A rejected record was written to the rejects file."""
        self.lines.append(line)

    def shard(self, shard: ShardInfo, rows_through: int) -> None:
        """``shard`` was published; ``rows_through`` rows are in shards now."""
        now = self.current
        if now is None:
            return
        point = ResumePoint(
            build=self.build,
            shard=shard,
            restart=now.start,
            rows=now.rows,
            skip=rows_through - now.rows,
            read=dict(now.read),
            shaper=now.shaper,
            fill=now.fill,
            rejects=tuple(self.lines[: now.rejects]),
        )
        del self.lines[: now.rejects]
        now.rejects = 0
        data = point.to_bytes()
        if len(data) <= LARGEST:
            self.write(resume_name(shard.path), data)


@dataclass(frozen=True)
class Resume:
    """Where a build resumes: the shards it takes up, the point it starts from, and the
    rejected-record lines of the input before it (every point's, in order)."""

    shards: list[ShardInfo]
    point: ResumePoint
    rejects: list[str]


def find_resume(
    location: storage.Location,
    shards: list[str],
    points: list[str],
    build: str,
    reader: SourceReader,
    shard_format: str,
) -> Resume | None:
    """The resume point an unfinished output at ``location`` (holding the plain ``shards`` and
    resume ``points``) can start from for the build ``build`` read by ``reader``; ``None`` when
    there is none (see the module notes)."""
    taken: list[ResumePoint] = []
    for index in range(len(shards)):
        shard = PLAIN.shard(index, shard_format)
        if shard not in shards or resume_name(shard) not in points:
            break
        try:
            point = ResumePoint.from_bytes(storage.read_bytes(location.join(resume_name(shard))))
        except storage.StorageError:
            break
        if point is None or point.build != build or point.shard.path != shard:
            break
        if storage.sha256_of(location.join(shard)) != point.shard.sha256:
            break
        taken.append(point)
    if not taken or not reader.unchanged_up_to(taken[-1].restart):
        return None  # none; or an input changed before the point: the replay says where
    lines = [line for point in taken for line in point.rejects]
    return Resume([p.shard for p in taken], taken[-1], lines)
