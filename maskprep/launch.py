"""The ``maskprep`` program's start (and ``python -m maskprep``'s): the process is made ready
before anything heavy is imported, then the command line runs.

Ready means three things, none of which the library does (it is not its process):

- SIGINT exits 130 with no traceback from here on, during the imports (the first tenth of a
  second or so) and around the command too; while a command runs, its own handler takes over so
  that it stops cleanly (:mod:`maskprep.cli.common`). Before this module runs only the
  interpreter's own start-up is exposed.
- A standard stream the caller closed (``2>&-``, ``>&-``, ``<&-``) gets ``/dev/null`` under its
  descriptor, so that no file the command opens is given descriptor 1 or 2, where a stray
  write meant for the terminal would land in the middle of a shard.
- What cannot be written to stderr (closed, a full disk, a reader gone) is dropped: progress
  lines and warnings describe the work, they must not stop it. Failing to write the report on
  stdout is an error of its own (:mod:`maskprep.cli.common`).
"""

from __future__ import annotations

import os
import signal
import sys

# No typing import: everything imported before the handler is installed is time without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Exit status after SIGINT: 128 + the signal number, as shells report it.
_EXIT_SIGINT = 128 + signal.SIGINT
_ABORTED = b"Aborted: interrupted (SIGINT)\n"


def main() -> None:
    """Run the ``maskprep`` command line in a process made ready as the module notes say."""
    signal.signal(signal.SIGINT, _interrupted)
    _reserve_standard_descriptors()
    # A closed stderr is now /dev/null under descriptor 2: a stream on it serves code that asks
    # for sys.stderr.fileno() (faulthandler, subprocesses) as well as code that writes.
    stderr = sys.stderr if sys.stderr is not None else open(2, "w", closefd=False)  # noqa: SIM115
    sys.stderr = DroppingStream(stderr)
    if sys.stdout is not None:
        sys.stdout = ReportStream(sys.stdout)
    from .cli import main as command_line

    try:
        command_line()
    except StdoutError as error:
        # What Click writes itself (--help, --version) escapes it when stdout cannot take it.
        from .cli.common import discard_stdout
        from .errors import os_reason

        discard_stdout()
        sys.stderr.write(f"Error: cannot write to stdout: {os_reason(error)}\n")
        sys.exit(1)


def _interrupted(signum: int, frame: Any) -> None:
    """SIGINT outside a running command: nothing is half-written, so leave at once."""
    try:  # noqa: SIM105 (contextlib is one more import before the handler is in place)
        os.write(2, _ABORTED)
    except OSError:
        pass
    os._exit(_EXIT_SIGINT)


def _reserve_standard_descriptors() -> None:
    """Open ``/dev/null`` under each of descriptors 0, 1 and 2 that is closed. Python has set
    ``sys.stdin``/``sys.stdout``/``sys.stderr`` to ``None`` for those already; that stays so."""
    for descriptor, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, flags)  # the lowest free descriptor: this one
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)


class DroppingStream:
    """A text stream over ``stream`` that drops what it cannot write: after the first failure
    (``OSError``, or ``ValueError`` from a closed file) it writes nothing more. Anything else is
    the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream: Any = stream
        self._failed = False

    def write(self, text: str) -> int:
        """Write ``text``, or drop it."""
        if not self._failed:
            try:
                return int(self._stream.write(text))
            except (OSError, ValueError):
                self._failed = True
        return len(text)

    def flush(self) -> None:
        """Flush, or drop what is pending."""
        if not self._failed:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._failed = True

    def isatty(self) -> bool:
        """Whether the stream is a terminal that still takes writes."""
        try:
            return not self._failed and bool(self._stream.isatty())
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class StdoutError(OSError):
    """A write to stdout failed (a full disk, an I/O error, a reader gone)."""


class ReportStream:
    """A text stream over stdout whose failed writes raise :class:`StdoutError`, so that a
    failure to write what the program reports is told from any other ``OSError``. Anything else
    is the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream: Any = stream

    def write(self, text: str) -> int:
        """Write ``text``."""
        try:
            return int(self._stream.write(text))
        except OSError as error:
            raise StdoutError(error.errno, error.strerror) from None

    def flush(self) -> None:
        """Flush."""
        try:
            self._stream.flush()
        except OSError as error:
            raise StdoutError(error.errno, error.strerror) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
