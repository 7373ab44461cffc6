"""The parts directory of a Ray build, ``OUT.parts`` beside the output: the engine's own, made by
it and marked so (``_maskprep_parts.json``), the only place its parts are written.

Rules (the commit protocol's, :mod:`.commit`, applied to a directory of outputs):

- A parts directory the engine did not make (no marker, or a marker for another output) is
  never written into, and never removed: the build is refused, naming it.
- A symbolic link is never followed: ``OUT.parts`` itself, or anything in it, being one refuses
  the build (the parts would be written wherever it points).
- One the engine made for this output is used again only as the user asks: ``--resume`` resumes
  its parts (of the same build; those of another build are refused), ``--overwrite`` removes it
  and starts over, and a plain build is refused, as a build into an unfinished output is.
- Once the merged output is committed, the directory is removed (the merged shards are hard
  links or copies, not the parts' files).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from .. import storage
from ..config import BuildConfig
from ..errors import OVERWRITE, RESUME, OutputError
from .manifest import RecordedConfig

PARTS_SUFFIX = ".parts"
MARKER_NAME = "_maskprep_parts.json"
_PART = re.compile(r"part-[0-9]{5}")


@dataclass(frozen=True)
class PartsRoot:
    """A parts directory this engine made for its output."""

    location: storage.Location

    def remove(self) -> None:
        """Remove the directory and every part in it, never following a link."""
        with contextlib.suppress(storage.StorageError):
            storage.remove_tree(self.location)


def parts_location(output: storage.Location) -> storage.Location:
    """Where the parts of a Ray build of ``output`` go: ``OUT.parts`` beside it."""
    return output.parent.join(output.name + PARTS_SUFFIX)


def open_parts_root(output: storage.Location, config: BuildConfig, count: int) -> PartsRoot:
    """The parts directory for a Ray build of ``config`` in ``count`` parts into ``output``:
    made (and marked) when absent, else used again or removed as the rules say; refused
    (:class:`OutputError`) otherwise."""
    root = PartsRoot(parts_location(output))
    marker = _marker(output, config, count)
    found = _read_marker(root.location)
    if found is None:
        _make(root.location, marker)
        return root
    if found.get("output") != marker["output"]:
        raise OutputError(
            f"{root.location.url}: made by maskprep's Ray engine for another output "
            f"({found.get('output')}); remove it or choose another output"
        )
    if config.output.overwrite:
        root.remove()
        _make(root.location, marker)
        return root
    if not config.output.resume:
        raise OutputError(
            f"{root.location.url}: holds the parts of an unfinished Ray build of {output.url}; "
            f"resume it ({RESUME}) to finish it, or overwrite it ({OVERWRITE}) to start over",
            suggests=(RESUME, OVERWRITE),
        )
    if found != marker:
        raise OutputError(
            f"{root.location.url}: holds the parts of another build of {output.url} (other "
            f"options or part count); overwrite it ({OVERWRITE}) to start over",
            suggests=(OVERWRITE,),
        )
    return root


def _marker(output: storage.Location, config: BuildConfig, count: int) -> dict[str, object]:
    return {
        "output": output.url,
        "parts": count,
        "config": RecordedConfig.from_build(config).raw,
    }


def _read_marker(location: storage.Location) -> dict[str, object] | None:
    """The marker of an existing parts directory (checked to hold nothing but parts); ``None``
    when there is nothing there."""
    entries = _entries(location)
    if entries is None:
        return None
    if MARKER_NAME not in entries:
        raise OutputError(
            f"{location.url}: exists, and was not made by maskprep's Ray engine (it has no "
            f"{MARKER_NAME}); remove it or choose another output"
        )
    strange = [n for n in sorted(entries) if n != MARKER_NAME and not _PART.fullmatch(n)]
    if strange:
        raise OutputError(f"{location.url}: holds files maskprep did not write ({strange[0]})")
    try:
        data = json.loads(storage.read_bytes(location.join(MARKER_NAME)))
    except (ValueError, storage.StorageRequestError):
        data = None
    if not isinstance(data, dict):
        raise OutputError(f"{location.join(MARKER_NAME).url}: not a parts marker of maskprep's")
    return data


def _entries(location: storage.Location) -> set[str] | None:
    """The names at the top of a parts directory; links refused, ``None`` when absent."""
    if storage.is_link(location):
        raise OutputError(
            f"{location.url}: is a symbolic link; maskprep never writes through a link (remove it)"
        )
    try:
        found = storage.entries(location)
    except storage.StorageRequestError as exc:
        raise OutputError(f"{location.url}: {exc.detail}") from None
    if found is None:
        return None
    for entry in found:
        if entry.kind is storage.Kind.LINK:
            raise OutputError(
                f"{location.join(entry.name).url}: is a symbolic link; maskprep never writes "
                "through a link (remove it)"
            )
    return {entry.name for entry in found}


def _make(location: storage.Location, marker: dict[str, object]) -> None:
    """Make the directory and its marker, create-if-absent: another writer making it at the
    same moment makes this one refuse rather than share it."""
    data = (json.dumps(marker, sort_keys=True, indent=2) + "\n").encode()
    busy = f"{location.url}: made by another writer at the same moment"
    if location.is_local and not storage.create_directory(location):
        raise OutputError(busy)
    try:
        storage.put_if_absent(location.join(MARKER_NAME), data)
    except storage.AlreadyExists:
        raise OutputError(busy) from None
