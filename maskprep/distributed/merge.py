"""``maskprep merge``: finished parts of one build (array jobs) joined under one manifest.

Shard data is not copied: each part's shards are hard-linked into the merged output under
consecutive names (``data-00000…``, part 0's first), so the output is a normal, self-contained
maskprep output whose files share storage with the parts. Hard links rather than paths into the
part directories, because a link survives the parts being moved, deleted or rebuilt. Across
filesystems a link is impossible and the shard is copied (counted in the result).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import OutputConfig
from ..errors import ConfigError, DataError, OutputError
from ..output.directory import make_output_directory, prepare_output
from ..output.lock import OutputLock
from ..output.manifest import MANIFEST_FORMAT, write_manifest
from ..output.names import EXTENSIONS, MANIFEST_NAME, REJECTS_NAME, SHARD_PREFIX
from ..output.shards import atomic_write_bytes


@dataclass(frozen=True)
class PartOutput:
    """One finished part: its directory and manifest."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        """The part's index, 0-based."""
        return int(self.manifest["part"]["index"])


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the output, its manifest, and how the shards got there."""

    output: Path
    manifest: dict[str, Any]
    parts: int
    shards: int
    linked: int
    copied: int


def read_part(directory: str | os.PathLike[str]) -> PartOutput:
    """Read a finished part's manifest; an unfinished output or a whole build is refused."""
    path = Path(directory)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ConfigError(
            f"{path}: not a finished part (no {MANIFEST_NAME}); finish it (resume) before merging"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}:{exc.lineno}: manifest is not valid JSON") from None
    if "part" not in manifest:
        raise ConfigError(f"{path}: a whole build, not a part (built without a part index)")
    return PartOutput(path, manifest)


def check_parts(parts: Sequence[PartOutput]) -> list[PartOutput]:
    """The parts in index order, after checking they are all N parts of one build exactly once,
    with the same config, tokenizer, format and maskprep version."""
    if not parts:
        raise ConfigError("no parts to merge")
    first = parts[0]
    count = int(first.manifest["part"]["count"])
    for part in parts[1:]:
        if int(part.manifest["part"]["count"]) != count:
            raise ConfigError(
                f"{part.directory}: part of {part.manifest['part']['count']} parts, but "
                f"{first.directory} is part of {count}"
            )
        for key in ("config", "tokenizer", "format", "maskprep_version"):
            difference = _first_difference(first.manifest[key], part.manifest[key], key)
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

    Raises :class:`ConfigError` when a part is unfinished, missing, given twice or from another
    build, and :class:`DataError` when the parts hold no rows at all.
    """
    parts = check_parts([read_part(d) for d in part_dirs])
    directory = Path(output).resolve()
    for part in parts:
        if part.directory.resolve() == directory:
            raise ConfigError(f"{output}: the output of a merge cannot be one of its parts")
    totals = _sum_totals([p.manifest["totals"] for p in parts])
    if totals["records_read"] == 0:
        raise DataError(f"{len(parts)} parts: no documents in the input")
    if totals["rows_written"] == 0:
        raise DataError(f"{len(parts)} parts: no document could be used; see {REJECTS_NAME}")
    make_output_directory(directory)
    with OutputLock(directory):
        prepare_output(OutputConfig(str(output), overwrite=overwrite))
        try:
            return _write_merged(parts, Path(output), totals, engine)
        except OSError as exc:
            raise OutputError(f"{output}: cannot write output: {exc.strerror or exc}") from None


def _write_merged(
    parts: list[PartOutput], directory: Path, totals: dict[str, Any], engine: str | None
) -> MergeResult:
    first = parts[0].manifest
    extension = EXTENSIONS[first["config"]["output"]["format"]]
    shard_entries: list[dict[str, Any]] = []
    linked = copied = 0
    for part in parts:
        for shard in part.manifest["shards"]:
            name = f"{SHARD_PREFIX}{len(shard_entries):05d}{extension}"
            if _link_or_copy(part.directory / shard["path"], directory / name):
                linked += 1
            else:
                copied += 1
            shard_entries.append({**shard, "path": name})
    if first["config"]["source"]["on_bad_record"] == "skip":
        rejects = b"".join(
            (p.directory / REJECTS_NAME).read_bytes()
            for p in parts
            if (p.directory / REJECTS_NAME).is_file()
        )
        atomic_write_bytes(directory / REJECTS_NAME, rejects)
    manifest = {
        "format": MANIFEST_FORMAT,
        "maskprep_version": __version__,
        "config": first["config"],
        "tokenizer": first["tokenizer"],
        "inputs": [item for p in parts for item in p.manifest["inputs"]],
        "shards": shard_entries,
        "totals": totals,
        "fill": _sum_fill([p.manifest["fill"] for p in parts]),
        "merged_from": [
            {
                "index": p.index,
                "directory": str(p.directory),
                "ranges": p.manifest["part"]["ranges"],
                "shards": len(p.manifest["shards"]),
            }
            for p in parts
        ],
    }
    if first["config"]["shape"]["strategy"] == "pack":
        # Each part packed its own documents: no row holds documents of two parts.
        manifest["pack_scope"] = "part"
    if engine is not None:
        manifest["engine"] = engine
    write_manifest(directory, manifest)
    return MergeResult(directory, manifest, len(parts), len(shard_entries), linked, copied)


def _link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target``; copy across filesystems. True when linked."""
    if not source.is_file():
        raise ConfigError(f"{source}: shard listed in its part's manifest is missing")
    try:
        os.link(source, target)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
    tmp = target.with_name(".tmp-" + target.name)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return False


def _sum_totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    summed: dict[str, Any] = {
        k: sum(item[k] for item in items) for k, v in items[0].items() if isinstance(v, int)
    }
    positions = summed.get("positions", 0)
    summed["fill"] = round(summed.get("real_tokens", 0) / positions, 6) if positions else 0.0
    return summed


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _sum_fill(items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rows", "documents", "positions", "real_tokens")
    fill: dict[str, Any] = {"strategy": items[0]["strategy"]}
    fill.update({k: sum(item[k] for item in items) for k in keys})
    fill["fill"] = _ratio(fill["real_tokens"], fill["positions"])
    fill["documents_per_row"] = _ratio(fill["documents"], fill["rows"])
    if "buckets" in items[0]:
        by_length: dict[int, dict[str, int]] = {}
        for item in items:
            for bucket in item["buckets"]:
                into = by_length.setdefault(
                    bucket["length"], {"rows": 0, "positions": 0, "real_tokens": 0}
                )
                for k in into:
                    into[k] += bucket[k]
        fill["buckets"] = [
            {"length": length, **b, "fill": _ratio(b["real_tokens"], b["positions"])}
            for length, b in sorted(by_length.items())
        ]
    return fill
