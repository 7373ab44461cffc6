"""The names of the files in an output directory: the manifest, shards, rejects, the lock, the
temporary names files are written under before they are complete, and the staging directory an
overwrite builds in.

Dataset readers (``pyarrow.dataset``, polars, DuckDB, Spark) read a directory as data and skip
only names that start with ``_`` or ``.``; any other file breaks them. So everything in an output
directory that is not a shard starts with one of those: ``_maskprep.json``, ``_rejects.jsonl``,
``.tmp-…``, ``.maskprep.lock``, ``.staging-…/``. Outputs written before that rule name the
manifest ``maskprep.json`` and the rejects ``rejects.jsonl``; every reader still accepts them
(:data:`LEGACY_MANIFEST_NAME`, :data:`LEGACY_REJECTS_NAME`), and a new build writes only the new
names.
"""

from __future__ import annotations

import re

MANIFEST_NAME = "_maskprep.json"
REJECTS_NAME = "_rejects.jsonl"
LEGACY_MANIFEST_NAME = "maskprep.json"
LEGACY_REJECTS_NAME = "rejects.jsonl"
#: Manifest names a reader looks for, the current one first.
MANIFEST_NAMES = (MANIFEST_NAME, LEGACY_MANIFEST_NAME)
REJECTS_NAMES = (REJECTS_NAME, LEGACY_REJECTS_NAME)
LOCK_NAME = ".maskprep.lock"
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"
#: An overwrite of a finished output builds the new one in ``.staging-<16 hex>/`` inside it
#: (hidden from dataset readers, which skip ``.`` names) and swaps it in once complete.
STAGING_PREFIX = ".staging-"

_SHARD_NAME = re.compile(
    re.escape(SHARD_PREFIX) + r"[0-9]+(" + "|".join(map(re.escape, EXTENSIONS.values())) + r")"
)
_STAGING = re.compile(r"\.staging-[0-9a-f]{16}")
#: ``.tmp-NAME.<16 hex>``: the storage layer's writers; ``.tmp-NAME``: maskprep before it.
_TEMPORARY = re.compile(r"\.tmp-(.+?)(\.[0-9a-f]{16})?")


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a plain shard file name (``data-00000.parquet``): no directory part,
    nothing but the shard number between prefix and extension."""
    return _SHARD_NAME.fullmatch(name) is not None


def shard_name(index: int, shard_format: str) -> str:
    """The name of shard ``index`` (0-based) of a ``shard_format`` output."""
    return f"{SHARD_PREFIX}{index:05d}{EXTENSIONS[shard_format]}"


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
    return name in MANIFEST_NAMES + REJECTS_NAMES or is_shard_name(name)
