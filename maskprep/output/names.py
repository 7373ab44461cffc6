"""The names of the files in an output directory: the manifest, shards, rejects and the temporary
names files are written under before they are complete."""

from __future__ import annotations

MANIFEST_NAME = "maskprep.json"
REJECTS_NAME = "rejects.jsonl"
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"


def complete_shards(names: list[str]) -> list[str]:
    """The shard files among ``names`` under their final name (so complete), sorted."""
    suffixes = tuple(EXTENSIONS.values())
    return sorted(n for n in names if n.startswith(SHARD_PREFIX) and n.endswith(suffixes))
