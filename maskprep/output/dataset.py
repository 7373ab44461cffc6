"""Reading a finished output back: its shard paths, or the whole as a ``datasets.Dataset``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import storage
from ..errors import ConfigError
from ..extras import require_extra
from .manifest import read_manifest


def shard_paths(directory: str | os.PathLike[str]) -> list[Path]:
    """Paths of a finished local output's shards, in manifest order. An object-store output is
    refused with a one-line error: its shards are objects, read with pyarrow or fsspec."""
    if not storage.parse_location(directory).is_local:
        raise ConfigError(
            f"{directory}: a local output directory is needed here; read the shards of an "
            "object-store output with pyarrow.dataset or fsspec"
        )
    manifest = read_manifest(directory)
    return [Path(directory) / shard.path for shard in manifest.shards]


def load_dataset(directory: str | os.PathLike[str]) -> Any:
    """Open a finished output as a Hugging Face ``datasets.Dataset`` (memory-mapped); needs the
    ``datasets`` extra."""
    paths = [str(p) for p in shard_paths(directory)]  # a broken output is named first
    require_extra("datasets", "datasets", "load_dataset")
    import datasets

    kind = "parquet" if paths and paths[0].endswith(".parquet") else "arrow"
    return datasets.load_dataset(kind, data_files=paths, split="train")
