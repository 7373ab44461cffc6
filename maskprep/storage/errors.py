"""Errors of the storage layer: one line naming the URL, typed so callers can react.

Every concrete class has exactly one exit code, from exactly one of maskprep's error kinds:

- a problem with the request, which must change (exit 2, a :class:`~maskprep.errors.ConfigError`):
  :class:`StorageRequestError` and its kinds, a missing object or bucket (:class:`NotFound`), a
  denied request (:class:`AccessDenied`, inputs included), a lost race (:class:`AlreadyExists`,
  :class:`VersionMismatch`), a store that cannot do what was asked (:class:`Unsupported`), an
  unknown protocol or a bad option;
- the store or the machine failing an operation that should have worked (exit 1, an
  :class:`~maskprep.errors.IOFailure`): :class:`StorageFailure` (a network error or timeout, an
  endpoint nothing answers at, a 5xx answer such as ``InternalError`` or ``SlowDown``) and
  :class:`NoSpace` (a full disk or quota): the same command may work later.

:class:`StorageError` is what they all share (``url`` and ``detail``), so ``except StorageError``
catches any of them; it is never raised itself. Failures are told apart by the types the clients
raise (the standard library's, botocore's, aiohttp's) and by S3's error codes, never by the names
of exception classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sys
from collections.abc import Iterator

from ..errors import ConfigError, IOFailure, first_line


class StorageError(Exception):
    """What every storage error has: ``url`` names the object or prefix, ``detail`` says what
    went wrong. Never raised itself: each subclass is also exactly one of maskprep's error kinds
    (a :class:`~maskprep.errors.ConfigError` or an :class:`~maskprep.errors.IOFailure`), which
    gives its exit code."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(url, detail)
        self.url = url
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.url}: {self.detail}"


class StorageRequestError(StorageError, ConfigError):
    """The request cannot be carried out as given (exit 2): a path that is a directory, a bad
    storage option, an unknown protocol, or an error the store gave that says nothing more."""


class NotFound(StorageRequestError):
    """No such object, directory, prefix or bucket."""


class AccessDenied(StorageRequestError):
    """The store refused the request: credentials or permissions."""


class AlreadyExists(StorageRequestError):
    """A create-only write found the object already there (put-if-absent refused)."""


class VersionMismatch(StorageRequestError):
    """A compare-and-swap lost: the object is no longer the version given."""


class Unsupported(StorageRequestError):
    """The store cannot do what was asked (a conditional write, writing to a read-only store)."""


class StorageFailure(StorageError, IOFailure):
    """The store or the machine failed an operation that should have worked (network, timeout,
    a 5xx answer): exit 1, as every :class:`~maskprep.errors.IOFailure`."""


class NoSpace(StorageFailure):
    """The disk (or a quota, or a file size limit) is full: nothing more can be written."""


class MissingExtra(ConfigError):
    """The optional package for a protocol is not installed; the message names the extra."""

    def __init__(self, url: str, package: str, extra: str) -> None:
        super().__init__(url, package, extra)
        self.url = url
        self.package = package
        self.extra = extra

    def __str__(self) -> str:
        return (
            f"{self.url}: this protocol needs the optional package {self.package}; "
            f"install it with pip install 'maskprep[{self.extra}]'"
        )


#: ``errno`` values of an operation the machine or the network failed.
_FAILURE_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EREMOTEIO,
        errno.EBUSY,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)
#: S3 error codes of a store that failed (HTTP 5xx, throttling, a request that timed out).
_FAILURE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}
    | {"500", "502", "503", "504"}
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return exc.strerror  # the URL already names the file; no need to repeat it
    return first_line(exc)


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of a client library, if that library is loaded (an exception of it can
    only have been raised if it is; nothing is imported here)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names if hasattr(found, name))


def _network_failures() -> tuple[type[BaseException], ...]:
    """The exception types of a network that failed, from the standard library and the HTTP
    clients the stores use (botocore's own are no ``OSError``; aiohttp's server timeout is none
    on Python 3.10, where ``asyncio.TimeoutError`` is not the built-in one)."""
    return (
        ConnectionError,
        TimeoutError,
        asyncio.TimeoutError,
        *_loaded("botocore.exceptions", "ConnectionError", "HTTPClientError"),
        *_loaded("aiohttp", "ClientConnectionError"),
        *_loaded("requests.exceptions", "ConnectionError", "Timeout"),
    )


def is_offline_mode(exc: BaseException) -> bool:
    """Whether ``exc`` is huggingface_hub's offline mode refusing a request: a
    ``ConnectionError`` that is the environment's setting, so the request must change (it will
    not work later by itself)."""
    offline = _loaded("huggingface_hub.errors", "OfflineModeIsEnabled")
    return bool(offline) and isinstance(exc, offline)


def _failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the store, the network or the machine failed, not the request."""
    if is_offline_mode(exc):
        return False
    if isinstance(exc, _network_failures()):
        return True
    if isinstance(exc, OSError) and exc.errno in _FAILURE_ERRNOS:
        return True
    return _s3_code(exc) in _FAILURE_CODES


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated (kept as its ``__cause__``)."""
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
    return None


def is_precondition_failure(exc: BaseException) -> bool:
    """Whether a store refused a conditional request (HTTP 412, or S3's 409 conflict)."""
    if isinstance(exc, FileExistsError):
        return True
    code = _s3_code(exc)
    if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
        return True
    # s3fs turns a 412 without an If-None-Match condition into OSError(EINVAL, message).
    return isinstance(exc, OSError) and exc.errno == errno.EINVAL and "condition" in str(exc)


def is_range_past_end(exc: BaseException) -> bool:
    """Whether a ranged read started past the end of the object (HTTP 416)."""
    return _s3_code(exc) == "InvalidRange" or "not satisfiable" in str(exc)


def translate(exc: BaseException, url: str) -> StorageError:
    """The :class:`StorageError` for an error a filesystem raised about ``url``."""
    text = str(exc).lower()
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, FileNotFoundError) or _s3_code(exc) in ("NoSuchKey", "NoSuchBucket"):
        if "bucket" in text or _s3_code(exc) == "NoSuchBucket":
            return NotFound(url, "no such bucket")
        return NotFound(url, "no such file, object or prefix")
    if isinstance(exc, FileExistsError):
        return AlreadyExists(url, "already exists")
    if isinstance(exc, PermissionError):
        return AccessDenied(url, f"access denied ({_reason(exc)})")
    if isinstance(exc, IsADirectoryError):
        return StorageRequestError(url, "is a directory")
    if isinstance(exc, NotADirectoryError):
        return StorageRequestError(url, "a parent is not a directory")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return NoSpace(url, os.strerror(exc.errno))
    if _failed(exc):
        return StorageFailure(url, _reason(exc))
    return StorageRequestError(url, _reason(exc))


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Any error a filesystem raises in the block as its :class:`StorageError` about ``url``."""
    try:
        yield
    except Exception as exc:
        raise translate(exc, url) from None
