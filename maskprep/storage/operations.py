"""The facade: one function per operation, for local paths and URLs alike.

A local :class:`~maskprep.storage.location.Location` takes the plain ``os`` path
(:mod:`maskprep.storage.local`), anything else goes through fsspec
(:mod:`maskprep.storage.remote`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as _stat
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from . import local, remote
from .errors import AlreadyExists, NotFound, StorageRequestError, translate
from .location import Location
from .objects import ObjectInfo, WriteResult
from .protocols import capabilities, filesystem
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
