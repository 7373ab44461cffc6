"""Where an object lives: a local path or a URL, parsed once into a :class:`Location`.

A plain path (``out/``, ``/data/in.jsonl``) and a ``file://`` URL are local and keep the plain
``open``/``os.replace`` code path. Anything else with a ``scheme://`` (``s3://bucket/key``,
``gs://``, ``az://``, ``hf://``, ``memory://``) goes through fsspec. On object stores directories
are key prefixes, so a trailing ``/`` carries no meaning and is dropped.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
import re
from dataclasses import dataclass, field

from ..errors import ConfigError
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
