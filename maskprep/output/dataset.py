"""Reading a finished output back: its shard paths, or the whole as a ``datasets.Dataset``."""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def shard_urls(location: storage.Location) -> list[str]:
    """The shards of a finished output, in manifest order: local paths, or URLs of objects on
    the store (``s3://bucket/out``) that ``location``'s storage options configure."""
    if location.is_local:
        return [str(p) for p in shard_paths(location.path)]
    manifest = read_manifest(location)
    return [location.join(shard.path).url for shard in manifest.shards]


def load_dataset(
    directory: str | os.PathLike[str],
    storage_options: storage.StorageOptions | Mapping[str, Any] | None = None,
) -> Any:
    """Open a finished output as a Hugging Face ``datasets.Dataset``; needs the ``datasets``
    extra. A local output is memory-mapped where it lies. An output on an object store
    (``s3://bucket/out``) is read through fsspec with ``storage_options`` (a
    :class:`~maskprep.storage.StorageOptions`, or a dict of filesystem keyword arguments as
    ``datasets`` takes them); ``datasets`` copies its shards into its cache first, as it does
    for any remote data file."""
    options = (
        storage_options
        if isinstance(storage_options, storage.StorageOptions) or storage_options is None
        else storage.StorageOptions.from_mapping(storage_options)
    )
    location = storage.parse_location(directory, options)
    paths = shard_urls(location)  # a broken output is named first
    require_extra("datasets", "datasets", "load_dataset")
    import datasets

    kind = "parquet" if paths and paths[0].endswith(".parquet") else "arrow"
    if location.is_local:
        return datasets.load_dataset(kind, data_files=paths, split="train")
    fs_options = location.options.for_protocol(location.protocol)
    try:
        return datasets.load_dataset(
            kind, data_files=paths, split="train", storage_options=fs_options
        )
    except ConnectionError as exc:
        if not storage.is_offline_mode(exc):
            raise
        # datasets reads HF_HUB_OFFLINE as "no remote files at all", object stores included.
        raise ConfigError(
            f"{location.url}: datasets is offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set) "
            "and reads no remote file; set HF_DATASETS_OFFLINE=0 to read the shards from the "
            "store while the Hub stays offline"
        ) from None
