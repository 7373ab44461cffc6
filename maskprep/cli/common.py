"""What every ``maskprep`` command shares: how it ends, and the Click helpers it parses with.

A command returns a :class:`Report`; :class:`Command` prints it as JSON with ``"ok"`` added
(``--json``), or renders it, and exits 1 when it is not ok. A failure (a usage error, a library
error with the options it suggests shown as flags, running out of memory) is one line on stderr
with its exit code, control characters in it escaped (a file name may hold a newline); with
``--json`` it is also ``{"ok": false, "error": {...}}`` on stdout, so a CI job reading stdout
always gets one JSON document. SIGINT / SIGTERM stop a command cleanly (exit 130 / 143).

The helpers: library errors' options shown as flags, parsers of option values, the storage
options of commands that take URLs, and options turned into config dataclasses.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

import click

from .. import config as cfg
from ..errors import (
    BadRecordError,
    ConfigError,
    IOFailure,
    MaskprepError,
    Option,
    escaped,
    os_reason,
)
from ..token_ids import token_id_problem

if TYPE_CHECKING:
    from rich.table import Table

_T = TypeVar("_T")

#: Config fields whose command-line flag is not the field's own name.
_FLAGS = {
    "tokenizer.name_or_path": "--tokenizer",
    "output.directory": "--output",
    "output.format": "--format",
}
#: Exit status of a command stopped by a signal: 128 + the signal number, as shells report it.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


def config_from(cls: Callable[..., _T], options: dict[str, Any], **given: Any) -> _T:
    """A ``cls`` (a config dataclass) from a command's ``options`` named as its fields, those
    left unset (``None``) taking the field's default; ``given`` sets the fields whose options
    have other names."""
    named = {
        field.name: options[field.name]
        for field in fields(cls)  # type: ignore[arg-type]
        if field.name not in given and options.get(field.name) is not None
    }
    return cls(**named, **given)


def flag(option: Option) -> str:
    """An option a library error suggests, as the command line spells it:
    ``output.resume`` → ``--resume``, ``tokenizer.pad_token`` = ``eos`` → ``--pad-token eos``,
    ``tokenizer.add_eos`` = ``False`` → ``--no-add-eos``."""
    name = _FLAGS.get(option.field) or "--" + option.field.rsplit(".", 1)[-1].replace("_", "-")
    if option.value == "False":  # a switch turned off: its --no- form
        return "--no-" + name.removeprefix("--")
    return name if option.value is None else f"{name} {option.value}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a command stops as it does on Ctrl-C: the
    library cleans up on the way out (a build keeps its complete shards for a resume)."""


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Run a command's body so that SIGINT / SIGTERM stop it cleanly: the library cleans up on
    the way out, then the command exits 130 / 143 with one line on stderr.

    While the body runs, SIGINT and SIGTERM raise :class:`KeyboardInterrupt` /
    :class:`Terminated` once; later ones are ignored, so the clean-up they start is not cut
    short. The previous handlers come back after, unless a signal stopped the command. The
    signal is also recorded: code the exception passes through may raise it again as a plain
    ``KeyboardInterrupt`` (Ray's waits do), and the exit status must still say which."""
    stopped: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopped.append(signum)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    # The handlers are installed inside the try: a signal the moment after they are (or while
    # they are put back) is caught here too, not by Click ("Aborted!", exit 1).
    try:
        try:
            previous = {n: signal.signal(n, stop) for n in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals are not ours to handle
            previous = {}
        try:
            yield
        finally:
            # Once stopped, the command exits 130/143: signals that come on the way out (a Ray
            # cluster shutting down signals its process group) stay ignored, or the default
            # handler would end the process by the signal instead.
            if not stopped:
                for number, handler in previous.items():
                    signal.signal(number, handler)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, Terminated) or signal.SIGTERM in stopped:
            click.echo("Aborted: terminated (SIGTERM)", err=True)
            raise click.exceptions.Exit(EXIT_SIGTERM) from None
        click.echo("Aborted: interrupted (SIGINT)", err=True)
        raise click.exceptions.Exit(EXIT_SIGINT) from None


def standard_input() -> BinaryIO:
    """This process's standard input as bytes, for a ``-`` argument; a usage error when the
    caller closed it (``<&-``), as ``build -`` says."""
    if sys.stdin is None:
        raise ConfigError("standard input is closed; '-' reads the input from it")
    return sys.stdin.buffer


#: ``-o/--output`` of the commands that write an output (``build``, ``merge``).
output_option = click.option(
    "-o",
    "--output",
    required=True,
    metavar="DIR|URL",
    help="Output directory, or an object-store prefix (s3://bucket/out).",
)


class TokenId(click.ParamType):
    """A token id option (``--pad-id``, ``--eos-id``): an integer an int32 column holds, checked
    as the library checks one (:func:`maskprep.token_ids.token_id_problem`)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """``value`` as a token id; a usage error naming the option otherwise."""
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                number = value
        problem = token_id_problem(number)
        if problem is not None:
            self.fail(problem, param, ctx)
        return number


#: The type of every option that takes a token id.
TOKEN_ID = TokenId()


class Parsed(click.ParamType):
    """An option's value read by one of maskprep's parsers (``parse``), after Click's ``base``
    type (text by default, whose name ``--help`` shows); what the parser refuses (a
    :class:`maskprep.errors.MaskprepError`) is a usage error naming the option."""

    def __init__(self, parse: Callable[[Any], Any], base: click.ParamType = click.STRING) -> None:
        self.parse = parse
        self.base = base
        self.name = base.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """``value`` as ``base`` and then ``parse`` read it; a usage error naming the option
        otherwise."""
        try:
            return self.parse(self.base.convert(value, param, ctx))
        except MaskprepError as error:
            self.fail(str(error), param, ctx)


#: A size such as ``256M``, in bytes.
SIZE = Parsed(cfg.parse_size)
#: Comma-separated bucket widths.
BUCKETS = Parsed(cfg.parse_buckets)
#: A reject limit: ``N`` records, or ``P%`` of the records read.
REJECT_LIMIT = Parsed(cfg.parse_reject_limit)
#: A share: ``P%``, or a fraction such as ``0.05``.
SHARE = Parsed(cfg.parse_share)


#: Storage options every command that takes a path or URL reads before its own flags.
STORAGE_OPTIONS_VARIABLE = "MASKPREP_STORAGE_OPTIONS"


def storage_options_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--storage-option KEY=VALUE`` (repeatable) to a command: fsspec options for the
    filesystems of its URLs, on top of those in ``$MASKPREP_STORAGE_OPTIONS``. The command
    receives them as ``storage_options``, a :class:`maskprep.storage.StorageOptions`."""
    return click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_storage_options,
        help="Option of the filesystem of s3://, gs://... paths (repeatable), e.g. "
        "endpoint_url=http://host:9000 or s3:anon=true; added to $"
        + STORAGE_OPTIONS_VARIABLE
        + ".",
    )(command)


def _storage_options(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> Any:
    # A callback, not a Parsed type: the repeated items merge with the environment's options,
    # which no one item's conversion sees.
    from ..storage import parse_option_items, parse_options_text

    try:
        text = os.environ.get(STORAGE_OPTIONS_VARIABLE, "")
        base = parse_options_text(text, source=STORAGE_OPTIONS_VARIABLE)
        return base.merged(parse_option_items(items, source="--storage-option"))
    except MaskprepError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def two_column_table(
    title: str, rows: list[tuple[str, str]], justify: Literal["left", "right"] = "left"
) -> Table:
    """A rich table of named values under ``title``: names bold, values justified by
    ``justify``; no header."""
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify=justify)
    for name, value in rows:
        table.add_row(name, value)
    return table


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
