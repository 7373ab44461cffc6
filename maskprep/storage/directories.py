"""Directories and prefixes: what is under one (a listing, a walk, a glob), what is at its top
(links reported as links, never followed), making and removing them, and a record a live
process holds in one.

The one rule for symbolic links (docs/storage.md): a walk of inputs follows a link to a
directory once (:func:`walk`); an output is never written, read or removed through one:
:func:`entries` reports a link as :attr:`Kind.LINK` (its target never looked at), and
:func:`remove_tree` removes a link itself, not what it points to. On an object store there are
no links, and a directory is a key prefix, there when some key is under it.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import glob as _glob
import os
import posixpath
import shutil
import stat as _stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePath

from .errors import NotFound, StorageRequestError, translate, translated
from .location import Location, ObjectInfo, filesystem, is_temporary
from .operations import delete, delete_many, stat
from .writers import fsync_directory, put_if_absent


def _child(location: Location, name: str) -> Location:
    """A path found under ``location`` (by a listing, a walk or a glob) as a location."""
    return Location(location.protocol, name.rstrip("/"), location.options)


def listdir(location: Location) -> list[ObjectInfo]:
    """What is directly under a directory or prefix, sorted by name, writers' temporaries
    left out; :class:`NotFound` if there is nothing there."""
    found = []
    if location.is_local:
        try:
            with os.scandir(location.path) as entries:
                found = [
                    ObjectInfo.from_stat(location.join(entry.name), entry.stat())
                    for entry in entries
                    if not is_temporary(entry.name)
                ]
        except NotADirectoryError:
            raise StorageRequestError(location.url, "not a directory") from None
        except OSError as exc:
            raise translate(exc, location.url) from None
    else:
        fs = filesystem(location)
        with translated(location.url):
            listed = fs.ls(location.path, detail=True)
        for entry in listed:
            name = entry["name"].rstrip("/")
            if name != location.path and not is_temporary(posixpath.basename(name)):
                found.append(ObjectInfo.from_fsspec(_child(location, name), entry))
    return sorted(found, key=lambda info: info.name)


def walk(
    location: Location,
    *,
    temporaries: bool = False,
    skip_directory: Callable[[list[str]], bool] | None = None,
) -> Iterator[ObjectInfo]:
    """Every file or object below a directory or prefix, in path order; writers' temporaries
    left out unless ``temporaries`` (a writer cleaning up after a dead one needs them), and a
    directory (on a store, the keys of one prefix level) whose file names ``skip_directory``
    rejects left out with all below it. The one walker of maskprep.

    The symbolic-link rule (docs/storage.md): a link to a directory is followed, each directory
    read once (by device and inode), so a link back up the tree ends instead of looping and a
    tree reached twice is read once (the first of the sorted names that reach it is kept); a
    link whose target is gone, and a directory that cannot be listed, are errors, never files
    left out without a word. (Nothing is ever written or removed through a link: outputs that
    hold one are refused before they are walked.)"""
    if location.is_local:
        return _walk_local(location, temporaries, skip_directory)
    return _walk_remote(location, temporaries, skip_directory)


def _walk_local(
    location: Location, temporaries: bool, skip_directory: Callable[[list[str]], bool] | None
) -> Iterator[ObjectInfo]:
    if not os.path.isdir(location.path):
        raise NotFound(location.url, "no such directory")

    def fail(exc: OSError) -> None:
        where = exc.filename or location.url
        raise StorageRequestError(where, f"cannot read directory: {exc.strerror}") from None

    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirs, names in os.walk(location.path, onerror=fail, followlinks=True):
        info = os.stat(directory)
        if (info.st_dev, info.st_ino) in seen or (skip_directory and skip_directory(names)):
            subdirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        subdirs.sort()  # the first of two links to one directory is the one kept
        for name in names:
            if not temporaries and is_temporary(name):
                continue
            path = str(PurePath(directory, name))  # as pathlib spells it: no ./ and no //
            if not os.path.exists(path):
                raise StorageRequestError(
                    path, "dangling symbolic link (its target does not exist)"
                )
            found.append(path)
    for path in sorted(found):
        yield stat(Location(location.protocol, path, location.options))


def _walk_remote(
    location: Location, temporaries: bool, skip_directory: Callable[[list[str]], bool] | None
) -> Iterator[ObjectInfo]:
    fs = filesystem(location)
    with translated(location.url):
        found = fs.find(location.path, detail=True)
    if not found:
        raise NotFound(location.url, "no such file, object or prefix")
    skipped: list[str] = []
    if skip_directory is not None:
        names: dict[str, list[str]] = {}
        for name in found:
            parent, _, base = name.rpartition("/")
            names.setdefault(parent, []).append(base)
        skipped = [parent + "/" for parent, inside in names.items() if skip_directory(inside)]
    for name in sorted(found):
        if any(name.startswith(prefix) for prefix in skipped):
            continue
        if temporaries or not is_temporary(posixpath.basename(name)):
            yield ObjectInfo.from_fsspec(_child(location, name), found[name])


def glob(pattern: Location) -> list[ObjectInfo]:
    """Files or objects matching a glob pattern (``**`` spans directories), sorted by path,
    writers' temporaries left out."""
    if pattern.is_local:
        matches = sorted(_glob.glob(pattern.path, recursive=True))
        return [
            stat(Location(pattern.protocol, path, pattern.options))
            for path in matches
            if not is_temporary(os.path.basename(path))
        ]
    fs = filesystem(pattern)
    with translated(pattern.url):
        found = fs.glob(pattern.path, detail=True)
    return [
        ObjectInfo.from_fsspec(_child(pattern, name), found[name])
        for name in sorted(found)
        if not is_temporary(posixpath.basename(name))
    ]


def sync_directory(location: Location) -> None:
    """Make the names just made in a local directory durable (nothing to do on a store)."""
    if location.is_local:
        fsync_directory(location.path)


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
    if not _stat.S_ISDIR(info.st_mode):
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
