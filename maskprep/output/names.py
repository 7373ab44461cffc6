"""The names of the files in an output directory: the manifest, shards, rejects, the lock, the
temporary names files are written under before they are complete, and the staging directory an
overwrite builds in."""

from __future__ import annotations

import re

MANIFEST_NAME = "maskprep.json"
REJECTS_NAME = "rejects.jsonl"
LOCK_NAME = ".maskprep.lock"
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"
#: An overwrite of a finished output builds the new one in ``.staging-<16 hex>/`` inside it
#: (hidden from dataset readers, which skip ``.`` names) and swaps it in once complete.
STAGING_PREFIX = ".staging-"

_SHARD = re.compile(r"data-[0-9]{5}\.(parquet|arrow)")
_STAGING = re.compile(r"\.staging-[0-9a-f]{16}")
#: ``.tmp-NAME.<16 hex>``: the storage layer's writers; ``.tmp-NAME``: maskprep before it.
_TEMPORARY = re.compile(r"\.tmp-(.+?)(\.[0-9a-f]{16})?")


def shard_name(index: int, format: str) -> str:
    """The name of shard ``index`` (0-based) in ``format``: ``data-00000.parquet``."""
    return f"{SHARD_PREFIX}{index:05d}{EXTENSIONS[format]}"


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is exactly a name maskprep gives a shard (``data-NNNNN.parquet``)."""
    return _SHARD.fullmatch(name) is not None


def complete_shards(names: list[str]) -> list[str]:
    """The shard files among ``names`` under their final name (so complete), sorted."""
    return sorted(n for n in names if is_shard_name(n))


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is an overwrite's staging directory."""
    return _STAGING.fullmatch(name) is not None


def temporary_target(name: str) -> str | None:
    """The final name a temporary file stands for (``.tmp-data-00000.parquet.<hex>`` →
    ``data-00000.parquet``), or ``None`` when ``name`` is not a temporary name."""
    match = _TEMPORARY.fullmatch(name)
    return match.group(1) if match else None


def is_own_name(name: str) -> bool:
    """Whether ``name`` is one maskprep writes in an output directory (ownership of the file
    itself is decided by :mod:`.directory`, never by the name alone)."""
    return name in (MANIFEST_NAME, REJECTS_NAME) or is_shard_name(name)
