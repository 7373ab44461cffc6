"""Directories and prefixes as wholes: what is at the top of one (links reported as links, never
followed), making and removing them, and a record a live process holds in one.

The one rule for symbolic links (docs/storage.md): a walk of inputs follows a link to a
directory once (:func:`maskprep.storage.walk`); an output is never written, read or removed
through one: :func:`entries` reports a link as :attr:`Kind.LINK` (its target never looked at),
and :func:`remove_tree` removes a link itself, not what it points to. On an object store there
are no links.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import shutil
import stat
from dataclasses import dataclass

from .errors import NotFound, StorageRequestError, translate
from .location import Location
from .operations import delete, delete_many, put_if_absent, walk


class Kind(enum.Enum):
    """What a directory entry is (symbolic links are never followed to find out)."""

    FILE = "file"
    DIRECTORY = "directory"
    LINK = "symbolic link"
    OTHER = "special file"


@dataclass(frozen=True)
class Entry:
    """One entry at the top of a directory or prefix."""

    name: str
    kind: Kind


def entries(location: Location) -> list[Entry] | None:
    """The entries at the top of a directory (a prefix: its objects, and the first part of
    deeper keys as directories), sorted by name; ``None`` when there is nothing there. A local
    path that is not a directory, or an object at the prefix itself, is refused. The directory
    itself may be a link (``out -> /scratch/out``); nothing inside it is followed."""
    if location.is_local:
        return _local_entries(location)
    try:
        found = list(walk(location, temporaries=True))
    except NotFound as exc:
        if "bucket" in exc.detail:
            raise
        return None
    top: dict[str, Entry] = {}
    for info in found:
        relative = info.location.path[len(location.path) :].lstrip("/")
        if not relative and info.size == 0:
            continue  # a "folder" marker (an empty object named like the prefix)
        if not relative:
            raise StorageRequestError(location.url, "exists and is not a prefix (an object)")
        name, _, rest = relative.partition("/")
        top.setdefault(name, Entry(name, Kind.DIRECTORY if rest else Kind.FILE))
    return sorted(top.values(), key=lambda e: e.name)


def _local_entries(location: Location) -> list[Entry] | None:
    try:
        info = os.stat(location.path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageRequestError(location.url, f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StorageRequestError(location.url, "exists and is not a directory")
    try:
        with os.scandir(location.path) as found:
            return sorted((Entry(e.name, _kind(e)) for e in found), key=lambda e: e.name)
    except OSError as exc:
        raise StorageRequestError(location.url, f"cannot be read: {exc.strerror}") from None


def _kind(entry: os.DirEntry[str]) -> Kind:
    if entry.is_symlink():
        return Kind.LINK
    if entry.is_dir(follow_symlinks=False):
        return Kind.DIRECTORY
    return Kind.FILE if entry.is_file(follow_symlinks=False) else Kind.OTHER


def is_link(location: Location) -> bool:
    """Whether ``location`` is a symbolic link (never, on an object store)."""
    return location.is_local and os.path.islink(location.path)


def create_directory(location: Location) -> bool:
    """Make a local directory (and its parents) if it is not there; whether this call made it.
    Object stores need none (``False``). A failure is the ``OSError`` itself: the caller says
    what it was doing."""
    if not location.is_local:
        return False
    path = location.path
    if os.path.isdir(path):
        return False
    if os.path.lexists(path):
        raise StorageRequestError(location.url, "exists and is not a directory")
    try:
        os.makedirs(path)
    except FileExistsError:
        return False  # another process made it between the check and here
    return True


def remove_empty_directory(location: Location) -> None:
    """Remove a local directory if it is empty (nothing to do on object stores)."""
    if location.is_local:
        with contextlib.suppress(OSError):
            os.rmdir(location.path)  # fails, as it should, unless it is empty


def remove_tree(location: Location) -> None:
    """Remove a directory or prefix and everything below it; a link is removed itself, never
    followed. Absent already is fine."""
    if not location.is_local:
        with contextlib.suppress(NotFound):
            delete_many([info.location for info in walk(location, temporaries=True)])
        return
    if os.path.isdir(location.path) and not os.path.islink(location.path):
        try:
            shutil.rmtree(location.path)  # never follows a link inside
        except FileNotFoundError:
            return
        except OSError as exc:
            raise translate(exc, location.url) from None
    else:
        delete(location)


class Held:
    """A small object this process made and holds (:func:`hold`): locally ``flock``-ed for as
    long as the process lives (the kernel lets go when it dies), so that another process can
    tell a live holder from a dead one (:func:`is_held`)."""

    def __init__(self, location: Location, data: bytes) -> None:
        self.location = location
        self._fd: int | None = None
        if not location.is_local:
            put_if_absent(location, data)
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(location.path, flags, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.write(self._fd, data)
        except OSError:
            self.release()
            raise  # the caller says what it was doing

    def release(self) -> None:
        """Remove the object (it is this process's own) and let go of its lock."""
        with contextlib.suppress(Exception):
            delete(self.location)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def hold(location: Location, data: bytes) -> Held:
    """Create ``location`` (only if absent) with ``data`` and hold it: see :class:`Held`."""
    return Held(location, data)


def is_held(location: Location) -> bool | None:
    """Whether another live process holds ``location`` (locally: its ``flock``); ``False`` for a
    local file nobody holds (its holder died) or that is gone; ``None`` on an object store, where
    nobody can tell (and no clock is trusted to)."""
    if not location.is_local:
        return None
    try:
        fd = os.open(location.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
    finally:
        os.close(fd)
    return False
