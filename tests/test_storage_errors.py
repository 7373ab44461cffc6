"""What a store's error becomes: the request's fault (a usage error, exit 2) or the store's and
the machine's (an I/O failure, exit 1: the same command may work later)."""

from __future__ import annotations

import errno

import pytest

from maskprep import ConfigError, IOFailure
from maskprep.storage import errors as storage_errors
from maskprep.storage.errors import (
    AccessDenied,
    NoSpace,
    NotFound,
    StorageError,
    StorageFailure,
    StorageRequestError,
    translate,
)

URL = "s3://bucket/key"


class _ClientError(Exception):
    """A botocore-style error: the S3 code in ``response``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the GetObject operation")
        self.response = {"Error": {"Code": code}}


def _client_failures() -> dict[str, BaseException]:
    """The HTTP clients' own failure types (botocore's and aiohttp's are no OSError)."""
    found: dict[str, BaseException] = {}
    botocore = pytest.importorskip("botocore.exceptions")
    found["botocore endpoint"] = botocore.EndpointConnectionError(endpoint_url="http://x")
    found["botocore read timeout"] = botocore.ReadTimeoutError(endpoint_url="http://x")
    aiohttp = pytest.importorskip("aiohttp")
    found["aiohttp timeout"] = aiohttp.ServerTimeoutError("Timeout on reading data from socket")
    found["aiohttp disconnected"] = aiohttp.ServerDisconnectedError()
    return found


FAILURES = {
    "network refused": ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    "connection reset": ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    "timeout": TimeoutError("read timed out"),
    "I/O error": OSError(errno.EIO, "Input/output error"),
    "s3fs 500": OSError(errno.EREMOTEIO, "We encountered an internal error"),
    "s3fs 503": OSError(errno.EBUSY, "Please reduce your request rate"),
    "5xx code": _ClientError("InternalError"),
    "throttled": _ClientError("SlowDown"),
}


class ConnectTimeoutLookalike(Exception):
    """A class whose name reads like a network failure, but which is none: failures are told
    apart by type, never by name."""


def _offline_mode() -> BaseException:
    errors = pytest.importorskip("huggingface_hub.errors")
    return errors.OfflineModeIsEnabled("offline mode is enabled")


USAGE = {
    "not found": (FileNotFoundError(errno.ENOENT, "No such file"), NotFound),
    "access denied": (PermissionError(errno.EACCES, "Access Denied"), AccessDenied),
    "bad argument": (OSError(errno.EINVAL, "Invalid argument"), StorageRequestError),
    "client error": (_ClientError("InvalidArgument"), StorageRequestError),
    "something else": (ValueError("unexpected"), StorageRequestError),
    "named like a timeout": (ConnectTimeoutLookalike("unexpected"), StorageRequestError),
}


def test_every_storage_error_class_has_one_exit_code():
    """No class is both a usage error and an I/O failure: each derives from exactly one of
    maskprep's error kinds, which gives its exit code."""
    classes = [
        value
        for value in vars(storage_errors).values()
        if isinstance(value, type) and issubclass(value, StorageError) and value is not StorageError
    ]
    assert len(classes) >= 8
    for cls in classes:
        kinds = [k for k in (ConfigError, IOFailure) if issubclass(cls, k)]
        assert len(kinds) == 1, (cls, kinds)
    assert not issubclass(StorageError, (ConfigError, IOFailure))


@pytest.mark.parametrize("case", ["botocore endpoint", "botocore read timeout", "aiohttp timeout",
                                  "aiohttp disconnected"])  # fmt: skip
def test_a_client_librarys_network_failure_is_an_io_failure(case):
    error = translate(_client_failures()[case], URL)
    assert isinstance(error, StorageFailure) and error.exit_code == 1


def test_huggingface_hub_offline_mode_is_a_usage_error():
    error = translate(_offline_mode(), URL)
    assert type(error) is StorageRequestError and error.exit_code == 2


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_store_or_network_failure_is_an_io_failure_exit_1(case):
    error = translate(FAILURES[case], URL)
    assert isinstance(error, StorageFailure) and isinstance(error, IOFailure)
    assert error.exit_code == 1
    assert str(error).startswith(f"{URL}: ") and len(str(error).splitlines()) == 1


@pytest.mark.parametrize("case", list(USAGE))
def test_a_request_problem_stays_a_usage_error_exit_2(case):
    raised, kind = USAGE[case]
    error = translate(raised, URL)
    assert type(error) is kind and isinstance(error, ConfigError)
    assert not isinstance(error, IOFailure) and error.exit_code == 2


def test_a_full_disk_is_no_space_and_an_io_failure():
    error = translate(OSError(errno.ENOSPC, "No space left on device"), URL)
    assert type(error) is NoSpace and isinstance(error, IOFailure) and error.exit_code == 1


def test_the_cli_exits_with_the_failures_code(tmp_path, runner, monkeypatch):
    """Through a command: a store that fails while the manifest is read exits 1, one line."""
    from maskprep.cli import main
    from maskprep.output import manifest

    def failing(location):
        raise translate(TimeoutError("read timed out"), location.url)

    out = tmp_path / "out"
    out.mkdir()
    (out / "_maskprep.json").write_text("{}")
    monkeypatch.setattr(manifest.storage, "read_bytes", failing)
    result = runner.invoke(main, ["inspect", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr.endswith("cannot read manifest: read timed out\n")
    assert len(result.stderr.splitlines()) == 1


def test_a_blank_message_names_the_exception():
    error = translate(ValueError(""), URL)
    assert str(error) == f"{URL}: ValueError"
    assert not hasattr(storage_errors, "_first_line")  # one first-line helper: errors.first_line


def test_a_store_failure_reading_a_chat_template_is_an_io_failure(monkeypatch):
    from maskprep import storage
    from maskprep.tokenizing import sft

    def failing(location, start, end):
        raise translate(TimeoutError("read timed out"), location.url)

    monkeypatch.setattr(storage, "read_range", failing)  # the template is read bounded
    with pytest.raises(IOFailure, match=r"^s3://b/chat.jinja: cannot read chat template: read"):
        sft.use_chat_template_file(object(), "s3://b/chat.jinja")
