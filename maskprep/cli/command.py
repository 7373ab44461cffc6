"""How every ``maskprep`` command ends, in one place: what it reports (``--json`` or a rendering
for people) and its exit code, and how a failure is told.

A command returns a :class:`Report`; :class:`Command` prints it as JSON with ``"ok"`` added
(``--json``), or renders it, and exits 1 when it is not ok. A failure (a usage error, a library
error with the options it suggests shown as flags, running out of memory) is one line on stderr
with its exit code, control characters in it escaped (a file name may hold a newline); with
``--json`` it is also ``{"ok": false, "error": {...}}`` on stdout, so a CI job reading stdout
always gets one JSON document. SIGINT / SIGTERM stop a command cleanly (exit 130 / 143).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from ..errors import BadRecordError, IOFailure, MaskprepError, escaped, os_reason
from .common import flag, stopped_by_signals

#: The flag that asks a command for JSON on stdout.
JSON_FLAG = "--json"


@dataclass(frozen=True)
class Report:
    """What a command has to say: ``data`` for ``--json`` (``"ok"`` is added), ``show`` to render
    it for people (``None``: nothing to show, as with ``--quiet``), and whether it is ``ok``
    (exit 0) or found a problem in the data (exit 1: a failed check, a leak)."""

    data: dict[str, Any]
    show: Callable[[], None] | None = None
    ok: bool = True


def _error_json(error: click.ClickException, cause: BaseException | None) -> dict[str, Any]:
    if isinstance(cause, MaskprepError):
        kind = type(cause).__name__
    elif isinstance(cause, MemoryError):
        kind = "MemoryError"
    else:
        kind = "UsageError"
    detail: dict[str, Any] = {
        "type": kind,
        "message": error.format_message(),  # with the option it names, as stderr shows it
        "exit_code": error.exit_code,
    }
    if isinstance(cause, BadRecordError):
        detail["location"] = escaped(cause.location)
    return {"ok": False, "error": detail}


def _print(report: Report, as_json: bool) -> None:
    """Write ``report`` on stdout, flushed, so that a failing write fails here."""
    if not as_json and report.show is None:
        return
    if sys.stdout is None:  # closed by the caller (>&-): Python leaves no stream
        raise OSError(errno.EBADF, "it is closed")
    if as_json:
        click.echo(json.dumps({"ok": report.ok, **report.data}, indent=2))
    elif report.show is not None:
        report.show()
    sys.stdout.flush()


def discard_stdout() -> None:
    """After a failed write, point descriptor 1 at ``/dev/null``: what stdout still buffers is
    then dropped at exit, where flushing it again would fail once more (Python would print
    "Exception ignored" and exit 120)."""
    try:
        if sys.stdout is None or sys.stdout.fileno() != 1:
            return  # not the process's descriptor (a test runner's buffer)
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return
    os.dup2(null, 1)
    os.close(null)


class Command(click.Command):
    """A ``maskprep`` command: ends by :class:`Report` or by one line of failure (see the module
    notes)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse ``args``; a usage error is told as every failure is."""
        try:
            return super().make_context(info_name, list(args), parent=parent, **extra)
        except click.ClickException as error:
            self._tell(error, None, self._asked_json(args, parent))
            raise

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command and print its :class:`Report`; tell a failure."""
        as_json = bool(ctx.params.get("as_json"))
        try:
            with stopped_by_signals():
                report = super().invoke(ctx)
        except click.ClickException as error:
            self._tell(error, None, as_json)
            raise
        except MaskprepError as cause:
            # The library names options by their config fields; the command line, by its flags.
            failure = click.ClickException(cause.render(flag))
            failure.exit_code = cause.exit_code  # type: ignore[misc]  # Click reads the instance's
            self._tell(failure, cause, as_json)
            raise failure from None
        except MemoryError as cause:
            failure = click.ClickException(
                "out of memory; a smaller --batch-size (or --max-length) needs less"
            )
            self._tell(failure, cause, as_json)
            raise failure from None
        if isinstance(report, Report):
            try:
                _print(report, as_json)
            except OSError as error:
                if error.errno == errno.EPIPE:
                    raise  # the reader left (| head): Click ends quietly, exit 1
                discard_stdout()
                unwritten = IOFailure(f"cannot write the report to stdout: {os_reason(error)}")
                failure = click.ClickException(str(unwritten))
                failure.exit_code = unwritten.exit_code  # type: ignore[misc]
                raise failure from None
            if not report.ok:
                ctx.exit(1)
        return report

    @staticmethod
    def _tell(error: click.ClickException, cause: BaseException | None, as_json: bool) -> None:
        """Make ``error``'s message one printable line; with ``as_json``, print the failure as
        JSON on stdout too (the message itself still goes to stderr, as Click shows it)."""
        # Changed in place: Click shows this very exception, with its Usage/Try lines.
        error.message = escaped(error.message)  # type: ignore[misc]
        if as_json:
            try:
                click.echo(json.dumps(_error_json(error, cause), indent=2))
            except OSError:  # stdout unusable: the message on stderr still tells the failure
                discard_stdout()

    def _asked_json(self, args: Sequence[str], parent: click.Context | None) -> bool:
        """Whether ``args`` ask for ``--json``, found by parsing them leniently (they failed to
        parse as given): a ``--json`` given as another option's value does not count."""
        try:
            ctx = click.Context(self, parent=parent, resilient_parsing=True)
            parser = self.make_parser(ctx)
            parser.ignore_unknown_options = True
            opts, _, _ = parser.parse_args(args=list(args))
            return bool(opts.get("as_json"))
        except click.ClickException:
            return JSON_FLAG in args
