"""Click helpers every command shares: library errors shown as one line with their exit code, and
parsers of option values."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from .. import config as cfg
from ..errors import MaskprepError


class _Failure(click.ClickException):
    """A library error shown as one line on stderr, with its own exit code."""

    def __init__(self, error: MaskprepError) -> None:
        super().__init__(str(error))
        # click declares exit_code a class variable; this exception carries the error's own.
        setattr(self, "exit_code", error.exit_code)  # noqa: B010


def library_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so that a :class:`~maskprep.errors.MaskprepError` it raises becomes one
    line on stderr and the error's exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MaskprepError as error:
            raise _Failure(error) from None

    return wrapper


def size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: a size such as ``256M`` in bytes."""
    if value is None:
        return None
    try:
        return cfg.parse_size(value)
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None


def buckets_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """Click callback: comma-separated bucket widths."""
    if value is None:
        return None
    try:
        return cfg.parse_buckets(value)
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None


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


def _storage_options(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    from ..storage import parse_option_items, parse_options_text

    try:
        text = os.environ.get(STORAGE_OPTIONS_VARIABLE, "")
        base = parse_options_text(text, source=STORAGE_OPTIONS_VARIABLE)
        return base.merged(parse_option_items(value, source="--storage-option"))
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None
