"""Exceptions maskprep raises, and the exit code the CLI gives each.

=====  ==========================================================================================
exit   meaning
=====  ==========================================================================================
0      success
1      the run failed: the data has a problem (:class:`DataError`: a bad record under the
       ``fail`` policy, a failed ``inspect`` check, a leak found by ``verify``, a broken
       manifest), or the machine failed an operation that should have worked
       (:class:`IOFailure`: disk full, quota exceeded, an I/O error, an object store or the
       network failing)
2      usage, the command must change (:class:`ConfigError`: bad options, a missing input, an
       unusable tokenizer, an output directory that is busy, holds an unfinished build, is not
       empty or may not be overwritten)
130    interrupted (SIGINT); 143 terminated (SIGTERM): 128 + the signal number, as shells report
=====  ==========================================================================================

An I/O failure is not a usage error: the same command may work on another machine or once space
is freed, so it must not read as "fix the command" (2). It exits 1, "the run failed", rather than
a code of its own: scripts and CI jobs test 0 / 1 / 2, and a new code would be read as a crash.
The message says which failure it was, and the library raises its own class
(:class:`IOFailure`, not a :class:`DataError`) for callers that retry.

Library messages never name command-line flags (the library is also called from Python, where
there are none). A message that suggests an option writes it as an :class:`Option` in an f-string
and lists it in ``suggests=``: ``str(error)`` shows the field (``output.resume=True``) and the CLI
shows the flag (``--resume``), see :meth:`MaskprepError.render`.

Errors pickle by the standard means (a Ray worker's error reaches the driver pickled): every
constructor argument goes to :class:`Exception` (a class whose message joins several says so in
``__str__``), and ``suggests`` is an instance attribute.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """An option an error message suggests, named by its config field (``output.resume``,
    ``tokenizer.pad_token``), with the value to give it (``None`` for a switch turned on)."""

    field: str
    value: str | None = None

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.field}=True"
        if self.value == "False":  # a switch turned off
            return f"{self.field}=False"
        return f"{self.field}={self.value!r}"


#: The options an output error suggests most: finish an unfinished build, or replace it.
RESUME = Option("output.resume")
OVERWRITE = Option("output.overwrite")


class MaskprepError(Exception):
    """Base class of every error maskprep raises on purpose. ``suggests``: the options its
    message names (each written as :class:`Option` writes itself), which the CLI shows as flags
    (:meth:`render`)."""

    exit_code = 1
    suggests: tuple[Option, ...] = ()

    def __init__(self, *args: object, suggests: Sequence[Option] = ()) -> None:
        super().__init__(*args)
        if suggests:  # an instance attribute: standard pickling keeps it (a Ray worker's error)
            self.suggests = tuple(suggests)

    def render(self, name: Callable[[Option], str]) -> str:
        """The message with each option it suggests shown by ``name`` (the CLI: its flag)."""
        text = str(self)
        for option in self.suggests:
            text = text.replace(str(option), name(option))
        return text


class DataError(MaskprepError):
    """The data has a problem: a bad record, a failed check, a leak."""

    exit_code = 1


class ManifestError(DataError):
    """A manifest cannot be used as it is: ``path`` names the file, ``field`` the entry at fault
    (``shards[2].path``; empty when the file as a whole is unreadable)."""

    def __init__(self, path: str, field: str, problem: str) -> None:
        # The field path holds the manifest's own keys and the problem its values: either may
        # hold a newline, and the message must stay one line wherever it is shown.
        super().__init__(path, field, problem)
        self.path = path
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else self.path
        return escaped(f"{where}: {self.problem}")


class ConfigError(MaskprepError):
    """The request cannot be carried out: bad options, missing input, unusable tokenizer."""

    exit_code = 2


class BadRecordError(DataError):
    """One input record cannot be used; ``location`` is ``file:line``."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(location, reason)
        self.location = location
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


class OutputError(ConfigError):
    """The output directory cannot be used as asked: another build holds it, it holds an
    unfinished build or files maskprep did not write, or it may not be overwritten. A usage error
    (exit 2): the data is not at fault, and another directory or option would work."""


class IOFailure(MaskprepError):
    """The machine failed an operation that should have worked: the disk or quota is full, a
    device reported an I/O error. Not a usage error: the same command may work elsewhere or
    later (exit 1, see the module notes)."""

    exit_code = 1


#: ``errno`` values that say the request named an unusable place (a usage error), not that the
#: machine failed.
_USAGE_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)


def escaped(text: str) -> str:
    """``text`` with its control and other unprintable characters escaped (``\\n``, ``\\x1b``,
    ``\\u2028``), so a message stays one line whatever the names and values in it hold."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """The first non-blank line of an error message, for a one-line report; ``default`` (else
    the exception's type name) when the message is blank."""
    text = error if isinstance(error, str) else str(error)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    if default is not None:
        return default
    return type(error).__name__ if isinstance(error, BaseException) else ""


def os_reason(exc: OSError) -> str:
    """An ``OSError`` as one line: its reason, and the file it names when it names one."""
    reason = exc.strerror or first_line(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def os_failure(where: object, doing: str, exc: OSError) -> MaskprepError:
    """An ``OSError`` met while ``doing`` something at ``where`` as maskprep's error: a place
    that cannot be used as asked (permissions, a read-only filesystem, a missing or wrong kind of
    path) is an :class:`OutputError` (usage); anything else, such as a full disk, an
    :class:`IOFailure`."""
    kind: type[MaskprepError] = OutputError if exc.errno in _USAGE_ERRNOS else IOFailure
    return kind(f"{where}: {doing}: {os_reason(exc)}")


def one_line(error: BaseException | str, limit: int = 400) -> str:
    """An error message as one line: its non-blank lines joined by spaces, so that a message
    which explains itself over several lines (transformers' do: "…from one of:" then a list)
    keeps its explanation, cut at ``limit`` characters. A blank message gives the exception's
    type name."""
    text = error if isinstance(error, str) else str(error)
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if not joined:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    if isinstance(error, KeyError):  # str(KeyError) is the bare key: say what it means
        joined = f"missing key {joined}"
    return joined if len(joined) <= limit else joined[: limit - 1].rstrip() + "…"
