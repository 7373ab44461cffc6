"""The output side of ``merge``: each part's shards placed in the merged output under consecutive
names, and their rejects joined, without a complete-looking file ever being partial.

Locally a shard is hard-linked (no bytes copied; ``os.link`` never replaces a name and never
follows a link), and copied through an atomic writer across filesystems; on an object store it
is copied server-side (S3 CopyObject: the copy appears whole or not at all). A part's shard must
be a regular file: a symbolic link in a part is refused, never linked into the output. Every
placed shard is hashed (as it is copied, or read back once placed) and checked against the
sha256 its part recorded. Whatever fails midway, :meth:`PlacedShards.abort` removes every shard
placed so far, including one whose placement a signal interrupted.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import storage
from ..errors import ConfigError, DataError
from ..output.names import REJECTS_NAME, REJECTS_NAMES, shard_name
from ..output.shards import ShardInfo, sha256_of

if TYPE_CHECKING:
    from ..output.session import OutputSession
    from .merge import PartOutput

#: Link errors after which a shard is copied instead: another filesystem, a filesystem without
#: hard links, too many links to one file.
_COPY_INSTEAD = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


@dataclass
class PlacedShards:
    """Shards placed in the merged output so far, and how they got there."""

    target: storage.Location
    shards: list[ShardInfo] = field(default_factory=list)
    linked: int = 0
    copied: int = 0
    #: Set before a placement starts, so an abort removes it whichever side of it a signal fell.
    placing: storage.Location | None = None

    def abort(self) -> None:
        """Remove every shard (and the rejects file) this merge placed."""
        made = [self.target.join(s.path) for s in self.shards]
        if self.placing is not None:
            made.append(self.placing)
        made.append(self.target.join(REJECTS_NAME))
        storage.delete_many(made)
        self.shards = []
        self.placing = None


def place_parts(session: OutputSession, parts: list[PartOutput]) -> PlacedShards:
    """Place every part's shards (part 0's first) and rejects in ``session.target``."""
    placed = PlacedShards(session.target)
    config = parts[0].manifest.config
    try:
        for part in parts:
            for shard in part.manifest.shards:
                session.keepalive()
                name = shard_name(len(placed.shards), config.shard_format)
                source = part.directory.join(shard.path)
                target = session.target.join(name)
                placed.placing = target
                if _place_checked(source, target, shard.sha256):
                    placed.linked += 1
                else:
                    placed.copied += 1
                placed.shards.append(dataclasses.replace(shard, path=name))
                placed.placing = None
        if config.on_bad_record == "skip":
            _join_rejects(parts, session.target.join(REJECTS_NAME))
    except BaseException:
        placed.abort()
        raise
    return placed


def _place_checked(source: storage.Location, target: storage.Location, sha256: str) -> bool:
    """Place ``source`` as ``target`` and check its bytes against ``sha256``; True when
    hard-linked."""
    linked, digest = _place(source, target)
    if digest != sha256:
        raise DataError(
            f"{source}: does not match the sha256 its part's manifest records (the shard was "
            "changed after the part was built); rebuild the part"
        )
    return linked


def _place(source: storage.Location, target: storage.Location) -> tuple[bool, str]:
    """Hard-link a local shard, else copy it (server-side within one object store); whether it
    was linked, and the sha256 of the bytes placed."""
    if source.is_local and target.is_local:
        try:
            info = os.lstat(source.path)
        except FileNotFoundError:
            raise ConfigError(f"{source}: shard listed in its part's manifest is missing") from None
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{source}: shard listed in its part's manifest is not a file")
        try:
            hard_link(source.path, target.path)
            return True, sha256_of(target)
        except OSError as exc:
            if exc.errno not in _COPY_INSTEAD:
                raise
    elif not storage.exists(source):
        raise ConfigError(f"{source}: shard listed in its part's manifest is missing")
    written = storage.copy(source, target)
    # A server-side copy moves no bytes through this process: its result is read back once.
    return False, written.sha256 or sha256_of(target)


def hard_link(source: str, target: str) -> None:
    """``target`` as a new name of the file ``source`` (never following a link, never
    replacing a name)."""
    os.link(source, target, follow_symlinks=False)


def _join_rejects(parts: list[PartOutput], target: storage.Location) -> None:
    """The parts' rejects files (under the current or the earlier name), one after the other,
    as one file written atomically."""
    with storage.write(target) as writer:
        for part in parts:
            for name in REJECTS_NAMES:
                source = part.directory.join(name)
                if storage.exists(source):
                    with storage.open_read(source) as reader:
                        shutil.copyfileobj(reader, writer, storage.operations.COPY_CHUNK)
                    break
