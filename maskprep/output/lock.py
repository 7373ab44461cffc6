"""One writer per output directory: an advisory lock held for the whole build.

The lock is ``fcntl.flock`` on an open file, so the operating system releases it when the process
dies, however it dies (SIGKILL, power loss): a lock file left behind by a dead build never blocks
the next one. A second build into the same directory fails at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import OutputError

LOCK_NAME = ".maskprep.lock"


class OutputLock:
    """Exclusive, non-blocking lock on ``DIRECTORY/.maskprep.lock``; a context manager.

    The lock file is removed on release. Because another process may have opened the file just
    before it was removed, :meth:`acquire` checks after locking that the path still names the
    file it locked, and starts over if it does not.
    """

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
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"{self.directory}: cannot write to the output directory: {exc.strerror}"
            ) from None

    def _still_named(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

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
