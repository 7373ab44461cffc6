"""What an output directory (or object-store prefix) holds, and whom each file belongs to: the
state the commit protocol (:mod:`.commit`) decides from.

What is in it is read once (:func:`scan`), never following a symbolic link, and sorted:

- a *finished* output (one with a manifest) owns the manifest, the shards it lists and the
  rejects file it records;
- an *unfinished* output (no manifest: a build that died, was stopped or failed) owns the files
  with plain names whose content is what maskprep writes: a shard whose schema is the column
  contract, a rejects file of rejected-record lines. A maskprep shard carries its own proof, so
  nothing else has to be written to mark it;
- everything else of maskprep's names is *garbage* of other attempts: temporaries, staging
  directories, writers' records, files of another name set than the finished output's (a
  writer that was overtaken or stopped left them). Garbage is removed only by a writer that has
  just committed (see :mod:`.commit`), never while another writer could still use it.

A symbolic link is never maskprep's (it never makes one), so one anywhere in the output refuses
the build: nothing is ever written or deleted through it. Everything else that is not maskprep's
refuses it too, whatever the options.

**Writers' records.** Each writer keeps ``.maskprep-writer-<tag>.json`` (its host, pid and what it
does) from the moment it starts writing to its end: a courtesy, never a condition of safety. It
lets a plain build refuse to join another one ("another maskprep process is writing"), and tells
``inspect`` that a build is running or died there. Locally the writer holds the record's
``flock`` while it lives (the kernel lets go when it dies), so a record whose lock is free is a
dead writer's garbage; on an object store nobody can tell a live writer from a dead one, and no
clock is trusted to.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field

import pyarrow as pa

from .. import columns, storage
from ..errors import OVERWRITE, RESUME, ConfigError, OutputError
from .manifest import Manifest, parse_manifest
from .names import (
    MANIFEST_NAME,
    PLAIN,
    REJECTS_NAME,
    NameSet,
    is_own_name,
    is_rejects_name,
    is_shard_name,
    is_staging_name,
    is_writer_name,
    name_set_of,
    resume_shard,
    temporary_target,
    writer_name,
)

#: Foreign names shown in a message; the rest are counted.
SHOWN = 3


@dataclass
class OutputState:
    """What an output holds, sorted by ownership (see the module notes)."""

    location: storage.Location
    manifest: Manifest | None = None
    #: The manifest's version read (for the compare-and-swap that replaces it).
    manifest_version: str | None = None
    #: Shards the manifest lists that are there.
    listed: list[str] = field(default_factory=list)
    #: Without a manifest: files with plain names, maskprep's if their content is.
    shards: list[str] = field(default_factory=list)
    #: The rejects file: a finished output's own, or (without a manifest) one of plain name.
    rejects: list[str] = field(default_factory=list)
    #: Without a manifest: the resume points of plain shards (see :mod:`maskprep.resume`).
    resume_points: list[str] = field(default_factory=list)
    #: Other attempts' files, temporaries, staging directories and records: removable only by a
    #: writer that has committed since.
    garbage: list[str] = field(default_factory=list)
    #: Records of writers that began writing here (alive, stopped, or dead).
    writers: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether a manifest marks the output finished."""
        return self.manifest is not None

    @property
    def unfinished(self) -> bool:
        """Whether an unfinished build's files are there (shards or rejects, no manifest)."""
        return not self.finished and bool(self.shards or self.rejects)

    def names(self) -> set[str]:
        """Every name of maskprep's there when it was scanned."""
        found = set(self.listed) | set(self.shards) | set(self.rejects) | set(self.garbage)
        found |= set(self.writers) | set(self.resume_points)
        if self.manifest is not None:
            found.add(MANIFEST_NAME)
        if self.manifest is not None and self.manifest.rejects is not None:
            found.add(self.manifest.rejects.path)
        return found


def scan(location: storage.Location) -> OutputState:
    """What the output at ``location`` holds (an absent one holds nothing)."""
    state = OutputState(location)
    try:
        entries = storage.entries(location)
    except storage.StorageRequestError as exc:
        raise OutputError(f"{location.url}: output {exc.detail}") from None
    if entries is None:
        return state
    files = {e.name for e in entries if e.kind is storage.Kind.FILE}
    if MANIFEST_NAME in files:
        state.manifest, state.manifest_version = _read_manifest(location.join(MANIFEST_NAME))
    manifest = state.manifest
    shards = {s.path for s in manifest.shards} if manifest is not None else set()
    own = manifest.name_sets if manifest is not None else set()
    for entry in entries:
        _sort(state, entry, shards, own)
    return state


def _sort(state: OutputState, entry: storage.Entry, shards: set[str], own: set[NameSet]) -> None:
    name = entry.name
    if entry.kind is storage.Kind.LINK:
        state.links.append(name)
    elif entry.kind is storage.Kind.DIRECTORY:
        (state.garbage if is_staging_name(name) else state.foreign).append(name)
    elif entry.kind is not storage.Kind.FILE:
        state.foreign.append(name)
    elif name == MANIFEST_NAME:
        pass  # read by scan
    elif is_writer_name(name):
        state.writers.append(name)
    elif is_own_name(temporary_target(name) or ""):
        state.garbage.append(name)  # temporaries
    elif resume_shard(name) is not None:
        plain = state.manifest is None and name_set_of(resume_shard(name) or "") == PLAIN
        (state.resume_points if plain else state.garbage).append(name)
    elif not is_own_name(name):
        state.foreign.append(name)
    elif state.manifest is not None:
        _sort_beside_manifest(state, name, shards, own)
    elif name_set_of(name) == PLAIN:
        (state.shards if name != REJECTS_NAME else state.rejects).append(name)
    else:
        state.garbage.append(name)  # an overwrite's files, from before its commit


def _sort_beside_manifest(
    state: OutputState, name: str, shards: set[str], own: set[NameSet]
) -> None:
    """A file of maskprep's name beside a manifest: the finished output's own, garbage of an
    attempt with other names, or (a name of the output's own set it does not list) foreign."""
    assert state.manifest is not None
    rejects = state.manifest.rejects
    if name in shards:
        state.listed.append(name)
    elif rejects is not None and name == rejects.path:
        state.rejects.append(name)
    elif name_set_of(name) in own:
        state.foreign.append(name)
    else:
        state.garbage.append(name)


def _read_manifest(location: storage.Location) -> tuple[Manifest, str | None]:
    try:
        data, info = storage.read_with_info(location)
    except storage.StorageRequestError as exc:
        raise OutputError(f"{location.url}: cannot read: {exc.detail}") from None
    return parse_manifest(data, location.url), info.etag


def names_shown(names: list[str]) -> str:
    """A few names of a list, and how many more, for a one-line message."""
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_unfinished_is_ours(state: OutputState) -> None:
    """An unfinished output's shard-named files and rejects are maskprep's only if their content
    is: refuses (naming the first that is not) before a writer takes them as maskprep's."""
    names = state.shards + state.rejects
    not_ours = [n for n in names if not holds_maskprep_content(state.location.join(n))]
    if not_ours:
        raise OutputError(
            f"{state.location.url}: holds files maskprep did not write ({names_shown(not_ours)}); "
            "they are named like its files, but their content is not what it writes"
        )


_SCHEMAS = (columns.schema(packed=False), columns.schema(packed=True))


def holds_maskprep_content(location: storage.Location) -> bool:
    """Whether a file holds what maskprep writes under its name: a shard or rejects file is
    checked by its content, any other name of maskprep's is taken as it is."""
    if is_shard_name(location.name):
        return _is_maskprep_shard(location)
    if is_rejects_name(location.name):
        return _is_rejects_file(location)
    return True


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


@dataclass(frozen=True)
class WriterRecord:
    """Another writer's record, as read."""

    name: str
    host: str = "?"
    pid: int = 0
    #: Known alive (a local writer holding the record's flock); ``False``: not known either way.
    running: bool = False

    def refusal(self, url: str) -> OutputError:
        """Why a plain build does not write into ``url`` beside this writer."""
        if self.running:
            return OutputError(
                f"{url}: another maskprep process (pid {self.pid}) is writing to this "
                "directory; wait for it or use another output directory"
            )
        return OutputError(
            f"{url}: another writer ({self.host}, pid {self.pid}) began writing here and has not "
            f"finished ({self.name}); it may still be running, or have died: resume the build "
            f"({RESUME}) or overwrite it ({OVERWRITE})",
            suggests=(RESUME, OVERWRITE),
        )


def other_writers(location: storage.Location, names: list[str]) -> list[WriterRecord]:
    """The writers whose records (``names``) are in the output at ``location`` and that are, or
    may be, alive (see the module notes)."""
    found = []
    for name in names:
        record = location.join(name)
        running = storage.is_held(record)
        if running is False:
            continue  # gone, or its writer died: garbage
        try:
            fields = json.loads(storage.read_bytes(record))
            found.append(WriterRecord(name, str(fields["host"]), int(fields["pid"]), bool(running)))
        except (storage.StorageError, ValueError, KeyError, TypeError):
            continue  # gone meanwhile, or unreadable: not a writer to wait for
    return found


def hold_record(location: storage.Location, tag: str, action: str) -> storage.Held:
    """This writer's own record in the output at ``location``, held until released."""
    data = {"host": socket.gethostname(), "pid": os.getpid(), "action": action}
    body = (json.dumps(data, sort_keys=True) + "\n").encode()
    return storage.hold(location.join(writer_name(tag)), body)
