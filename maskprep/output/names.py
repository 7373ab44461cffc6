"""The names of the files in an output directory: the manifest, shards, rejects and the temporary
names files are written under before they are complete.

Dataset readers (``pyarrow.dataset``, polars, DuckDB, Spark) read a directory as data and skip
only names that start with ``_`` or ``.``; any other file breaks them. So everything in an output
directory that is not a shard starts with one of those: ``_maskprep.json``, ``_rejects.jsonl``,
``.tmp-…``, ``.maskprep.lock``. Outputs written before that rule name the manifest
``maskprep.json`` and the rejects ``rejects.jsonl``; every reader still accepts them
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
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"

_SHARD_NAME = re.compile(
    re.escape(SHARD_PREFIX) + r"[0-9]+(" + "|".join(map(re.escape, EXTENSIONS.values())) + r")"
)


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a plain shard file name (``data-00000.parquet``): no directory part,
    nothing but the shard number between prefix and extension."""
    return _SHARD_NAME.fullmatch(name) is not None


def shard_name(index: int, shard_format: str) -> str:
    """The name of shard ``index`` (0-based) of a ``shard_format`` output."""
    return f"{SHARD_PREFIX}{index:05d}{EXTENSIONS[shard_format]}"


def complete_shards(names: list[str]) -> list[str]:
    """The shard files among ``names`` under their final name (so complete), sorted."""
    suffixes = tuple(EXTENSIONS.values())
    return sorted(n for n in names if n.startswith(SHARD_PREFIX) and n.endswith(suffixes))
