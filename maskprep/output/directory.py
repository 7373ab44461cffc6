"""Whether and how an output directory may be written: creating it, emptying it of an earlier
build's files, refusing one that holds anything else, and recognising a finished build that a
resumed build may return as it is."""

from __future__ import annotations

from pathlib import Path

from ..config import BuildConfig, OutputConfig
from ..errors import ConfigError, Option, OutputError, os_failure
from .lock import LOCK_NAME
from .manifest import Manifest, RecordedConfig, find_manifest, read_manifest
from .names import (
    EXTENSIONS,
    MANIFEST_NAME,
    MANIFEST_NAMES,
    REJECTS_NAMES,
    SHARD_PREFIX,
    TMP_PREFIX,
    complete_shards,
)


def prepare_output(config: OutputConfig) -> Path:
    """Create the output directory, or empty it of maskprep's files with ``overwrite``.

    A directory holding anything is refused without ``overwrite``; with it, only files maskprep
    writes are removed, and a directory holding anything else is still refused.
    """
    directory = Path(config.directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: output exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    # The lock file is the running build's own (see maskprep.output.lock), not earlier output.
    present = sorted(p.name for p in directory.iterdir() if p.name != LOCK_NAME)
    if not present:
        return directory
    ours = all(_is_ours(name) for name in present)
    if config.resume and ours:
        return directory  # complete shards are checked and reused, the rest is rewritten
    if not config.overwrite and ours and not any(n in present for n in MANIFEST_NAMES):
        raise OutputError.suggesting(
            "{directory}: unfinished build ({shards} complete shards and no {manifest}); resume "
            "it ({resume}) to finish it, or overwrite it ({overwrite}) to start over",
            directory=directory,
            shards=len(complete_shards(present)),
            manifest=MANIFEST_NAME,
            resume=Option("output.resume"),
            overwrite=Option("output.overwrite"),
        )
    if not config.overwrite:
        raise ConfigError(
            f"{directory}: output directory is not empty; pass overwrite to replace its contents"
        )
    foreign = [name for name in present if not _is_ours(name)]
    if foreign:
        raise ConfigError(
            f"{directory}: will not overwrite a directory holding files maskprep did not write "
            f"({', '.join(foreign[:3])})"
        )
    for name in present:
        (directory / name).unlink()
    return directory


def _is_ours(name: str) -> bool:
    bare = name.removeprefix(TMP_PREFIX)
    return bare in MANIFEST_NAMES + REJECTS_NAMES or (
        bare.startswith(SHARD_PREFIX) and bare.endswith(tuple(EXTENSIONS.values()))
    )


def make_output_directory(directory: Path) -> bool:
    """Create ``directory`` (and parents) if needed; return True when this call created it."""
    if directory.exists():
        if not directory.is_dir():
            raise OutputError(f"{directory}: output exists and is not a directory")
        return False
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        return False  # another process made it between the check and here; the lock decides
    except OSError as exc:
        raise os_failure(directory, "cannot create output directory", exc) from None
    return True


def finished_manifest(directory: Path, config: BuildConfig) -> Manifest | None:
    """Resuming an output that already finished: its manifest, when it was built with this config
    (and part); ``None`` when there is nothing finished to return. A finished build made with
    other options is refused."""
    if not config.output.resume or find_manifest(directory) is None:
        return None
    manifest = read_manifest(directory)
    expected = RecordedConfig.from_build(config)
    part = manifest.part
    same_part = (part is None and config.part is None) or (
        part is not None
        and config.part is not None
        and (part.index, part.count) == (config.part.index, config.part.count)
    )
    if manifest.config.raw != expected.raw or not same_part:
        raise OutputError(
            f"{directory}: holds a finished build made with other options; "
            "overwrite it to replace it"
        )
    return manifest
