"""Where an object lives (a :class:`Location`: a local path or a URL, parsed once), what its
store can do, and what the store reports about an object.

A plain path (``out/``, ``/data/in.jsonl``) and a ``file://`` URL are local and keep the plain
``open``/``os.replace`` code path. Anything else with a ``scheme://`` (``s3://bucket/key``,
``gs://``, ``az://``, ``hf://``, ``memory://``) goes through fsspec. On object stores directories
are key prefixes, so a trailing ``/`` carries no meaning and is dropped.

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

import contextlib
import datetime as _dt
import importlib
import os
import pathlib
import posixpath
import re
import secrets
import stat as _stat
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .errors import MissingExtra, StorageRequestError
from .options import StorageOptions

LOCAL = "file"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """A parsed path or URL with the storage options that go with it.

    ``protocol`` is ``"file"`` for a local path; ``path`` is the local path as given, or the
    store's path without the scheme (``bucket/key`` on S3).
    """

    protocol: str
    path: str
    options: StorageOptions = field(default_factory=StorageOptions, compare=False)

    @property
    def is_local(self) -> bool:
        """Whether this is a path on the local filesystem."""
        return self.protocol == LOCAL

    @property
    def url(self) -> str:
        """The path as a user would write it: the local path, or ``scheme://path``."""
        return self.path if self.is_local else f"{self.protocol}://{self.path}"

    @property
    def native(self) -> pathlib.Path | str:
        """As results give it: a :class:`pathlib.Path` for a local path, else the URL."""
        return pathlib.Path(self.path) if self.is_local else self.url

    @property
    def name(self) -> str:
        """The last component (a file or object name)."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        """The directory or prefix holding this location."""
        parent = posixpath.dirname(self.path.rstrip("/"))
        if self.is_local:
            parent = parent or "."
        return Location(self.protocol, parent, self.options)

    def join(self, *names: str) -> Location:
        """A location below this one. Each name is a relative ``/``-separated path without
        ``.``, ``..`` or empty parts, so a name read from a manifest cannot climb out."""
        path = self.path
        for name in names:
            parts = name.split("/")
            if not name or any(p in ("", ".", "..") for p in parts):
                raise ConfigError(f"{self.url}: {name!r} is not a plain relative name")
            path = posixpath.join(path, name) if path else name
        return Location(self.protocol, path, self.options)

    def __str__(self) -> str:
        return self.url


def parse_location(text: str | os.PathLike[str], options: StorageOptions | None = None) -> Location:
    """Parse a local path or a URL. ``file:///abs/path`` is local; ``a::b`` chained URLs and
    URLs without a path are refused."""
    options = options or StorageOptions()
    raw = os.fspath(text)
    if not isinstance(raw, str):
        raise ConfigError(f"{raw!r}: expected a path or URL as text")
    if not raw:
        raise ConfigError("empty path")
    match = _SCHEME.match(raw)
    if match is None:
        if "::" in raw.split("/", 1)[0] and "://" in raw:
            raise ConfigError(f"{raw}: chained URLs (a::b) are not supported")
        return Location(LOCAL, raw, options)
    protocol = match.group(1).lower()
    rest = raw[match.end() :]
    if "::" in rest:
        raise ConfigError(f"{raw}: chained URLs (a::b) are not supported")
    if protocol == LOCAL:
        if not rest.startswith("/"):
            raise ConfigError(f"{raw}: a file:// URL needs an absolute path (file:///...)")
        return Location(LOCAL, rest, options)
    path = rest.rstrip("/")
    if not path or path.startswith("/"):
        raise ConfigError(f"{raw}: no bucket or path after {protocol}://")
    return Location(protocol, path, options)


def same_place(a: Location, b: Location) -> bool:
    """Whether two locations name the same place (local paths after resolving links)."""
    if a.is_local and b.is_local:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    return (a.protocol, a.path) == (b.protocol, b.path)


def absolute(location: Location) -> Location:
    """A local path made absolute (another process may not share this one's working directory);
    a URL as it is."""
    if not location.is_local:
        return location
    return Location(location.protocol, os.path.abspath(location.path), location.options)


def local_form(text: str) -> str:
    """A ``file://`` URL as the plain local path it names (so it is read, named and recorded as
    that path); anything else unchanged."""
    if text[:7].lower() == "file://":
        return parse_location(text).path
    return text


#: Prefix of the names a writer uses while an object is incomplete (local files, and stores
#: without staged uploads). Hidden from listings; a crashed writer's leftovers match
#: :func:`is_temporary` and may be removed.
TEMP_PREFIX = ".tmp-"
_TEMPORARY = re.compile(r"\.tmp-.+\.[0-9a-f]{16}")


@dataclass(frozen=True)
class ObjectInfo:
    """One object (or directory / prefix) as the store describes it.

    ``mtime`` is seconds since the epoch (``mtime_ns`` exactly, in nanoseconds, where the
    filesystem says); ``etag`` is the store's entity tag as it gives it (quotes included on S3),
    ``None`` on local files, whose identity is size and mtime. ``regular`` is false for what is
    no regular file nor directory (a named pipe, a device: it cannot be read twice, nor sized).
    """

    location: Location
    size: int
    is_dir: bool = False
    mtime: float | None = None
    etag: str | None = None
    regular: bool = True
    mtime_ns: int | None = None

    @property
    def name(self) -> str:
        """The object's last path component."""
        return self.location.name

    @classmethod
    def from_stat(cls, location: Location, st: os.stat_result) -> ObjectInfo:
        """A local file or directory as ``os.stat`` describes it."""
        is_dir = _stat.S_ISDIR(st.st_mode)
        regular = is_dir or _stat.S_ISREG(st.st_mode)
        size = 0 if is_dir else st.st_size
        return cls(location, size, is_dir, st.st_mtime, None, regular, st.st_mtime_ns)

    @classmethod
    def from_fsspec(cls, location: Location, info: dict[str, Any]) -> ObjectInfo:
        """An object or prefix as an fsspec filesystem describes it."""
        is_dir = info.get("type") == "directory"
        etag = info.get("ETag") or info.get("etag")
        size = 0 if is_dir else int(info.get("size") or 0)
        return cls(location, size, is_dir, _mtime(info), str(etag) if etag else None)


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, _dt.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


@dataclass(frozen=True)
class WriteResult:
    """A completed write: where, how many bytes, their sha256 (computed as they streamed out;
    ``None`` for a server-side copy, whose bytes never passed through), and the new ETag where
    the store returned one."""

    location: Location
    size: int
    sha256: str | None
    etag: str | None = None


def temporary_name(name: str, tag: str | None = None) -> str:
    """A temporary name for ``name`` in the same directory: ``.tmp-NAME.<16 hex>``, the hex
    being the writer's ``tag`` (so that it can find its own) or fresh."""
    return f"{TEMP_PREFIX}{name}.{tag or secrets.token_hex(8)}"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of :func:`temporary_name`'s names (a writer's, never final)."""
    return _TEMPORARY.fullmatch(name) is not None


@dataclass(frozen=True)
class Capabilities:
    """What a store supports; see the module notes for what each flag means."""

    writable: bool = False
    staged_upload: bool = False
    conditional_create: bool = False
    compare_and_swap: bool = False
    server_copy: bool = False
    #: The module fsspec needs for this protocol, and the maskprep extra that installs it.
    package: str | None = None
    extra: str | None = None


_LOCAL = Capabilities(
    writable=True, staged_upload=True, conditional_create=True, compare_and_swap=True
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
    server_copy=True,
    package="gcsfs",
    extra="gcs",
)
# Azure's copy may run asynchronously (the target exists before it is complete): streamed.
_AZURE = Capabilities(
    writable=True, staged_upload=True, conditional_create=True, package="adlfs", extra="azure"
)
# Reading from the Hub needs huggingface_hub, one of maskprep's own dependencies.
_HF = Capabilities()
# In-process only (tests): its "x" mode is check-then-act, so no conditional writes are claimed.
_MEMORY = Capabilities(writable=True, server_copy=True)
_OTHER = Capabilities(writable=True)

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
