"""Click helpers every command shares: library errors shown as one line with their exit code, and
parsers of option values."""

from __future__ import annotations

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
        self.exit_code = error.exit_code
        self.error = error


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


def reject_limit_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> cfg.RejectLimit | None:
    """Click callback: a reject limit, ``N`` records or ``P%`` of the records read."""
    if value is None:
        return None
    try:
        return cfg.parse_reject_limit(value)
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None
