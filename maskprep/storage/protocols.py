"""What each store can do, which optional package serves it, and opening its fsspec filesystem.

The capabilities are what the commit protocol (docs/storage.md) relies on:

``staged_upload``
    An object appears only when its upload completes, and an abandoned upload leaves nothing
    readable (S3 multipart uploads, GCS resumable uploads, Azure uncommitted blocks). Stores
    without it are written under a temporary name and moved into place.
``conditional_create``
    The store refuses, atomically, to create an object that exists (``If-None-Match: *`` on S3
    and Azure, ``ifGenerationMatch=0`` on GCS): put-if-absent (writers' records, manifests).
``compare_and_swap``
    The store replaces an object only if it is still the version given (``If-Match`` on S3's
    ETag; a local file's sha256 under a directory lock), for the commit of an overwrite.
``server_copy``
    A copy within the store runs on the server and the target appears whole (S3 CopyObject,
    GCS rewrite); merge copies parts this way instead of hard-linking them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import MissingExtra, StorageRequestError
from .location import Location


@dataclass(frozen=True)
class Capabilities:
    """What a store supports; see the module notes for what each flag means."""

    writable: bool
    staged_upload: bool
    conditional_create: bool
    compare_and_swap: bool
    server_copy: bool
    #: The module fsspec needs for this protocol, and the maskprep extra that installs it.
    package: str | None = None
    extra: str | None = None


_LOCAL = Capabilities(
    writable=True,
    staged_upload=True,
    conditional_create=True,
    compare_and_swap=True,
    server_copy=False,
)
_S3 = Capabilities(
    writable=True,
    staged_upload=True,
    conditional_create=True,
    compare_and_swap=True,
    server_copy=True,
    package="s3fs",
    extra="s3",
)
# gcsfs and adlfs implement create-only writes (read in gcsfs 2026.10.1 and adlfs 2026.8.0);
# neither is exercised by this project's tests, which have no GCS or Azure server.
_GCS = Capabilities(
    writable=True,
    staged_upload=True,
    conditional_create=True,
    compare_and_swap=False,
    server_copy=True,
    package="gcsfs",
    extra="gcs",
)
# Azure's copy may run asynchronously (the target exists before it is complete): streamed.
_AZURE = Capabilities(
    writable=True,
    staged_upload=True,
    conditional_create=True,
    compare_and_swap=False,
    server_copy=False,
    package="adlfs",
    extra="azure",
)
# Reading from the Hub needs huggingface_hub, one of maskprep's own dependencies.
_HF = Capabilities(
    writable=False,
    staged_upload=False,
    conditional_create=False,
    compare_and_swap=False,
    server_copy=False,
)
# In-process only (tests): its "x" mode is check-then-act, so no conditional writes are claimed.
_MEMORY = Capabilities(
    writable=True,
    staged_upload=False,
    conditional_create=False,
    compare_and_swap=False,
    server_copy=True,
)
_OTHER = Capabilities(
    writable=True,
    staged_upload=False,
    conditional_create=False,
    compare_and_swap=False,
    server_copy=False,
)

KNOWN: dict[str, Capabilities] = {
    "s3": _S3,
    "s3a": _S3,
    "gs": _GCS,
    "gcs": _GCS,
    "az": _AZURE,
    "abfs": _AZURE,
    "abfss": _AZURE,
    "hf": _HF,
    "memory": _MEMORY,
}

#: Defaults under the caller's options: listings are not cached, since other processes (array
#: jobs, Ray workers) write the same prefixes and a stale listing would hide their objects.
DEFAULT_OPTIONS: dict[str, Any] = {"use_listings_cache": False}


def capabilities(location: Location) -> Capabilities:
    """What the store behind ``location`` supports (local paths: everything but a server-side
    copy; a file's version is the sha256 of its bytes)."""
    if location.is_local:
        return _LOCAL
    known = KNOWN.get(location.protocol)
    if known is not None:
        return known
    import fsspec

    if location.protocol not in fsspec.available_protocols():
        raise StorageRequestError(location.url, f"unknown storage protocol {location.protocol!r}")
    return _OTHER


def filesystem(location: Location) -> Any:
    """The fsspec filesystem for a remote ``location``, built from its storage options.

    fsspec keeps one instance per protocol and options, so repeated calls are cheap; pass the
    standard fsspec option ``skip_instance_cache=True`` for a fresh one.
    """
    caps = capabilities(location)
    if caps.package is not None:
        try:
            importlib.import_module(caps.package)
        except ImportError:
            raise MissingExtra(location.url, caps.package, caps.extra or caps.package) from None
    import fsspec

    kwargs = {**DEFAULT_OPTIONS, **location.options.for_protocol(location.protocol)}
    try:
        return fsspec.filesystem(location.protocol, **kwargs)
    except ImportError as exc:
        raise StorageRequestError(location.url, f"cannot load its filesystem: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise StorageRequestError(location.url, f"bad storage option: {exc}") from None
