"""Exceptions maskprep raises; the CLI maps them to exit codes (1 data problem, 2 usage)."""

from __future__ import annotations


class MaskprepError(Exception):
    """Base class of every error maskprep raises on purpose."""

    exit_code = 1


class DataError(MaskprepError):
    """The data has a problem: a bad record, a failed check, a leak."""

    exit_code = 1


class ConfigError(MaskprepError):
    """The request cannot be carried out: bad options, missing input, unusable tokenizer."""

    exit_code = 2


class BadRecordError(DataError):
    """One input record cannot be used; ``location`` is ``file:line``."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Rebuilt from both arguments when unpickled (a Ray worker's error reaching the driver).
        return (type(self), (self.location, self.reason))


class OutputError(ConfigError):
    """The output cannot be written: another build holds it, it is unwritable or the disk is full,
    or it holds an unfinished build. A usage-class error (exit 2): the data is not at fault."""


def one_line(error: BaseException | str, limit: int = 400) -> str:
    """An error message as one line: its non-blank lines joined by spaces, so that a message
    which explains itself over several lines (transformers' do: "…from one of:" then a list)
    keeps its explanation, cut at ``limit`` characters. A blank message gives the exception's
    type name."""
    text = error if isinstance(error, str) else str(error)
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if not joined:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return joined if len(joined) <= limit else joined[: limit - 1].rstrip() + "…"
