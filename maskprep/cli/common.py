"""Click helpers every command shares: library errors' options shown as flags, signals turned
into a clean stop, parsers of option values, and the storage options of commands that take
URLs."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

import click

from .. import config as cfg
from ..errors import ConfigError, MaskprepError, Option
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
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
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


def parsed_by(parse: Callable[[Any], _T]) -> Callable[..., _T | None]:
    """A Click callback that turns an option's text into ``parse``'s value (an absent option
    stays None); what ``parse`` refuses is a usage error naming the option."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> _T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except MaskprepError as error:
            raise click.BadParameter(str(error)) from None

    return callback


#: Click callback: a size such as ``256M`` in bytes.
size_option = parsed_by(cfg.parse_size)
#: Click callback: comma-separated bucket widths.
buckets_option = parsed_by(cfg.parse_buckets)
#: Click callback: a reject limit, ``N`` records or ``P%`` of the records read.
reject_limit_option = parsed_by(cfg.parse_reject_limit)
#: Click callback: a share, ``P%`` or a fraction such as ``0.05``.
share_option = parsed_by(cfg.parse_share)


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
        callback=parsed_by(_storage_options),
        help="Option of the filesystem of s3://, gs://... paths (repeatable), e.g. "
        "endpoint_url=http://host:9000 or s3:anon=true; added to $"
        + STORAGE_OPTIONS_VARIABLE
        + ".",
    )(command)


def _storage_options(items: tuple[str, ...]) -> Any:
    from ..storage import parse_option_items, parse_options_text

    text = os.environ.get(STORAGE_OPTIONS_VARIABLE, "")
    base = parse_options_text(text, source=STORAGE_OPTIONS_VARIABLE)
    return base.merged(parse_option_items(items, source="--storage-option"))


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
