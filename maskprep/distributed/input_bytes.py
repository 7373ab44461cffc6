"""Whether the inputs still hold the bytes every part read: the one check of a merge that reads
them.

The quick check (:mod:`.tiling`) compares each input's size and modification time as the parts'
plans saw them, which misses a rewrite that keeps both (``cp -p``, ``rsync -t``, ``touch -r``).
Each part's manifest holds the sha256 of exactly the bytes it read (its ranges), and the ranges of
all parts tile every input, so hashing each range again and comparing covers every byte of every
input, at the cost of one full read of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import storage
from ..errors import ConfigError, ManifestError
from .part_output import PartOutput

if TYPE_CHECKING:
    from ..sources.parts import FileRange


def check_input_bytes(parts: Sequence[PartOutput]) -> int:
    """Hash again every byte range each part read and hold it to the sha256 its manifest
    recorded; the number of bytes read. Inputs given as URLs are read with the storage options
    the part's location carries (one set per merge). Raises :class:`ConfigError` naming the
    input, the bytes and the part when an input no longer holds what the part read (rebuild the
    parts), and :class:`ManifestError` when a manifest's ranges and inputs do not pair up."""
    total = 0
    for part in parts:
        plan = part.manifest.part
        assert plan is not None  # read_part refuses whole builds
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
            digest = _sha256(file_range, part.directory.options)
            total += file_range.end - file_range.start
            if digest != read.sha256:
                raise ConfigError(
                    f"{file_range.path}: bytes {file_range.start:,} to {file_range.end:,} are not "
                    f"what part {part.index} ({part.directory}) read (sha256 {digest[:12]} now, "
                    f"{read.sha256[:12]} then); the input changed after the part was built: "
                    "rebuild every part from one version of it"
                )
    return total


def _sha256(file_range: FileRange, options: storage.StorageOptions | None) -> str:
    """The sha256 of the bytes ``[start, end)`` of the range's input, read in blocks."""
    location = storage.parse_location(file_range.path, options)
    with storage.open_read(location, file_range.start) as stream:
        # An input shorter now gives fewer bytes: its hash cannot match.
        return storage.sha256_stream(stream, file_range.end - file_range.start)
