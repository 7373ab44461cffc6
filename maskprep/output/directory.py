"""Whether and how an output may be written: the one place that looks at what an output directory
(or object-store prefix) holds and decides what a build or merge may do with it.

What is in it is read once (:func:`scan`), never following a symbolic link, and sorted into
maskprep's own files and everything else. Ownership is decided by what maskprep recorded, never by
names alone:

- a *finished* output (one with a manifest) owns the manifest, the shards it lists and, when it
  was built with the ``skip`` policy, its rejects file; any other shard-like file is foreign;
- an *unfinished* output (no manifest: a build that died) owns the files named exactly as
  maskprep names them whose content is what maskprep writes: a shard whose schema is the column
  contract, a rejects file of rejected-record lines. A maskprep shard carries its own proof, so
  nothing else has to be written to mark it;
- temporaries of those names and an overwrite's staging directory are a dead writer's leftovers,
  removed by the next writer that holds the lock.

A symbolic link is never maskprep's (it never makes one), so one anywhere in the output refuses
the build: nothing is ever written or deleted through it. Everything else that is not maskprep's
refuses it too, whatever the options; ``overwrite`` replaces only what maskprep owns.
"""

from __future__ import annotations

import enum
import json
import os
import stat
from dataclasses import dataclass, field

import pyarrow as pa

from .. import columns, storage
from ..errors import ConfigError, Option, OutputError
from .manifest import Manifest, load_manifest
from .names import (
    LOCK_NAME,
    MANIFEST_NAME,
    MANIFEST_NAMES,
    REJECTS_NAMES,
    is_own_name,
    is_shard_name,
    is_staging_name,
    temporary_target,
)

#: Foreign names shown in a message; the rest are counted.
SHOWN = 3


class Kind(enum.Enum):
    """What a directory entry is (symbolic links are never followed to find out)."""

    FILE = "file"
    DIRECTORY = "directory"
    LINK = "symbolic link"
    OTHER = "special file"


@dataclass(frozen=True)
class Entry:
    """One entry at the top of an output."""

    name: str
    kind: Kind


class Action(enum.Enum):
    """What a build or merge does with an output, decided by :func:`plan`."""

    #: Nothing of value there: write (after removing a dead writer's leftovers).
    WRITE = "write"
    #: An unfinished build, resumed: its complete shards are checked and kept.
    RESUME = "resume"
    #: An unfinished build, overwritten: its files are removed, then written afresh.
    REPLACE = "replace"
    #: A finished output, overwritten: built aside, swapped in once complete.
    STAGE = "stage"
    #: A finished output, resumed: returned as it is if it is still what this build makes.
    FINISHED = "finished"


@dataclass
class OutputState:
    """What an output holds, sorted by ownership (see the module notes)."""

    location: storage.Location
    exists: bool = False
    manifest: Manifest | None = None
    #: The manifest files there (the current name and, from older versions, the legacy one).
    manifests: list[str] = field(default_factory=list)
    #: Shards the manifest lists that are there, and those that are not.
    listed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: Without a manifest: files named as shards / rejects, maskprep's if their content is.
    shards: list[str] = field(default_factory=list)
    rejects: list[str] = field(default_factory=list)
    #: Temporaries and staging directories of a dead writer: maskprep's, removable.
    leftovers: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether a manifest marks the output finished."""
        return self.manifest is not None

    @property
    def holds_output(self) -> bool:
        """Whether anything of a build is there (leftovers and the lock aside)."""
        return self.finished or bool(self.shards) or bool(self.rejects)

    def owned(self) -> list[str]:
        """Names of the files of the output that is there (not leftovers)."""
        names = list(self.listed if self.finished else self.shards)
        return names + self.rejects + self.manifests


def scan(location: storage.Location) -> OutputState:
    """What the output at ``location`` holds (an absent one holds nothing)."""
    state = OutputState(location)
    entries = _list_local(location) if location.is_local else _list_remote(location)
    if entries is None:
        return state
    state.exists = True
    files = {e.name for e in entries if e.kind is Kind.FILE}
    state.manifests = [name for name in MANIFEST_NAMES if name in files]
    if state.manifests:
        state.manifest = _read_manifest(location.join(state.manifests[0]))
    listed = {s.path for s in state.manifest.shards} if state.manifest is not None else set()
    for entry in entries:
        _sort(state, entry, listed)
    if state.manifest is not None:
        state.missing = [s.path for s in state.manifest.shards if s.path not in files]
    return state


def _sort(state: OutputState, entry: Entry, listed: set[str]) -> None:
    name = entry.name
    if name == LOCK_NAME and entry.kind is not Kind.LINK:
        return  # the lock's own business (maskprep.output.lock)
    if entry.kind is Kind.LINK:
        state.links.append(name)
    elif entry.kind is Kind.DIRECTORY:
        (state.leftovers if is_staging_name(name) else state.foreign).append(name)
    elif entry.kind is not Kind.FILE:
        state.foreign.append(name)
    elif name in state.manifests:
        return
    elif is_own_name(temporary_target(name) or ""):
        state.leftovers.append(name)
    elif state.manifest is not None:
        if name in listed:
            state.listed.append(name)
        elif name in REJECTS_NAMES and state.manifest.config.on_bad_record == "skip":
            state.rejects.append(name)
        else:
            state.foreign.append(name)
    elif is_shard_name(name):
        state.shards.append(name)
    elif name in REJECTS_NAMES:
        state.rejects.append(name)
    else:
        state.foreign.append(name)


def _read_manifest(location: storage.Location) -> Manifest:
    try:
        return load_manifest(location)
    except storage.StorageError as exc:
        raise OutputError(f"{location.url}: cannot read: {exc.detail}") from None


def _list_local(location: storage.Location) -> list[Entry] | None:
    path = location.path
    try:
        info = os.stat(path)  # the output directory itself may be a link (out -> /scratch/out)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the output directory: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path}: output exists and is not a directory")
    try:
        with os.scandir(path) as found:
            return [Entry(e.name, _kind(e)) for e in found]
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the output directory: {exc.strerror}") from None


def _kind(entry: os.DirEntry[str]) -> Kind:
    if entry.is_symlink():
        return Kind.LINK
    if entry.is_dir(follow_symlinks=False):
        return Kind.DIRECTORY
    return Kind.FILE if entry.is_file(follow_symlinks=False) else Kind.OTHER


def _list_remote(location: storage.Location) -> list[Entry] | None:
    """The top level of a prefix: objects, and the first component of deeper keys as
    directories. An object at the prefix itself means it is not a directory."""
    try:
        found = list(storage.walk(location, temporaries=True))
    except storage.NotFound as exc:
        if "bucket" in exc.detail:
            raise
        return None
    entries: dict[str, Entry] = {}
    for info in found:
        relative = info.location.path[len(location.path) :].lstrip("/")
        if not relative and info.size == 0:
            continue  # a "folder" marker (an empty object named like the prefix)
        if not relative:
            raise OutputError(f"{location.url}: output exists and is not a prefix (an object)")
        top, _, rest = relative.partition("/")
        entries.setdefault(top, Entry(top, Kind.DIRECTORY if rest else Kind.FILE))
    return sorted(entries.values(), key=lambda e: e.name)


def plan(state: OutputState, *, overwrite: bool, resume: bool, merge: bool = False) -> Action:
    """What a build (or, with ``merge``, a merge, which has no resume) may do with the output
    ``state`` describes; refuses with :class:`OutputError` (exit 2) what it may not touch."""
    url = state.location.url
    if state.links:
        where = state.location.join(state.links[0]).url
        raise OutputError(
            f"{where}: is a symbolic link; maskprep never writes through a link in its output "
            "directory (remove it)"
        )
    if state.foreign:
        raise OutputError(f"{url}: holds files maskprep did not write ({_names(state.foreign)})")
    if not state.holds_output:
        return Action.WRITE
    if state.finished:
        if resume:
            return Action.FINISHED
        if overwrite:
            return Action.STAGE
        raise OutputError.suggesting(
            "{output}: output directory is not empty (a finished output); overwrite it "
            "({overwrite}) to replace its contents",
            output=url,
            overwrite=Option("output.overwrite"),
        )
    if resume:
        return Action.RESUME
    if overwrite:
        check_unfinished_is_ours(state)
        return Action.REPLACE
    if merge:
        # A merge cannot resume (a build's way out): only replacing it is suggested.
        raise OutputError.suggesting(
            "{output}: holds an unfinished output ({shards} complete shards and no {manifest}); "
            "overwrite it ({overwrite}) to replace it with the merge",
            output=url,
            shards=len(state.shards),
            manifest=MANIFEST_NAME,
            overwrite=Option("output.overwrite"),
        )
    raise OutputError.suggesting(
        "{directory}: unfinished build ({shards} complete shards and no {manifest}); resume it "
        "({resume}) to finish it, or overwrite it ({overwrite}) to start over",
        directory=url,
        shards=len(state.shards),
        manifest=MANIFEST_NAME,
        resume=Option("output.resume"),
        overwrite=Option("output.overwrite"),
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_unfinished_is_ours(state: OutputState) -> None:
    """An unfinished output's shard-named files and rejects are maskprep's only if their content
    is: refuses (naming the first that is not) before anything is removed."""
    not_ours = [n for n in state.shards if not _is_maskprep_shard(state.location.join(n))]
    not_ours += [n for n in state.rejects if not _is_rejects_file(state.location.join(n))]
    if not_ours:
        raise OutputError(
            f"{state.location.url}: holds files maskprep did not write ({_names(not_ours)}); "
            "they are named like its files, but their content is not what it writes"
        )


_SCHEMAS = (columns.schema(packed=False), columns.schema(packed=True))


def _is_maskprep_shard(location: storage.Location) -> bool:
    """Whether the file is a Parquet or Arrow file with exactly the column contract's schema
    (its footer is read, not its data)."""
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    try:
        with storage.open_read(location) as handle:
            if location.name.endswith(".parquet"):
                found = pq.read_schema(handle)
            else:
                found = ipc.open_file(handle).schema
    except (OSError, pa.ArrowException, ConfigError, ValueError):
        return False
    return any(found.equals(expected, check_metadata=False) for expected in _SCHEMAS)


def _is_rejects_file(location: storage.Location) -> bool:
    """Whether the file is empty or starts with a rejected-record line as maskprep writes it."""
    try:
        with storage.open_read(location) as handle:
            first = handle.readline(1 << 20)
    except (OSError, ConfigError):
        return False
    if not first:
        return True
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and set(record) == {"file", "line", "reason", "raw"}


__all__ = [
    "Action",
    "Entry",
    "Kind",
    "OutputState",
    "check_unfinished_is_ours",
    "plan",
    "scan",
]
