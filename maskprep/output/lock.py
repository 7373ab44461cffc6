"""One writer per output: an advisory lock held for the whole build or merge.

On a local directory the lock is ``fcntl.flock`` on ``DIR/.maskprep.lock``, so the operating
system releases it when the process dies, however it dies (SIGKILL, power loss): a lock file left
behind by a dead build never blocks the next one. The file is opened with ``O_NOFOLLOW``: a
symbolic link planted under its name is refused, never written through.

On an object store, which has no flock, it is a lease (:class:`maskprep.storage.Lease`): a lock
object created with put-if-absent, renewed by compare-and-swap while the build runs
(:meth:`OutputLock.keepalive`), and taken over only once it has lapsed.

Either way a second writer fails at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Protocol

from .. import storage
from ..errors import OutputError, os_failure
from .names import LOCK_NAME

__all__ = ["LOCK_NAME", "HeldLock", "OutputLease", "OutputLock", "lock_output"]

#: Seconds an object-store lease lives without renewal (see docs/storage.md).
DEFAULT_LEASE_TTL = storage.lease.DEFAULT_TTL


class HeldLock(Protocol):
    """What a build holds while it writes an output."""

    def keepalive(self) -> None:
        """Renew the lock if it needs renewing; raise if it was lost."""

    def release(self) -> None:
        """Let go of the lock."""


class OutputLock:
    """Exclusive, non-blocking lock on ``DIRECTORY/.maskprep.lock``; a context manager.

    The lock file is removed on release. Because another process may have opened the file just
    before it was removed, :meth:`acquire` checks after locking that the path still names the
    file it locked, and starts over if it does not.
    """

    _FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputError` naming the directory when it is held."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise OutputError(
                        f"{self.directory}: another maskprep process is writing to this "
                        f"directory (locked by {self.path.name}); wait for it or use another "
                        "output directory"
                    ) from None
                raise OutputError(f"{self.path}: cannot lock: {exc.strerror}") from None
            if self._still_named(fd):
                self._fd = fd
                self._write_pid()
                return
            os.close(fd)

    def _open(self) -> int:
        try:
            fd = os.open(self.path, self._FLAGS, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(
                    f"{self.path}: is a symbolic link; maskprep never writes through a link in "
                    "its output directory (remove it)"
                ) from None
            raise OutputError(
                f"{self.directory}: cannot write to the output directory: {exc.strerror}"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(f"{self.path}: not a regular file; remove it")
        return fd

    def _write_pid(self) -> None:
        """Note the holder's pid in the file, for people; a full disk gives up the lock."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self.release()
            raise os_failure(self.directory, "cannot write output", exc) from None

    def _still_named(self, fd: int) -> bool:
        try:
            on_disk = os.lstat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def keepalive(self) -> None:
        """Nothing to do: the kernel holds a flock for as long as the process lives."""

    def release(self) -> None:
        """Remove the lock file and let go of the lock (removal first, see the class notes)."""
        if self._fd is None:
            return
        # An undeletable lock file is harmless: the lock itself goes with the descriptor.
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class OutputLease:
    """The lock of an output on an object store: a :class:`maskprep.storage.Lease` on
    ``PREFIX/.maskprep.lock``. Refused with the lease's own message, which names the lock object
    and its holder."""

    def __init__(self, location: storage.Location, ttl: float = DEFAULT_LEASE_TTL) -> None:
        self.lease = storage.Lease(location.join(LOCK_NAME), ttl=ttl)

    def acquire(self) -> None:
        """Take the lease (or a lapsed one over); :class:`storage.LeaseHeld` if it is held."""
        self.lease.acquire()

    def keepalive(self) -> None:
        """Renew the lease when a third of its time to live has passed;
        :class:`storage.LeaseLost` if another writer took it over."""
        self.lease.renew_if_due()

    def release(self) -> None:
        """Delete the lock object if it is still this writer's."""
        if self.lease.held:
            self.lease.release()


def lock_output(location: storage.Location, *, ttl: float = DEFAULT_LEASE_TTL) -> HeldLock:
    """Take the lock of the output at ``location``: a flock on a local directory (which must
    exist), a lease on an object store. Raises :class:`OutputError` or
    :class:`storage.LeaseHeld` when another writer holds it."""
    held: OutputLock | OutputLease
    held = OutputLock(Path(location.path)) if location.is_local else OutputLease(location, ttl)
    held.acquire()
    return held
