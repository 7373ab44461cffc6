"""``maskprep merge``: finished parts of one build (array jobs) joined under one manifest.

Shard data is not copied through this process: each part's shards are hard-linked into the
merged output under consecutive names (``data-00000…``, part 0's first), so the output is a
normal, self-contained maskprep output whose files share storage with the parts. Hard links
rather than paths into the part directories, because a link survives the parts being moved,
deleted or rebuilt. Across filesystems a shard is copied; on an object store it is copied
server-side (:mod:`.merge_output`).

Before anything is written the parts are checked to be the N parts of one build: same config,
tokenizer and version, every index once, the same version of every input (size and modification
time as each part's plan saw them), and byte ranges that tile each input with no gap and no
overlap. Each shard is hashed as it is placed, and one that no longer matches the sha256 its part
recorded is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import storage
from ..errors import ConfigError, DataError
from ..output.commit import OutputRequest, OutputSession, write_failures
from ..output.manifest import Manifest, MergedPart, Totals
from ..output.names import REJECTS_NAME
from ..shaping.fill import Fill
from .input_bytes import check_input_bytes as verify_input_bytes
from .merge_output import place_parts
from .part_output import PartOutput, read_part
from .tiling import check_inputs


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the output (as given: a path, or the URL of an object-store
    output), its manifest, and how the shards got there."""

    output: Path | str
    manifest: Manifest
    parts: int
    shards: int
    linked: int
    copied: int


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


def checked_totals(parts: list[PartOutput]) -> Totals:
    """The parts' summed totals, once their inputs are known to tile; refused when the parts
    hold no document, or no row."""
    check_inputs([(p.index, str(p.directory), p.manifest.part) for p in parts])  # type: ignore[misc]
    totals = Totals.sum([p.manifest.totals for p in parts])
    if totals.records_read == 0:
        raise DataError(f"{len(parts)} parts: no documents in the input")
    if totals.rows_written == 0:
        raise DataError(f"{len(parts)} parts: no document could be used; see {REJECTS_NAME}")
    return totals


def merge(
    part_dirs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    engine: str | None = None,
    storage_options: storage.StorageOptions | None = None,
    check_input_bytes: bool = False,
) -> MergeResult:
    """Join the finished parts in ``part_dirs`` (any order) into one output at ``output``;
    ``engine`` (e.g. ``"ray"``) is recorded in the manifest when given. Parts and output are
    local directories or object-store URLs, configured by ``storage_options``.

    The parts must have read one version of the inputs: their plans' sizes and modification
    times are compared always; ``check_input_bytes`` also reads every input again and holds each
    part's bytes to the sha256 it recorded (:mod:`.input_bytes`), which catches a rewrite that
    kept both.

    Raises :class:`ConfigError` when a part is unfinished, missing, given twice, from another
    build or read another version of an input than the others, and :class:`DataError` when a
    part's manifest, shards or rejects file are not what it built, or the parts hold no rows at
    all. On any error (or an interrupt) the files the merge placed are removed.
    """
    parts = check_parts([read_part(d, storage_options) for d in part_dirs])
    location = storage.parse_location(output, storage_options)
    for part in parts:
        if storage.same_place(part.directory, location):
            raise ConfigError(f"{output}: the output of a merge cannot be one of its parts")
    totals = checked_totals(parts)
    if check_input_bytes:
        verify_input_bytes(parts)
    request = OutputRequest(overwrite=overwrite, merge=True)
    with write_failures(location), OutputSession.open(location, request) as session:
        return merge_into(session, parts, totals, engine)


def merge_into(
    session: OutputSession, parts: list[PartOutput], totals: Totals, engine: str | None = None
) -> MergeResult:
    """Write the merged output of ``parts`` through ``session``: shards and rejects placed,
    then the manifest, last (an abort removes what was placed: see
    :meth:`~maskprep.output.commit.OutputSession.abort`)."""
    session.begin()
    placed = place_parts(session, parts)
    manifest = merged_manifest(parts, placed, totals, engine)
    session.commit(manifest)
    location = session.location
    return MergeResult(
        location.native,
        manifest,
        len(parts),
        len(placed.shards),
        placed.linked,
        placed.copied,
    )


def merged_manifest(
    parts: list[PartOutput], placed: Any, totals: Totals, engine: str | None
) -> Manifest:
    """The merged output's manifest: the parts' config and tokenizer, every part's inputs and
    shards (renamed), summed totals and fill, and where each part came from."""
    first = parts[0].manifest
    return Manifest(
        config=first.config,
        tokenizer=first.tokenizer,
        inputs=tuple(item for p in parts for item in p.manifest.inputs),
        shards=tuple(placed.shards),
        totals=totals,
        fill=Fill.sum([p.manifest.fill for p in parts]),
        merged_from=tuple(
            MergedPart(p.index, str(p.directory), p.manifest.part.ranges, len(p.manifest.shards))  # type: ignore[union-attr]
            for p in parts
        ),
        # Each part packed its own documents: no row holds documents of two parts.
        pack_scope="part" if first.config.strategy == "pack" else None,
        engine=engine,
        rejects=placed.rejects,
    )
