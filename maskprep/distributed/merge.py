"""``maskprep merge``: finished parts of one build (array jobs) joined under one manifest.

Shard data is not copied: each part's shards are hard-linked into the merged output under
consecutive names (``data-00000…``, part 0's first), so the output is a normal, self-contained
maskprep output whose files share storage with the parts. Hard links rather than paths into the
part directories, because a link survives the parts being moved, deleted or rebuilt. Across
filesystems a link is impossible and the shard is copied (counted in the result).

Before anything is written the parts are checked to be the N parts of one build: same config,
tokenizer and version, every index once, the same version of every input (size and modification
time as each part's plan saw them), and byte ranges that tile each input with no gap and no
overlap. Each shard is hashed as it is linked or copied, and one that no longer matches the
sha256 its part recorded is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import OutputConfig
from ..errors import ConfigError, DataError, Option, OutputError, os_failure
from ..output.directory import make_output_directory, prepare_output
from ..output.lock import OutputLock
from ..output.manifest import (
    Manifest,
    MergedPart,
    find_manifest,
    load_manifest,
    manifest_problems,
    write_manifest,
)
from ..output.names import MANIFEST_NAME, REJECTS_NAME, REJECTS_NAMES, TMP_PREFIX, shard_name
from ..output.shards import ShardInfo, atomic_write_bytes, sha256_file
from ..results import Totals
from ..shaping.fill import Fill
from .tiling import check_inputs


@dataclass(frozen=True)
class PartOutput:
    """One finished part: its directory and manifest (which has a ``part`` entry)."""

    directory: Path
    manifest: Manifest

    @property
    def index(self) -> int:
        """The part's index, 0-based."""
        assert self.manifest.part is not None
        return self.manifest.part.index

    @property
    def count(self) -> int:
        """How many parts the build has."""
        assert self.manifest.part is not None
        return self.manifest.part.count


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the output, its manifest, and how the shards got there."""

    output: Path
    manifest: Manifest
    parts: int
    shards: int
    linked: int
    copied: int


def read_part(directory: str | os.PathLike[str]) -> PartOutput:
    """Read a finished part's manifest; an unfinished output, a whole build or a manifest that
    does not add up is refused."""
    path = Path(directory)
    found = find_manifest(path)
    if found is None:
        raise ConfigError(
            f"{path}: not a finished part (no {MANIFEST_NAME}); finish it (resume) before merging"
        )
    manifest = load_manifest(found)
    if manifest.part is None:
        raise ConfigError(f"{path}: a whole build, not a part (built without a part index)")
    problems = manifest_problems(manifest, path)
    if problems:
        raise DataError(f"{found}: {problems[0]}")
    return PartOutput(path, manifest)


def check_parts(parts: Sequence[PartOutput]) -> list[PartOutput]:
    """The parts in index order, after checking they are all N parts of one build exactly once,
    with the same config, tokenizer, format and maskprep version."""
    if not parts:
        raise ConfigError("no parts to merge")
    first = parts[0]
    count = first.count
    recorded = first.manifest.as_dict()
    for part in parts[1:]:
        if part.count != count:
            raise ConfigError(
                f"{part.directory}: part of {part.count} parts, but {first.directory} is part "
                f"of {count}"
            )
        other = part.manifest.as_dict()
        for key in ("config", "tokenizer", "format", "maskprep_version"):
            difference = _first_difference(recorded[key], other[key], key)
            if difference:
                raise ConfigError(
                    f"{part.directory}: not from the same build as {first.directory}: {difference}"
                )
    by_index: dict[int, PartOutput] = {}
    for part in parts:
        if part.index in by_index:
            raise ConfigError(
                f"part {part.index} of {count} given twice: {by_index[part.index].directory} "
                f"and {part.directory}"
            )
        by_index[part.index] = part
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise ConfigError(f"missing part(s) {shown} of {count}")
    return [by_index[i] for i in range(count)]


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    """The first path at which two manifest values differ, as ``where: a != b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if a != b:
        return f"{where} is {json.dumps(b)} here, {json.dumps(a)} there"
    return None


def merge(
    part_dirs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    engine: str | None = None,
) -> MergeResult:
    """Join the finished parts in ``part_dirs`` (any order) into one output at ``output``;
    ``engine`` (e.g. ``"ray"``) is recorded in the manifest when given.

    Raises :class:`ConfigError` when a part is unfinished, missing, given twice, from another
    build or read another version of an input than the others, and :class:`DataError` when a
    part's manifest or shards are not what it built, or the parts hold no rows at all. On any
    error (or an interrupt) the files the merge wrote are removed.
    """
    parts = check_parts([read_part(d) for d in part_dirs])
    directory = Path(output).resolve()
    for part in parts:
        if part.directory.resolve() == directory:
            raise ConfigError(f"{output}: the output of a merge cannot be one of its parts")
    check_inputs([(p.index, str(p.directory), p.manifest.part) for p in parts])  # type: ignore[misc]
    totals = Totals.sum([p.manifest.totals for p in parts])
    if totals.records_read == 0:
        raise DataError(f"{len(parts)} parts: no documents in the input")
    if totals.rows_written == 0:
        raise DataError(f"{len(parts)} parts: no document could be used; see {REJECTS_NAME}")
    make_output_directory(directory)
    with OutputLock(directory):
        _prepare(output, overwrite)
        written: list[Path] = []
        try:
            return _write_merged(parts, Path(output), totals, engine, written)
        except BaseException as exc:
            for path in reversed(written):  # the manifest first, if it got there
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise os_failure(output, "cannot write output", exc) from None
            raise


def _prepare(output: str | os.PathLike[str], overwrite: bool) -> None:
    """The output directory, emptied of an earlier output with ``overwrite``. An unfinished one
    cannot be resumed by a merge (a build's way out): only replacing it is suggested."""
    try:
        prepare_output(OutputConfig(str(output), overwrite=overwrite))
    except OutputError as error:
        if Option("output.resume") not in error.options:
            raise
        raise OutputError.suggesting(
            "{output}: holds an unfinished output ({shards} complete shards and no {manifest}); "
            "overwrite it ({overwrite}) to replace it with the merge",
            output=output,
            shards=error.values.get("shards", "some"),
            manifest=MANIFEST_NAME,
            overwrite=Option("output.overwrite"),
        ) from None


def _write_merged(
    parts: list[PartOutput],
    directory: Path,
    totals: Totals,
    engine: str | None,
    written: list[Path],
) -> MergeResult:
    """Link the shards, join the rejects and write the manifest, recording in ``written`` every
    file made so an error can take them back."""
    first = parts[0].manifest
    shards: list[ShardInfo] = []
    linked = copied = 0
    for part in parts:
        for shard in part.manifest.shards:
            target = directory / shard_name(len(shards), first.config.shard_format)
            linked_here = _link_checked(part.directory / shard.path, target, shard, written)
            linked += linked_here
            copied += not linked_here
            shards.append(ShardInfo(target.name, *_counts(shard)))
    if first.config.on_bad_record == "skip":
        rejects = b"".join(_rejects_bytes(p.directory) for p in parts)
        written.append(directory / REJECTS_NAME)
        atomic_write_bytes(directory / REJECTS_NAME, rejects)
    manifest = Manifest(
        config=first.config,
        tokenizer=first.tokenizer,
        inputs=tuple(item for p in parts for item in p.manifest.inputs),
        shards=tuple(shards),
        totals=totals,
        fill=Fill.sum([p.manifest.fill for p in parts]),
        merged_from=tuple(
            MergedPart(p.index, str(p.directory), p.manifest.part.ranges, len(p.manifest.shards))  # type: ignore[union-attr]
            for p in parts
        ),
        # Each part packed its own documents: no row holds documents of two parts.
        pack_scope="part" if first.config.strategy == "pack" else None,
        engine=engine,
    )
    written.append(directory / MANIFEST_NAME)
    write_manifest(directory, manifest)
    return MergeResult(directory, manifest, len(parts), len(shards), linked, copied)


def _counts(shard: ShardInfo) -> tuple[int, int, int, int, str]:
    return shard.rows, shard.positions, shard.real_tokens, shard.label_tokens, shard.sha256


def _rejects_bytes(directory: Path) -> bytes:
    """A part's rejects file (under the current or the earlier name), or nothing."""
    for name in REJECTS_NAMES:
        if (directory / name).is_file():
            return (directory / name).read_bytes()
    return b""


def _link_checked(source: Path, target: Path, shard: ShardInfo, written: list[Path]) -> bool:
    """Hard-link (across filesystems: copy) a part's shard as ``target`` and check its sha256
    against the part's manifest on the way: every byte is read once. True when linked."""
    if not source.is_file():
        raise ConfigError(f"{source}: shard listed in its part's manifest is missing")
    written.append(target)
    try:
        os.link(source, target)
        digest = sha256_file(target)
        linked = True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        digest = _copy_hashing(source, target)
        linked = False
    if digest != shard.sha256:
        raise DataError(
            f"{source}: does not match the sha256 its part's manifest records (the shard was "
            "changed after the part was built); rebuild the part"
        )
    return linked


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` through a temporary file, hashing the bytes as they pass."""
    tmp = target.with_name(TMP_PREFIX + target.name)
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as reader, open(tmp, "wb") as writer:
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()
