"""The local fast path: plain ``os`` calls on paths, no fsspec in between.

A local file has no ETag: its version, for a compare-and-swap, is the sha256 of its bytes
(:func:`version`), and the swap itself runs under a ``flock`` of the directory, held for the few
system calls of the read, the compare and the rename (never across anything slow).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob as _glob
import hashlib
import os
import stat as _stat
import time
from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import BinaryIO

from .errors import NotFound, StorageFailure, StorageRequestError, VersionMismatch, translate
from .location import Location, ObjectInfo, is_temporary


def _info(location: Location, st: os.stat_result) -> ObjectInfo:
    is_dir = _stat.S_ISDIR(st.st_mode)
    regular = is_dir or _stat.S_ISREG(st.st_mode)
    size = 0 if is_dir else st.st_size
    return ObjectInfo(location, size, is_dir, st.st_mtime, None, regular, st.st_mtime_ns)


def stat(location: Location) -> ObjectInfo:
    """Size and mtime of a file or directory (symlinks followed)."""
    try:
        return _info(location, os.stat(location.path))
    except OSError as exc:
        raise translate(exc, location.url) from None


def exists(location: Location) -> bool:
    """Whether the path names anything (a dangling symlink counts: the name is taken)."""
    return os.path.lexists(location.path)


def open_read(location: Location, offset: int = 0) -> BinaryIO:
    """The file opened for reading, positioned at ``offset``."""
    try:
        handle = open(location.path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise translate(exc, location.url) from None
    if offset:
        handle.seek(offset)
    return handle


def open_regular(location: Location) -> BinaryIO:
    """The file opened for reading only if it is a regular file reached without a link
    (``O_NOFOLLOW``), opened without blocking (a named pipe is refused, never waited on)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(location.path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageRequestError(location.url, "is a symbolic link") from None
        raise translate(exc, location.url) from None
    if not _stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageRequestError(location.url, "not a regular file (a pipe or a device)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_range(location: Location, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` (fewer at the end of the file)."""
    with open_read(location, start) as handle:
        return handle.read(max(end - start, 0))


def listdir(location: Location) -> list[ObjectInfo]:
    """The entries of a directory, sorted by name, writers' temporary files left out."""
    try:
        with os.scandir(location.path) as entries:
            found = [
                _info(location.join(entry.name), entry.stat())
                for entry in entries
                if not is_temporary(entry.name)
            ]
    except NotADirectoryError:
        raise StorageRequestError(location.url, "not a directory") from None
    except OSError as exc:
        raise translate(exc, location.url) from None
    return sorted(found, key=lambda info: info.name)


def walk(
    location: Location,
    *,
    temporaries: bool = False,
    skip_directory: Callable[[list[str]], bool] | None = None,
) -> Iterator[ObjectInfo]:
    """Every file below a directory, in path order (as an object store lists keys),
    temporaries left out unless asked for; a directory whose file names ``skip_directory``
    rejects is left out with all below it.

    The symbolic-link rule (docs/storage.md): a link to a directory is followed, each directory
    read once (by device and inode), so a link back up the tree ends instead of looping and a
    tree reached twice is read once (the first of the sorted names that reach it is kept); a
    link whose target is gone, and a directory that cannot be listed, are errors, never files
    left out without a word. (Nothing is ever written or removed through a link: outputs that
    hold one are refused before they are walked.)"""
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
        try:
            yield _info(Location(location.protocol, path, location.options), os.stat(path))
        except OSError as exc:
            raise translate(exc, path) from None


def glob(pattern: Location) -> list[ObjectInfo]:
    """Paths matching a glob pattern (``**`` spans directories), sorted, temporaries left out."""
    matches = sorted(_glob.glob(pattern.path, recursive=True))
    found = []
    for path in matches:
        if is_temporary(os.path.basename(path)):
            continue
        child = Location(pattern.protocol, path, pattern.options)
        try:
            found.append(_info(child, os.stat(path)))
        except OSError as exc:
            raise translate(exc, child.url) from None
    return found


def delete(location: Location) -> None:
    """Remove a file (a symlink itself, never its target); absent already is fine."""
    try:
        os.unlink(location.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise translate(exc, location.url) from None


def version(data: bytes) -> str:
    """The version of a local file's bytes, as a compare-and-swap names it."""
    return hashlib.sha256(data).hexdigest()


#: How long a compare-and-swap waits for another one in the same directory to finish.
SWAP_WAIT = 60.0


@contextlib.contextmanager
def _directory_locked(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` of the directory ``path`` (the kernel drops it if this
    process dies); waits up to :data:`SWAP_WAIT` seconds for another holder."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + SWAP_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise translate(exc, path) from None
                if time.monotonic() > deadline:
                    raise StorageFailure(
                        path, f"another writer held the directory for {SWAP_WAIT:.0f} s"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def read_with_version(location: Location) -> tuple[bytes, str]:
    """A small file's bytes and their :func:`version`, never through a symbolic link."""
    try:
        fd = os.open(location.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise translate(exc, location.url) from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    return data, version(data)


def replace_if_match(location: Location, data: bytes, etag: str, write: Callable[[], None]) -> None:
    """Run ``write`` (which replaces the file atomically) only if the file's :func:`version` is
    still ``etag``: :class:`VersionMismatch` if it is another, :class:`NotFound` if it is gone."""
    directory = os.path.dirname(location.path) or "."
    with _directory_locked(directory):
        _, current = read_with_version(location)
        if current != etag:
            raise VersionMismatch(location.url, "changed since it was read")
        write()
