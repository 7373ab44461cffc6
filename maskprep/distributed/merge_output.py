"""The output side of ``merge``: each part's shards placed in the merged output under consecutive
names, and their rejects joined, without a complete-looking file ever being partial.

Locally a shard is hard-linked (no bytes copied; a link never replaces a name and never follows
a link), and copied through an atomic writer across filesystems; on an object store it is copied
server-side. Every placement is create-if-absent and checked against the sha256 the part's
manifest records (:meth:`maskprep.output.commit.OutputSession.place`). A part's shard must be a
regular file: a symbolic link in a part is refused, never linked into the output.

A part's rejects file is read only as a regular file opened without following a link and without
blocking (a named pipe planted there is refused, never waited on), and its bytes are held to the
size and sha256 its manifest records before they are joined.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from .. import storage
from ..errors import ConfigError, DataError
from ..output.manifest import RejectsFile
from ..output.shards import ShardInfo
from .part_output import PartOutput

if TYPE_CHECKING:
    from ..output.commit import OutputSession


@dataclass
class PlacedShards:
    """Shards placed in the merged output so far, how they got there, and its rejects file."""

    shards: list[ShardInfo] = field(default_factory=list)
    linked: int = 0
    copied: int = 0
    rejects: RejectsFile | None = None


def place_parts(session: OutputSession, parts: list[PartOutput]) -> PlacedShards:
    """Place every part's shards (part 0's first) and, with the ``skip`` policy, their joined
    rejects in ``session.target``, under the session's names."""
    placed = PlacedShards()
    config = parts[0].manifest.config
    for part in parts:
        for shard in part.manifest.shards:
            name = session.names.shard(len(placed.shards), config.shard_format)
            if session.place(name, part.directory.join(shard.path), shard.sha256):
                placed.linked += 1
            else:
                placed.copied += 1
            placed.shards.append(dataclasses.replace(shard, path=name))
    if config.on_bad_record == "skip":
        placed.rejects = _join_rejects(session, parts)
    return placed


def _join_rejects(session: OutputSession, parts: list[PartOutput]) -> RejectsFile:
    """The parts' rejects files, one after the other, as one file written atomically; each
    part's bytes are checked against its manifest's record of them."""
    writer = session.writer(session.names.rejects)
    try:
        for part in parts:
            _copy_rejects(part, writer)
        result = session.publish(writer)
    finally:
        writer.abort()  # nothing, once published
    assert result.sha256 is not None
    return RejectsFile(result.location.name, result.size, result.sha256)


def _copy_rejects(part: PartOutput, writer: storage.AtomicWriter) -> None:
    recorded = part.manifest.rejects
    if recorded is None:
        raise DataError(
            f"{part.directory}: built with on_bad_record skip, but its manifest records no "
            "rejects file; rebuild the part"
        )
    source = part.directory.join(recorded.path)
    size = lines = 0

    def copy(block: bytes) -> None:
        nonlocal size, lines
        size += len(block)
        lines += block.count(b"\n")
        writer.write(block)

    with _open_rejects(source) as handle:
        # One byte past the record: a longer file is told from one of the recorded size.
        digest = storage.sha256_stream(handle, recorded.size + 1, each=copy)
    if size != recorded.size or digest != recorded.sha256:
        raise DataError(
            f"{source}: does not match the size and sha256 its part's manifest records (the "
            "rejects file was changed after the part was built); rebuild the part"
        )
    if lines != part.manifest.totals.records_rejected:
        raise DataError(
            f"{source}: holds {lines} rejected records, but its part's manifest counts "
            f"{part.manifest.totals.records_rejected}; rebuild the part"
        )


def _open_rejects(location: storage.Location) -> BinaryIO:
    """A part's rejects file opened for reading: only a regular file reached without a symbolic
    link, opened without blocking (a named pipe would wait for a writer forever)."""
    try:
        return storage.open_regular(location)
    except storage.NotFound:
        raise ConfigError(
            f"{location}: rejects file its part's manifest records is missing"
        ) from None
    except storage.StorageRequestError as exc:
        raise ConfigError(
            f"{location}: {exc.detail}; a part's rejects file must be a regular file"
        ) from None
