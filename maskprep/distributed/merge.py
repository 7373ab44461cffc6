"""``maskprep merge``: finished parts of one build (array jobs) joined under one manifest.

Shard data is not copied through this process: each part's shards are hard-linked into the
merged output under consecutive names (``data-00000…``, part 0's first), so the output is a
normal, self-contained maskprep output whose files share storage with the parts. Hard links
rather than paths into the part directories, because a link survives the parts being moved,
deleted or rebuilt. Across filesystems a shard is copied; on an object store it is copied
server-side (:mod:`.merge_output`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import storage
from .._version import __version__
from ..errors import ConfigError, DataError
from ..output.lock import DEFAULT_LEASE_TTL
from ..output.manifest import MANIFEST_FORMAT, read_manifest
from ..output.names import MANIFEST_NAME, REJECTS_NAME
from ..output.session import OutputRequest, OutputSession, write_failures
from .merge_output import place_parts


@dataclass(frozen=True)
class PartOutput:
    """One finished part: its directory and manifest."""

    directory: storage.Location
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        """The part's index, 0-based."""
        return int(self.manifest["part"]["index"])


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the output (as given: a path or a URL), its manifest, and how the
    shards got there."""

    output: str
    manifest: dict[str, Any]
    parts: int
    shards: int
    linked: int
    copied: int


def read_part(
    directory: str | os.PathLike[str], options: storage.StorageOptions | None = None
) -> PartOutput:
    """Read a finished part's manifest; an unfinished output or a whole build is refused."""
    location = storage.parse_location(directory, options)
    if not storage.exists(location.join(MANIFEST_NAME)):
        raise ConfigError(
            f"{location}: not a finished part (no {MANIFEST_NAME}); finish it (resume) before "
            "merging"
        )
    manifest = read_manifest(location)
    if "part" not in manifest:
        raise ConfigError(f"{location}: a whole build, not a part (built without a part index)")
    return PartOutput(location, manifest)


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
    storage_options: storage.StorageOptions | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> MergeResult:
    """Join the finished parts in ``part_dirs`` (any order) into one output at ``output``;
    ``engine`` (e.g. ``"ray"``) is recorded in the manifest when given. Parts and output are
    local directories or object-store URLs, configured by ``storage_options``.

    Raises :class:`ConfigError` when a part is unfinished, missing, given twice or from another
    build, and :class:`DataError` when the parts hold no rows at all.
    """
    parts = check_parts([read_part(d, storage_options) for d in part_dirs])
    location = storage.parse_location(output, storage_options)
    for part in parts:
        if _same_place(part.directory, location):
            raise ConfigError(f"{output}: the output of a merge cannot be one of its parts")
    totals = _sum_totals([p.manifest["totals"] for p in parts])
    if totals["records_read"] == 0:
        raise DataError(f"{len(parts)} parts: no documents in the input")
    if totals["rows_written"] == 0:
        raise DataError(f"{len(parts)} parts: no document could be used; see {REJECTS_NAME}")
    request = OutputRequest(overwrite=overwrite, merge=True, lease_ttl=lease_ttl)
    with write_failures(location), OutputSession.open(location, request) as session:
        return merge_into(session, parts, totals, engine)


def _same_place(a: storage.Location, b: storage.Location) -> bool:
    if a.is_local and b.is_local:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    return (a.protocol, a.path) == (b.protocol, b.path)


def merge_into(
    session: OutputSession,
    parts: list[PartOutput],
    totals: dict[str, Any],
    engine: str | None = None,
) -> MergeResult:
    """Write the merged output of ``parts`` through ``session`` (which holds its lock): shards
    and rejects placed, then the manifest, last."""
    session.begin()
    placed = place_parts(session, parts)
    try:
        manifest = merged_manifest(parts, placed.shards, totals, engine)
        session.commit(manifest)
    except BaseException:
        placed.abort()
        raise
    return MergeResult(
        session.location.url,
        manifest,
        len(parts),
        len(placed.shards),
        placed.linked,
        placed.copied,
    )


def merged_manifest(
    parts: list[PartOutput],
    shard_entries: list[dict[str, Any]],
    totals: dict[str, Any],
    engine: str | None,
) -> dict[str, Any]:
    """The merged output's manifest: the parts' config and tokenizer, every part's inputs and
    shards (renamed), summed totals and fill, and where each part came from."""
    first = parts[0].manifest
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
    return manifest


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
