"""Atomic writes: bytes appear under the final name only when complete, never on error.

:class:`AtomicWriter` is a binary stream (pyarrow writes Parquet and Arrow into it) that hashes
what passes through it, so the manifest's sha256 costs no read-back. Only ``commit()``
publishes; ``abort()``, an exception in a ``with`` block, ``close()`` before a commit and garbage
collection all discard.

How each kind of store is made to behave so:

* local: a temporary name in the same directory (``O_EXCL | O_NOFOLLOW``, so a planted symlink is
  never written through), fsync, then ``os.replace`` (or ``os.link`` for a create-only write,
  which fails if the name exists), then fsync of the directory;
* stores with staged uploads (S3, GCS, Azure): the fsspec file, whose upload completes on close.
  fsspec's own ``with fs.open(...)`` closes, and so *publishes*, on an exception too (measured with
  s3fs 2026.9 against moto 5.2: a partial object appeared, single-PUT and multipart alike), so the
  writer never lets that file close on the error path: it calls ``discard()`` (aborting the
  multipart upload) and marks it closed;
* other stores: a temporary key beside the object, moved into place on commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..errors import MaskprepError
from .errors import AlreadyExists, NotFound, Unsupported, translate
from .errors import is_precondition_failure as _refused
from .location import Location, WriteResult, capabilities, filesystem, temporary_name

#: Called by a sink just before it publishes, with every byte already durable or uploaded: a
#: writer that must not publish any more (the output it writes was finished by another writer
#: meanwhile) raises there, and nothing is published.
Guard = Callable[[], None]


def _no_guard() -> None:
    return None


class DigestSink(io.RawIOBase):
    """A write-only stream that only hashes (sha256) and counts what is written to it: a
    resumed build replays a shard through it to compare with the one already there."""

    def __init__(self) -> None:
        super().__init__()
        self._digest = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._size

    def hexdigest(self) -> str:
        """Hex sha256 of everything written so far."""
        return self._digest.hexdigest()


class AtomicWriter(DigestSink):
    """A write-only binary stream to ``location`` that publishes only on :meth:`commit`.

    Use as a context manager (commit on a clean exit, abort on an exception) or call
    :meth:`commit` / :meth:`abort` yourself. ``sha256`` and ``size`` are kept as bytes pass.
    """

    def __init__(self, location: Location, sink: _Sink) -> None:
        super().__init__()
        self.location = location
        self._sink: _Sink | None = sink
        self.result: WriteResult | None = None

    def writable(self) -> bool:
        return self._sink is not None

    def write(self, data: Any) -> int:
        """Write bytes (any buffer); they are hashed and counted on the way out."""
        if self._sink is None:
            raise ValueError(f"{self.location.url}: write to a finished writer")
        view = memoryview(data).cast("B")
        try:
            self._sink.write(view)
        except Exception as exc:
            self.abort()
            raise translate(exc, self.location.url) from None
        return super().write(view)

    def commit(self, guard: Guard = _no_guard) -> WriteResult:
        """Publish the object under its final name; raises (and leaves nothing) on failure.
        ``guard`` runs just before the publishing step and stops it by raising."""
        if self.result is not None:
            return self.result
        if self._sink is None:
            raise ValueError(f"{self.location.url}: commit of an aborted writer")
        sink, self._sink = self._sink, None
        try:
            etag = sink.commit(self._size, guard)
        except BaseException as exc:
            # The temporary goes. On a signal (KeyboardInterrupt) mid-commit the final name may
            # already be published, which the caller, told nothing was, removes.
            with contextlib.suppress(Exception):
                sink.abort()
            if isinstance(exc, Exception) and not isinstance(exc, MaskprepError):
                raise translate(exc, self.location.url) from None
            raise  # a signal, the guard's refusal, or an error already translated
        finally:
            super().close()
        self.result = WriteResult(self.location, self._size, self.hexdigest(), etag)
        return self.result

    def abort(self) -> None:
        """Throw the bytes away; nothing appears under the final name. Safe to call twice."""
        sink, self._sink = self._sink, None
        if sink is not None:
            # A failed clean-up (an unreachable store) must not hide the error that led here;
            # an upload left unaborted is invisible and expires with the bucket's lifecycle rule.
            with contextlib.suppress(Exception):
                sink.abort()
        super().close()

    def close(self) -> None:
        """Abort unless committed: closing is not publishing (pyarrow never closes its sink)."""
        if self._sink is not None:
            self.abort()
        super().close()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write(location: Location, *, exclusive: bool = False, tag: str | None = None) -> AtomicWriter:
    """An :class:`AtomicWriter` to ``location``: the object appears only when committed,
    complete. ``exclusive``: the commit fails with :class:`AlreadyExists` if the object exists
    by then (refused up front with :class:`Unsupported` on a store that cannot check that
    atomically). ``tag`` (16 hex digits) ends the name of a temporary file, so that the writer
    that owns it can find it."""
    caps = capabilities(location)
    if not caps.writable:
        raise Unsupported(location.url, f"{location.protocol}:// is read-only in maskprep")
    if exclusive and not caps.conditional_create:
        raise Unsupported(
            location.url,
            "this store cannot create an object only if it is absent (no conditional writes)",
        )
    if location.is_local:
        return AtomicWriter(location, _LocalSink(location, exclusive, tag))
    fs = filesystem(location)
    try:
        sink: _Sink = (
            _StagedSink(fs, location, exclusive)
            if caps.staged_upload
            else _TempKeySink(fs, location, tag)
        )
    except Exception as exc:
        raise translate(exc, location.url) from None
    return AtomicWriter(location, sink)


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalSink:
    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, location: Location, exclusive: bool, tag: str | None) -> None:
        self.final = location.path
        self.directory = os.path.dirname(location.path) or "."
        name = temporary_name(os.path.basename(location.path), tag)
        self.tmp = os.path.join(self.directory, name)
        self.exclusive = exclusive
        try:
            fd = os.open(self.tmp, self._FLAGS, 0o644)
        except FileNotFoundError:
            raise NotFound(location.parent.url, "no such directory") from None
        except OSError as exc:
            raise translate(exc, location.url) from None
        try:
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(self.tmp)
            raise

    def write(self, data: memoryview) -> None:
        self.file.write(data)

    def commit(self, size: int, guard: Guard) -> str | None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        guard()
        if self.exclusive:
            try:
                os.link(self.tmp, self.final, follow_symlinks=False)
            except FileExistsError:
                raise AlreadyExists(self.final, "already exists") from None
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, self.final)
        fsync_directory(self.directory)
        return None

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


class _StagedSink:
    def __init__(self, fs: Any, location: Location, exclusive: bool) -> None:
        self.fs = fs
        self.path = location.path
        self.mode = "create" if exclusive else "overwrite"
        self.file = fs.open(location.path, "xb" if exclusive else "wb")

    def write(self, data: memoryview) -> None:
        self.file.write(data)

    def commit(self, size: int, guard: Guard) -> str | None:
        guard()
        if size == 0:
            # s3fs commits an empty file with an unconditional touch() even in "xb" mode
            # (measured: a second create-only empty write succeeded), so send a real PUT.
            self.abort()
            return _etag_of(self.fs.pipe_file(self.path, b"", mode=self.mode))
        self.file.close()  # completes the upload (create-only: If-None-Match on the last call)
        return None

    def abort(self) -> None:
        # Never close() here: that would complete the upload with the bytes so far.
        try:
            self.file.discard()  # s3fs: abort the multipart upload; gcsfs: cancel the session
        finally:
            self.file.closed = True


class _TempKeySink:
    def __init__(self, fs: Any, location: Location, tag: str | None) -> None:
        self.fs = fs
        self.path = location.path
        self.tmp = location.parent.join(temporary_name(location.name, tag)).path
        self.file = fs.open(self.tmp, "wb")

    def write(self, data: memoryview) -> None:
        self.file.write(data)

    def commit(self, size: int, guard: Guard) -> str | None:
        self.file.close()
        guard()
        self.fs.mv(self.tmp, self.path)
        return None

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.tmp)


def _etag_of(response: Any) -> str | None:
    if isinstance(response, dict):
        etag = response.get("ETag") or response.get("etag")
        return str(etag) if etag else None
    return None


def put(location: Location, data: bytes, *, exclusive: bool = False) -> WriteResult:
    """Write a small object atomically (a manifest, a writer's record) in one request where the
    store allows, replacing any object there; ``exclusive``: see :func:`put_if_absent`."""
    caps = capabilities(location)
    if location.is_local or not caps.staged_upload:
        with write(location, exclusive=exclusive) as writer:
            writer.write(data)
        assert writer.result is not None
        return writer.result
    fs = filesystem(location)
    try:
        response = fs.pipe_file(location.path, data, mode="create" if exclusive else "overwrite")
    except Exception as exc:
        if exclusive and _refused(exc):
            raise AlreadyExists(location.url, "already exists") from None
        raise translate(exc, location.url) from None
    return WriteResult(location, len(data), hashlib.sha256(data).hexdigest(), _etag_of(response))


def put_if_absent(location: Location, data: bytes) -> WriteResult:
    """Create a small object only if nothing is there, atomically on the store's side;
    :class:`AlreadyExists` if something is, :class:`Unsupported` where the store cannot."""
    return put(location, data, exclusive=True)


_Sink = _LocalSink | _StagedSink | _TempKeySink
