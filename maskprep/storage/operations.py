"""Every operation on one object, one function each, for local paths and URLs alike.

A local :class:`~maskprep.storage.location.Location` takes the plain ``os`` path, anything else
goes through fsspec, whose errors are translated into :mod:`maskprep.storage.errors` types naming
the URL. A local file has no ETag: its version, for a compare-and-swap, is the sha256 of its
bytes, and the swap runs under a ``flock`` of the directory held for the few system calls of the
read, the compare and the rename (never across anything slow). Also here: the one streaming
sha256 of maskprep, in blocks, so that memory stays flat whatever the size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat as _stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, overload

from .errors import (
    AlreadyExists,
    NotFound,
    StorageFailure,
    StorageRequestError,
    Unsupported,
    VersionMismatch,
    is_precondition_failure,
    is_range_past_end,
    translate,
    translated,
)
from .location import (
    Location,
    ObjectInfo,
    WriteResult,
    capabilities,
    filesystem,
)
from .writers import put, write

#: Bytes per read when a copy streams through this process.
COPY_CHUNK = 8 << 20
#: How long a local compare-and-swap waits for another one in the same directory to finish.
SWAP_WAIT = 60.0
#: The largest range one UploadPartCopy may copy (S3's limit for a part).
_PART_COPY = 5 << 30


def stat(location: Location) -> ObjectInfo:
    """Size, mtime and (on object stores) ETag, symbolic links followed; :class:`NotFound` if
    absent. A prefix is a directory."""
    if location.is_local:
        try:
            return ObjectInfo.from_stat(location, os.stat(location.path))
        except OSError as exc:
            raise translate(exc, location.url) from None
    fs = filesystem(location)
    with translated(location.url):
        return ObjectInfo.from_fsspec(location, fs.info(location.path))


def exists(location: Location) -> bool:
    """Whether an object, file, directory or non-empty prefix is there (a dangling symbolic
    link counts: the name is taken)."""
    if location.is_local:
        return os.path.lexists(location.path)
    fs = filesystem(location)
    with translated(location.url):
        return bool(fs.exists(location.path))


def open_read(location: Location, offset: int = 0) -> BinaryIO:
    """A seekable binary stream positioned at ``offset``. Remote bytes are fetched in blocks as
    they are read (never the whole object first); s3fs pins the ETag it saw at open, so an
    object replaced while it is read fails instead of mixing two versions."""
    if location.is_local:
        try:
            handle = open(location.path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise translate(exc, location.url) from None
        if offset:
            handle.seek(offset)
        return handle
    fs = filesystem(location)
    with translated(location.url):
        handle = fs.open(location.path, "rb")
        if offset:
            handle.seek(offset)
    return handle


def open_regular(location: Location) -> BinaryIO:
    """A stream of a file that must be a regular one, reached without a symbolic link
    (``O_NOFOLLOW``): a link, a named pipe (opened without blocking, so a planted pipe is never
    waited on) or a device is refused (:class:`StorageRequestError`). An object of a store is
    always one."""
    if not location.is_local:
        return open_read(location)
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


def _read_versioned(location: Location) -> tuple[bytes, str]:
    """A small local file's bytes and their version (sha256), never through a symbolic link."""
    try:
        fd = os.open(location.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise translate(exc, location.url) from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    return data, hashlib.sha256(data).hexdigest()


def version(location: Location) -> str | None:
    """The version of an object now, as :func:`read_with_info` gives it (its ETag on a store,
    the sha256 of its bytes locally); ``None`` when it is not there."""
    try:
        if location.is_local:
            return _read_versioned(location)[1]
        return stat(location).etag
    except NotFound:
        return None


def read_range(location: Location, start: int, end: int) -> bytes:
    """Exactly the bytes ``[start, end)`` (fewer past the end), one ranged request remotely."""
    if start < 0 or end < 0:
        raise ValueError(f"{location.url}: negative byte offset")
    if location.is_local:
        with open_read(location, start) as handle:
            return handle.read(max(end - start, 0))
    if end <= start:
        return b""
    fs = filesystem(location)
    try:
        return bytes(fs.cat_file(location.path, start=start, end=end))
    except Exception as exc:
        if is_range_past_end(exc):
            return b""  # as a local read past the end gives: S3 answers 416 instead
        raise translate(exc, location.url) from None


def read_bytes(location: Location) -> bytes:
    """A whole (small) object: a manifest, a writer's record."""
    with open_read(location) as handle:
        return handle.read()


def read_with_info(location: Location) -> tuple[bytes, ObjectInfo]:
    """A small object and its :class:`ObjectInfo`, whose ``etag`` names the version read (S3's
    ETag; a local file's sha256), for a compare-and-swap that follows. s3fs reads with
    ``If-Match`` on the ETag it saw at open, so the pair cannot mix two versions."""
    if location.is_local:
        data, version = _read_versioned(location)
        info = stat(location)
        return data, ObjectInfo(location, len(data), False, info.mtime, version)
    fs = filesystem(location)
    with translated(location.url), fs.open(location.path, "rb") as handle:
        data = handle.read()
        details = dict(getattr(handle, "details", None) or fs.info(location.path))
    return data, ObjectInfo.from_fsspec(location, details)


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


def replace_if_match(location: Location, data: bytes, etag: str) -> WriteResult:
    """Compare-and-swap: replace the object only if it is still the version ``etag`` (as
    :func:`read_with_info` gave it); :class:`VersionMismatch` if it changed, :class:`NotFound`
    if it is gone, :class:`Unsupported` on a store without conditional replaces (GCS and Azure as
    wired here; S3 uses ``If-Match``). The replacement appears whole or not at all."""
    if location.is_local:
        with _directory_locked(os.path.dirname(location.path) or "."):
            if _read_versioned(location)[1] != etag:
                raise VersionMismatch(location.url, "changed since it was read")
            return put(location, data)
    if location.protocol not in ("s3", "s3a") or not capabilities(location).compare_and_swap:
        raise Unsupported(
            location.url, "this store cannot replace an object only if its ETag matches"
        )
    fs = filesystem(location)
    bucket, key, _ = fs.split_path(location.path)
    try:
        response = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=etag)
    except Exception as exc:
        if is_precondition_failure(exc):
            raise VersionMismatch(location.url, "changed since it was read") from None
        raise translate(exc, location.url) from None
    fs.invalidate_cache(location.path)
    digest = hashlib.sha256(data).hexdigest()
    return WriteResult(location, len(data), digest, response.get("ETag"))


def delete(location: Location) -> None:
    """Delete one file or object (a symbolic link itself, never its target); already absent is
    not an error."""
    if location.is_local:
        try:
            os.unlink(location.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise translate(exc, location.url) from None
        return
    fs = filesystem(location)
    with translated(location.url), contextlib.suppress(FileNotFoundError):
        fs.rm_file(location.path)


def delete_many(locations: Iterable[Location]) -> None:
    """Delete files or objects; already absent is not an error. S3 sends them in batches of up
    to 1000 keys a request, one store at a time."""
    batch = list(locations)
    for location in batch:
        if location.is_local:
            delete(location)
    by_store: dict[int, list[Location]] = {}
    for location in batch:
        if not location.is_local:
            by_store.setdefault(id(filesystem(location)), []).append(location)
    for group in by_store.values():
        if group[0].protocol not in ("s3", "s3a"):
            for location in group:
                delete(location)
            continue
        fs = filesystem(group[0])
        with translated(group[0].parent.url):
            fs.rm([location.path for location in group])


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
        return put(target, b"", exclusive=True)  # one conditional PUT: nothing to copy
    if server and not exclusive:
        fs = filesystem(source)
        with translated(target.url):
            fs.copy(source.path, target.path)
        return WriteResult(target, size, None, None)
    if server and source.protocol in ("s3", "s3a"):
        _s3_copy_if_absent(source, target, size)
        return WriteResult(target, size, None, None)
    with open_read(source) as reader:
        writer = write(target, exclusive=exclusive, tag=tag)
        with writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
    assert writer.result is not None
    return writer.result


def _s3_copy_if_absent(source: Location, target: Location, size: int) -> None:
    """Server-side copy on S3 that creates the target only if it is absent: a multipart upload
    whose parts are copied from the source (``UploadPartCopy``) and completed with
    ``If-None-Match: *``; :class:`AlreadyExists` if the target exists by then. The upload is
    aborted on any failure, so nothing partial is left behind."""
    fs = filesystem(target)
    bucket, key, _ = fs.split_path(target.path)
    source_bucket, source_key, _ = fs.split_path(source.path)
    with translated(target.url):
        upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        starts = range(0, max(size, 1), _PART_COPY)
        for number, start in enumerate(starts, start=1):
            extra = {}
            if size > _PART_COPY:
                extra["CopySourceRange"] = f"bytes={start}-{min(start + _PART_COPY, size) - 1}"
            answer = fs.call_s3(
                "upload_part_copy",
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                **extra,
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except Exception as exc:
        with contextlib.suppress(Exception):
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload)
        if is_precondition_failure(exc):
            raise AlreadyExists(target.url, "already exists") from None
        raise translate(exc, target.url) from None
    fs.invalidate_cache(target.path)


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
