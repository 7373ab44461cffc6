"""The manifest, ``maskprep.json``: the commit marker of an output, created last (never replaced:
a create-only write, put-if-absent on an object store), so that an output holding one is
finished; and read back."""

from __future__ import annotations

import json
import os
from typing import Any

from .. import storage
from ..errors import DataError, OutputError
from .names import MANIFEST_NAME

MANIFEST_FORMAT = 1


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as written: sorted keys, so equal builds give equal bytes."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_manifest(directory: storage.Location, manifest: dict[str, Any]) -> storage.Location:
    """Create ``maskprep.json`` in ``directory``, atomically and only if it is absent."""
    location = directory.join(MANIFEST_NAME)
    try:
        storage.put_if_absent(location, manifest_bytes(manifest))
    except storage.AlreadyExists:
        raise OutputError(
            f"{location.url}: appeared while this build was writing (another writer finished "
            "the output); nothing was replaced"
        ) from None
    return location


def read_manifest(
    directory: str | os.PathLike[str] | storage.Location,
    options: storage.StorageOptions | None = None,
) -> dict[str, Any]:
    """Read a finished output's manifest (a local directory or a URL); a missing one means the
    build did not finish."""
    where = (
        directory
        if isinstance(directory, storage.Location)
        else storage.parse_location(directory, options)
    )
    location = where.join(MANIFEST_NAME)
    try:
        data = storage.read_bytes(location)
    except storage.NotFound:
        raise DataError(f"{where.url}: no {MANIFEST_NAME}; the build did not finish") from None
    except storage.StorageError:
        if location.is_local and os.path.isdir(location.path):
            raise DataError(f"{location.url}: is a directory, not a manifest") from None
        raise
    return parse_manifest(data, location.url)


def parse_manifest(data: bytes, url: str) -> dict[str, Any]:
    """A manifest's bytes as a dict; :class:`DataError` naming ``url`` when they are not a
    manifest (not UTF-8, not JSON, not an object, shards that are not plain names)."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{url}: manifest is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{url}:{exc.lineno}: manifest is not valid JSON: {exc.msg}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{url}: manifest is not a JSON object")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        raise DataError(f"{url}: manifest has no list of shards")
    for index, shard in enumerate(shards):
        path = shard.get("path")
        if not isinstance(path, str) or not _plain_name(path):
            raise DataError(
                f"{url}: shard path {path!r} is not a plain file name inside the output"
            )
        for key in _SHARD_COUNTS:
            value = shard.get(key, 0)
            if type(value) is not int or value < 0:
                raise DataError(f"{url}: shards[{index}].{key} is {value!r}, not a count")
        if not isinstance(shard.get("sha256", ""), str):
            raise DataError(f"{url}: shards[{index}].sha256 is not a hex digest")
    return manifest


#: The counts a shard entry holds (each checked when present).
_SHARD_COUNTS = ("rows", "positions", "real_tokens", "label_tokens")


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
