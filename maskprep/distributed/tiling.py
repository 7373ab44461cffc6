"""Whether the parts of an array build read one version of the inputs, and between them every
byte of it exactly once.

Each part plans its byte range from the sizes of all input files (:mod:`maskprep.sources.parts`).
If an input changes between the builds of two parts, their plans disagree: records are read twice
or never, and the merged output looks complete. So each part records every input file as its plan
saw it (size and modification time), and a merge requires that all parts saw the same files and
that their ranges, in part order, cover each file from its first byte to its last with no gap and
no overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from ..errors import ConfigError
from ..output.manifest import Part
from ..sources.parts import FileRange, PlannedFile

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
