"""The facade: one function per operation, for local paths and URLs alike.

A local :class:`~maskprep.storage.location.Location` takes the plain ``os`` path
(:mod:`maskprep.storage.local`), anything else goes through fsspec
(:mod:`maskprep.storage.remote`). Besides single objects: the one streaming sha256 of maskprep
(in blocks, so memory stays flat whatever the size), and directories or prefixes as wholes.

The one rule for symbolic links (docs/storage.md): a walk of inputs follows a link to a
directory once (:func:`walk`); an output is never written, read or removed through one:
:func:`entries` reports a link as :attr:`Kind.LINK` (its target never looked at), and
:func:`remove_tree` removes a link itself, not what it points to. On an object store there are
no links.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import os
import shutil
import stat as _stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, overload

from . import local, remote
from .errors import AlreadyExists, NotFound, StorageRequestError, translate
from .location import Location, ObjectInfo, WriteResult, capabilities, filesystem
from .writers import AtomicWriter, fsync_directory, open_writer, put_bytes

#: Bytes per read when a copy streams through this process.
COPY_CHUNK = 8 << 20


def stat(location: Location) -> ObjectInfo:
    """Size, mtime and (on object stores) ETag; :class:`NotFound` if absent."""
    return local.stat(location) if location.is_local else remote.stat(location)


def exists(location: Location) -> bool:
    """Whether an object, file, directory or non-empty prefix is there."""
    return local.exists(location) if location.is_local else remote.exists(location)


def open_read(location: Location, offset: int = 0) -> BinaryIO:
    """A seekable binary stream positioned at ``offset``; remote bytes arrive as they are read."""
    if location.is_local:
        return local.open_read(location, offset)
    return remote.open_read(location, offset)


def open_regular(location: Location) -> BinaryIO:
    """A stream of a file that must be a regular one, reached without a symbolic link: a link,
    a named pipe (opened without blocking, so a planted pipe is never waited on) or a device is
    refused (:class:`StorageRequestError`). An object of a store is always one."""
    if location.is_local:
        return local.open_regular(location)
    return remote.open_read(location)


def version(location: Location) -> str | None:
    """The version of an object now, as :func:`read_with_info` gives it (its ETag on a store,
    the sha256 of its bytes locally); ``None`` when it is not there."""
    try:
        if location.is_local:
            return local.read_with_version(location)[1]
        return remote.stat(location).etag
    except NotFound:
        return None


def read_range(location: Location, start: int, end: int) -> bytes:
    """Exactly the bytes ``[start, end)`` (fewer past the end), one ranged request remotely."""
    if start < 0 or end < 0:
        raise ValueError(f"{location.url}: negative byte offset")
    if location.is_local:
        return local.read_range(location, start, end)
    return remote.read_range(location, start, end)


def read_bytes(location: Location) -> bytes:
    """A whole (small) object: a manifest, a writer's record."""
    with open_read(location) as handle:
        return handle.read()


def read_with_info(location: Location) -> tuple[bytes, ObjectInfo]:
    """A small object and its :class:`ObjectInfo`, whose ``etag`` names the version read (S3's
    ETag; a local file's sha256), for a compare-and-swap that follows."""
    if location.is_local:
        data, version = local.read_with_version(location)
        info = local.stat(location)
        return data, ObjectInfo(location, len(data), False, info.mtime, version)
    return remote.read_with_info(location)


def listdir(location: Location) -> list[ObjectInfo]:
    """What is directly under a directory or prefix, sorted by name, writers' temporaries
    left out; :class:`NotFound` if there is nothing there."""
    return local.listdir(location) if location.is_local else remote.listdir(location)


def walk(
    location: Location,
    *,
    temporaries: bool = False,
    skip_directory: Callable[[list[str]], bool] | None = None,
) -> Iterator[ObjectInfo]:
    """Every file or object below a directory or prefix, in path order; writers' temporaries
    left out unless ``temporaries`` (a writer cleaning up after a dead one needs them), and a
    directory whose file names ``skip_directory`` rejects left out with all below it. The one
    walker of maskprep, with its one rule for symbolic links (:func:`.local.walk`)."""
    if location.is_local:
        return local.walk(location, temporaries=temporaries, skip_directory=skip_directory)
    return remote.walk(location, temporaries=temporaries, skip_directory=skip_directory)


def glob(pattern: Location) -> list[ObjectInfo]:
    """Files or objects matching a glob pattern, sorted by path."""
    return local.glob(pattern) if pattern.is_local else remote.glob(pattern)


def write(location: Location, *, exclusive: bool = False, tag: str | None = None) -> AtomicWriter:
    """An :class:`AtomicWriter`: the object appears only when committed, complete; with
    ``exclusive``, only if nothing is there by then (:class:`AlreadyExists`). ``tag`` names the
    writer in the temporary file's name."""
    return open_writer(location, exclusive=exclusive, tag=tag)


def put(location: Location, data: bytes) -> WriteResult:
    """Write a small object atomically, replacing any object there."""
    return put_bytes(location, data)


def put_if_absent(location: Location, data: bytes) -> WriteResult:
    """Create a small object only if nothing is there, atomically on the store's side;
    :class:`AlreadyExists` if something is, :class:`Unsupported` where the store cannot."""
    return put_bytes(location, data, exclusive=True)


def replace_if_match(location: Location, data: bytes, etag: str) -> WriteResult:
    """Compare-and-swap: replace the object only if it is still the version ``etag`` (as
    :func:`read_with_info` gave it); :class:`VersionMismatch` if it changed, :class:`NotFound`
    if it is gone, :class:`Unsupported` on a store without conditional replaces (GCS and Azure as
    wired here). The replacement appears whole or not at all."""
    if location.is_local:
        written: list[WriteResult] = []
        local.replace_if_match(
            location, data, etag, lambda: written.append(put_bytes(location, data))
        )
        return written[0]
    return remote.replace_if_match(location, data, etag)


def delete(location: Location) -> None:
    """Delete one file or object; already absent is not an error."""
    if location.is_local:
        local.delete(location)
    else:
        remote.delete(location)


def delete_many(locations: Iterable[Location]) -> None:
    """Delete files or objects (batched on S3); already absent is not an error."""
    batch = list(locations)
    remote_batch = [location for location in batch if not location.is_local]
    for location in batch:
        if location.is_local:
            local.delete(location)
    by_store: dict[int, list[Location]] = {}
    for location in remote_batch:
        by_store.setdefault(id(filesystem(location)), []).append(location)
    for group in by_store.values():
        remote.delete_many(group)


def copy(
    source: Location, target: Location, *, exclusive: bool = False, tag: str | None = None
) -> WriteResult:
    """Copy an object; the target appears only complete (with ``exclusive``, only if nothing is
    there: :class:`AlreadyExists`). Within one object store that copies atomically (S3, GCS)
    the copy is server-side (no bytes through this process, so ``sha256`` is ``None``; on S3 a
    create-only copy is a one-part multipart copy completed with ``If-None-Match``); otherwise the
    bytes stream through an :class:`AtomicWriter`, hashed."""
    size = stat(source).size
    server = (
        not source.is_local
        and capabilities(source).server_copy
        and source.protocol == target.protocol
        and filesystem(source) is filesystem(target)
    )
    if exclusive and size == 0:
        return put_bytes(target, b"", exclusive=True)  # one conditional PUT: nothing to copy
    if server and not exclusive:
        remote.copy(source, target)
        return WriteResult(target, size, None, None)
    if server and source.protocol in ("s3", "s3a"):
        remote.copy_if_absent(source, target, size)
        return WriteResult(target, size, None, None)
    with open_read(source) as reader:
        writer = open_writer(target, exclusive=exclusive, tag=tag)
        with writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
    assert writer.result is not None
    return writer.result


#: Link errors after which a file is copied instead: another filesystem, a filesystem without
#: hard links, too many links to one file.
_COPY_INSTEAD = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def hard_link(source: str, target: str) -> None:
    """``target`` as a new name of the local file ``source`` (never following a link, never
    replacing a name)."""
    os.link(source, target, follow_symlinks=False)


def link_or_copy(
    source: Location, target: Location, *, tag: str | None = None
) -> tuple[bool, str | None]:
    """Place the bytes of ``source`` at ``target``, create-if-absent (:class:`AlreadyExists`): a
    hard link between local files (no bytes copied), else a :func:`copy` (server-side within one
    store). A local source must be a regular file reached without a link. Returns whether it was
    linked, and the sha256 of the bytes when they passed through this process."""
    if source.is_local:
        try:
            info = os.lstat(source.path)
        except OSError as exc:
            raise translate(exc, source.url) from None
        if not _stat.S_ISREG(info.st_mode):
            raise StorageRequestError(source.url, "not a regular file")
    if source.is_local and target.is_local:
        try:
            hard_link(source.path, target.path)
            return True, None
        except FileExistsError:
            raise AlreadyExists(target.url, "already exists") from None
        except OSError as exc:
            if exc.errno not in _COPY_INSTEAD:
                raise translate(exc, target.url) from None
    written = copy(source, target, exclusive=True, tag=tag)
    return False, written.sha256


def move_if_absent(source: Location, target: Location, *, tag: str | None = None) -> None:
    """Move a file to a name nothing has (:class:`AlreadyExists` otherwise): a hard link and an
    unlink locally, a create-only server-side copy and a delete on a store."""
    if source.is_local and target.is_local:
        try:
            os.link(source.path, target.path, follow_symlinks=False)
        except OSError as exc:
            raise translate(exc, target.url) from None
    else:
        copy(source, target, exclusive=True, tag=tag)
    delete(source)


def sync_directory(location: Location) -> None:
    """Make the names just made in a local directory durable (nothing to do on a store)."""
    if location.is_local:
        fsync_directory(location.path)


#: Bytes read at a time.
BLOCK = 1 << 20


#: Told every block as it is hashed (to copy or count what passes).
Each = Callable[[bytes], object]


@overload
def sha256_stream(
    handle: BinaryIO, limit: int | None = None, stop: None = None, *, each: Each | None = None
) -> str: ...


@overload
def sha256_stream(
    handle: BinaryIO, limit: int | None, stop: threading.Event, *, each: Each | None = None
) -> str | None: ...


def sha256_stream(
    handle: BinaryIO,
    limit: int | None = None,
    stop: threading.Event | None = None,
    *,
    each: Each | None = None,
) -> str | None:
    """Hex sha256 of what ``handle`` reads from where it stands to its end, or of its next
    ``limit`` bytes (fewer if it ends first, which the caller's comparison then catches);
    ``None`` once ``stop`` is set before the end (checked between blocks). ``each`` is told
    every block (a copy written as it is hashed, a count of bytes or lines)."""
    digest = hashlib.sha256()
    remaining = limit
    while remaining is None or remaining > 0:
        if stop is not None and stop.is_set():
            return None
        block = handle.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not block:
            break
        digest.update(block)  # releases the GIL for large blocks
        if each is not None:
            each(block)
        if remaining is not None:
            remaining -= len(block)
    return digest.hexdigest()


def sha256_of(location: Location) -> str:
    """Hex sha256 of a file's or object's bytes, streamed."""
    with open_read(location) as handle:
        return sha256_stream(handle)


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
