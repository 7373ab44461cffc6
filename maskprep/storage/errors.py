"""Errors of the storage layer: one line naming the URL, typed so callers can react.

A missing object or bucket, a denied request (credentials, permissions: on an input as on an
output), a lost race, an unknown protocol or a bad option is a problem with the request: those
classes derive from :class:`maskprep.errors.ConfigError` (exit 2). The store or the machine
failing an operation that should have worked (a full disk or quota, a network error or timeout,
a 5xx answer such as ``InternalError`` or ``SlowDown``; an endpoint nothing answers at, which may
be a wrong option as well as a network down) is a :class:`StorageFailure`, also an
:class:`maskprep.errors.IOFailure` (exit 1): the same command may work later. An error the store
raises that is none of these stays a plain :class:`StorageError` (exit 2). Callers that have a
better word for it (an output held by another build) catch and re-raise.
"""

from __future__ import annotations

import errno
import os

from ..errors import ConfigError, IOFailure, first_line


class StorageError(ConfigError):
    """An object or a prefix cannot be read or written; ``url`` names it."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Rebuilt from both arguments when unpickled (a Ray worker's error reaching the driver).
        return (type(self), (self.url, self.detail))


class NotFound(StorageError):
    """No such object, directory, prefix or bucket."""


class AccessDenied(StorageError):
    """The store refused the request: credentials or permissions."""


class AlreadyExists(StorageError):
    """A create-only write found the object already there (put-if-absent refused)."""


class VersionMismatch(StorageError):
    """A compare-and-swap lost: the object's ETag is no longer the one given."""


class Unsupported(StorageError):
    """The store cannot do what was asked (a conditional write, writing to a read-only store)."""


class StorageFailure(StorageError, IOFailure):
    """The store or the machine failed an operation that should have worked (network, timeout,
    a 5xx answer, a full disk): exit 1, as every :class:`~maskprep.errors.IOFailure`."""

    exit_code = 1


class NoSpace(StorageFailure):
    """The disk (or a quota, or a file size limit) is full: nothing more can be written."""


class MissingExtra(ConfigError):
    """The optional package for a protocol is not installed; the message names the extra."""

    def __init__(self, url: str, package: str, extra: str) -> None:
        super().__init__(
            f"{url}: this protocol needs the optional package {package}; "
            f"install it with pip install 'maskprep[{extra}]'"
        )
        self.url = url
        self.package = package
        self.extra = extra

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.url, self.package, self.extra))


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


def _failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the store, the network or the machine failed, not the request."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    if "OfflineModeIsEnabled" in names:
        # huggingface_hub's offline mode (a ConnectionError) is the environment's setting: the
        # request must change, it will not work later by itself.
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _FAILURE_ERRNOS:
        return True
    if _s3_code(exc) in _FAILURE_CODES:
        return True
    # HTTP clients' own connection and timeout errors (botocore, aiohttp) are no OSError.
    return any("Connect" in name or "Timeout" in name for name in names)


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
        return StorageError(url, "is a directory")
    if isinstance(exc, NotADirectoryError):
        return StorageError(url, "a parent is not a directory")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return NoSpace(url, os.strerror(exc.errno))
    if _failed(exc):
        return StorageFailure(url, _reason(exc))
    return StorageError(url, _reason(exc))
