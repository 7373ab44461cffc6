"""``maskprep merge``: finished parts of one build (array jobs) joined under one manifest.

Before anything is written the parts are checked to be the N parts of one build: same config,
tokenizer and version, every index once. Each part plans its byte range from the sizes of all
input files, so an input that changed between two parts' builds would have records read twice or
never while the merge looks complete: every part records each input file as its plan saw it
(size and modification time), and the parts must have seen the same files, their ranges tiling
each from its first byte to its last with no gap and no overlap. ``check_input_bytes`` also hashes
every range again against the sha256 its part recorded, catching a rewrite that kept size and
time (``cp -p``, ``rsync -t``).

Shard data is not copied through this process: each part's shards are hard-linked into the
merged output under consecutive names (``data-00000…``, part 0's first), so the output is a
normal, self-contained maskprep output that survives the parts being moved, deleted or rebuilt.
Across filesystems a shard is copied, on an object store server-side; every placement is
create-if-absent and checked against the sha256 its part recorded. A part's rejects file is read
only as a regular file opened without following a link and without blocking (a named pipe
planted there is refused, never waited on), and held to its recorded size and sha256 before it
is joined.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from .. import storage
from ..errors import RESUME, ConfigError, DataError, ManifestError
from ..output.commit import OutputRequest, OutputSession, write_failures
from ..output.manifest import (
    Manifest,
    MergedPart,
    Part,
    Totals,
    find_manifest_at,
    load_manifest,
    manifest_problems,
)
from ..output.names import MANIFEST_NAME, REJECTS_NAME
from ..output.shards import RejectsFile, ShardInfo
from ..shaping.fill import Fill
from ..sources.parts import FileRange, PlannedFile


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
    check_inputs([(p.index, str(p.directory), p.plan) for p in parts])
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
    part's bytes to the sha256 it recorded, which catches a rewrite that
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
    """Write the merged output of ``parts`` through ``session``: every part's shards placed under
    consecutive names (part 0's first), with the ``skip`` policy their rejects joined, then the
    manifest, last (an abort removes what was placed: see
    :meth:`~maskprep.output.commit.OutputSession.abort`)."""
    session.begin()
    first = parts[0].manifest
    shards: list[ShardInfo] = []
    linked = 0
    for part in parts:
        for shard in part.manifest.shards:
            name = session.names.shard(len(shards), first.config.shard_format)
            if session.place(name, part.directory.join(shard.path), shard.sha256):
                linked += 1
            shards.append(dataclasses.replace(shard, path=name))
    rejects = _join_rejects(session, parts) if first.config.on_bad_record == "skip" else None
    manifest = Manifest(
        config=first.config,
        tokenizer=first.tokenizer,
        inputs=tuple(item for p in parts for item in p.manifest.inputs),
        shards=tuple(shards),
        totals=totals,
        fill=Fill.sum([p.manifest.fill for p in parts]),
        merged_from=tuple(
            MergedPart(p.index, str(p.directory), p.plan.ranges, len(p.manifest.shards))
            for p in parts
        ),
        # Each part packed its own documents: no row holds documents of two parts.
        pack_scope="part" if first.config.strategy == "pack" else None,
        engine=engine,
        rejects=rejects,
    )
    session.commit(manifest)
    return MergeResult(
        session.location.native, manifest, len(parts), len(shards), linked, len(shards) - linked
    )


@dataclass(frozen=True)
class PartOutput:
    """One finished part: its directory (or prefix) and manifest (which has a ``part`` entry)."""

    directory: storage.Location
    manifest: Manifest

    @property
    def plan(self) -> Part:
        """The manifest's ``part`` entry."""
        assert self.manifest.part is not None  # read_part refuses whole builds
        return self.manifest.part

    @property
    def index(self) -> int:
        """The part's index, 0-based."""
        return self.plan.index

    @property
    def count(self) -> int:
        """How many parts the build has."""
        return self.plan.count


def read_part(
    directory: str | os.PathLike[str], options: storage.StorageOptions | None = None
) -> PartOutput:
    """Read a finished part's manifest (a local directory or a URL); an unfinished output, a
    whole build or a manifest that does not add up is refused."""
    location = storage.parse_location(directory, options)
    found = find_manifest_at(location)
    if found is None:
        raise ConfigError(
            f"{location}: not a finished part (no {MANIFEST_NAME}); finish its build ({RESUME}) "
            "before merging",
            suggests=(RESUME,),
        )
    manifest = load_manifest(found)
    if manifest.part is None:
        raise ConfigError(f"{location}: a whole build, not a part (built without a part index)")
    problems = manifest_problems(manifest, location)
    if problems:
        raise DataError(f"{found}: {problems[0]}")
    return PartOutput(location, manifest)


#: (part index, part directory, its manifest's ``part`` entry)
PartPlan = tuple[int, str, Part]


def check_inputs(parts: Sequence[PartPlan]) -> None:
    """Refuse parts that saw different input files, or whose ranges do not tile the inputs."""
    _check_same_files(parts)
    _check_tiling(parts, parts[0][2].files)


def _name(part: PartPlan) -> str:
    return f"part {part[0]} ({part[1]})"


def _when(mtime_ns: int) -> str:
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _check_same_files(parts: Sequence[PartPlan]) -> None:
    first = parts[0]
    seen = first[2].files
    for part in parts[1:]:
        other = part[2].files
        for number, (a, b) in enumerate(zip(seen, other, strict=False)):
            if a.path != b.path:
                raise ConfigError(
                    f"the inputs differ between the builds of {_name(first)} and {_name(part)}: "
                    f"input {number + 1} is {a.path} in one and {b.path} in the other; rebuild "
                    "every part from the same inputs"
                )
            if a.size != b.size:
                raise ConfigError(
                    f"{a.path}: changed between the builds of {_name(first)} and {_name(part)} "
                    f"({a.size:,} bytes for part {first[0]}, {b.size:,} for part {part[0]}); "
                    "rebuild every part from one version of the input"
                )
            if a.mtime_ns != b.mtime_ns:
                raise ConfigError(
                    f"{a.path}: changed between the builds of {_name(first)} and {_name(part)} "
                    f"(modified {_when(a.mtime_ns)} for part {first[0]}, {_when(b.mtime_ns)} for "
                    f"part {part[0]}); rebuild every part from one version of the input"
                )
        if len(seen) != len(other):
            raise ConfigError(
                f"the inputs differ between the builds of {_name(first)} and {_name(part)}: "
                f"{len(seen)} input files in one, {len(other)} in the other; rebuild every part "
                "from the same inputs"
            )


def _check_tiling(parts: Sequence[PartPlan], files: Sequence[PlannedFile]) -> None:
    """Walk the ranges of all parts in order against the input files."""
    ranges: list[tuple[PartPlan, FileRange]] = [(p, r) for p in parts for r in p[2].ranges]
    at = 0
    for planned in files:
        position = 0
        previous: PartPlan | None = None
        while position < planned.size:
            if at == len(ranges) or ranges[at][1].path != planned.path:
                after = f" after {_name(previous)}" if previous else ""
                raise ConfigError(
                    f"{planned.path}: bytes {position:,} to {planned.size:,} were read by no "
                    f"part{after}; the parts do not cover the input (it changed between the "
                    "part builds?)"
                )
            owner, file_range = ranges[at]
            if file_range.start != position:
                raise _disjoint(planned.path, previous, owner, position, file_range.start)
            position = file_range.end
            previous = owner
            at += 1
        if position != planned.size:
            raise ConfigError(
                f"{planned.path}: {_name(previous) if previous else 'a part'} read up to byte "
                f"{position:,} of a {planned.size:,}-byte input; the parts overlap its end"
            )
    if at != len(ranges):
        owner, extra = ranges[at]
        raise ConfigError(
            f"{extra.path}: {_name(owner)} read bytes {extra.start:,} to {extra.end:,}, which "
            "belong to no input the parts planned"
        )


def _disjoint(
    path: str, previous: PartPlan | None, owner: PartPlan, expected: int, start: int
) -> ConfigError:
    what = "skip" if start > expected else "overlap"
    before = f"{_name(previous)} ended" if previous is not None else "the file starts"
    return ConfigError(
        f"{path}: the parts' byte ranges {what}: {_name(owner)} starts at byte {start:,} where "
        f"{before} at byte {expected:,}; the input changed between the part builds: rebuild "
        "every part from one version of it"
    )


def verify_input_bytes(parts: Sequence[PartOutput]) -> None:
    """Hash again every byte range each part read and hold it to the sha256 its manifest
    recorded (the ranges of all parts tile every input, so this covers every byte, at the cost of
    one full read). Inputs given as URLs are read with the storage options
    the part's location carries (one set per merge). Raises :class:`ConfigError` naming the
    input, the bytes and the part when an input no longer holds what the part read (rebuild the
    parts), and :class:`ManifestError` when a manifest's ranges and inputs do not pair up."""
    for part in parts:
        plan = part.plan
        inputs = part.manifest.inputs
        if len(inputs) != len(plan.ranges):
            raise ManifestError(
                str(part.directory),
                "inputs",
                f"{len(inputs)} inputs read, but part.ranges has {len(plan.ranges)}",
            )
        for file_range, read in zip(plan.ranges, inputs, strict=True):
            if read.path != file_range.path:
                raise ManifestError(
                    str(part.directory),
                    "inputs",
                    f"{read.path!r} stands where part.ranges has {file_range.path!r}",
                )
            location = storage.parse_location(file_range.path, part.directory.options)
            with storage.open_read(location, file_range.start) as stream:
                # An input shorter now gives fewer bytes: its hash cannot match.
                digest = storage.sha256_stream(stream, file_range.end - file_range.start)
            if digest != read.sha256:
                raise ConfigError(
                    f"{file_range.path}: bytes {file_range.start:,} to {file_range.end:,} are not "
                    f"what part {part.index} ({part.directory}) read (sha256 {digest[:12]} now, "
                    f"{read.sha256[:12]} then); the input changed after the part was built: "
                    "rebuild every part from one version of it"
                )


def _join_rejects(session: OutputSession, parts: list[PartOutput]) -> RejectsFile:
    """The parts' rejects files, one after the other, as one file written atomically; each
    part's bytes are checked against its manifest's record of them."""
    writer = session.writer(session.names.rejects)
    try:
        for part in parts:
            _copy_rejects(part, writer)
        result = session.publish(writer)
    finally:
        writer.abort()  # nothing, once published
    assert result.sha256 is not None
    return RejectsFile(result.location.name, result.size, result.sha256)


def _copy_rejects(part: PartOutput, writer: storage.AtomicWriter) -> None:
    recorded = part.manifest.rejects
    if recorded is None:
        raise DataError(
            f"{part.directory}: built with on_bad_record skip, but its manifest records no "
            "rejects file; rebuild the part"
        )
    source = part.directory.join(recorded.path)
    size = lines = 0

    def copy(block: bytes) -> None:
        nonlocal size, lines
        size += len(block)
        lines += block.count(b"\n")
        writer.write(block)

    with _open_rejects(source) as handle:
        # One byte past the record: a longer file is told from one of the recorded size.
        digest = storage.sha256_stream(handle, recorded.size + 1, each=copy)
    if size != recorded.size or digest != recorded.sha256:
        raise DataError(
            f"{source}: does not match the size and sha256 its part's manifest records (the "
            "rejects file was changed after the part was built); rebuild the part"
        )
    if lines != part.manifest.totals.records_rejected:
        raise DataError(
            f"{source}: holds {lines} rejected records, but its part's manifest counts "
            f"{part.manifest.totals.records_rejected}; rebuild the part"
        )


def _open_rejects(location: storage.Location) -> BinaryIO:
    """A part's rejects file opened for reading: only a regular file reached without a symbolic
    link, opened without blocking (a named pipe would wait for a writer forever)."""
    try:
        return storage.open_regular(location)
    except storage.NotFound:
        raise ConfigError(
            f"{location}: rejects file its part's manifest records is missing"
        ) from None
    except storage.StorageRequestError as exc:
        raise ConfigError(
            f"{location}: {exc.detail}; a part's rejects file must be a regular file"
        ) from None
