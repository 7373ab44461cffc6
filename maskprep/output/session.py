"""The commit protocol: one writer's hold on an output, from taking its lock to writing its
manifest, the same on a local directory and on an object-store prefix.

1. **Lock** (:mod:`.lock`): a flock locally, a lease object on a store; a second writer is
   refused at once.
2. **Decide** (:mod:`.directory`): what is there and whom it belongs to; anything maskprep did
   not write, or a symbolic link, refuses the build before any input is read.
3. **Begin** (:meth:`OutputSession.begin`, once the build can start): a dead writer's
   temporaries and staging directories are removed; an unfinished build that is overwritten
   loses its files; an overwrite of a *finished* output builds in ``.staging-<hex>/`` inside it
   instead, leaving the finished output untouched.
4. **Write** shards and rejects through atomic writers (complete or absent), in place or in
   staging.
5. **Commit** (:meth:`OutputSession.commit`): the manifest is created last, with a create-only
   write (put-if-absent on a store). An overwrite first swaps the staged output in: the old
   manifest goes first (from then on the output is unfinished, never finished-looking), then
   the old files the new output does not have, then each staged file is moved (renamed locally,
   copied server-side on a store) to its final name, and the new manifest comes last.

On any failure :meth:`OutputSession.abort` removes what this writer made that is not complete
output (staging, temporaries); the caller's shard writer removes its own shards. A process killed
outright leaves at worst an unfinished output (no manifest) or a finished one with leftovers that
the next writer removes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from .. import storage
from ..errors import IOFailure, OutputError, os_failure
from .directory import Action, OutputState, check_unfinished_is_ours, plan, scan
from .lock import DEFAULT_LEASE_TTL, HeldLock, lock_output
from .manifest import Manifest, write_manifest
from .names import REJECTS_NAME, STAGING_PREFIX, is_own_name, temporary_target


@dataclass(frozen=True)
class OutputRequest:
    """What a command asks of an output: ``overwrite`` / ``resume`` as the user chose, ``merge``
    for a merge (which has no resume), and the lease's time to live on object stores."""

    overwrite: bool = False
    resume: bool = False
    merge: bool = False
    lease_ttl: float = DEFAULT_LEASE_TTL


class OutputSession:
    """One writer's hold on the output at ``location``; open with :meth:`open`, use as a
    context manager (which releases the lock, and aborts on an exception)."""

    def __init__(
        self,
        location: storage.Location,
        lock: HeldLock,
        state: OutputState,
        action: Action,
        created: bool,
    ) -> None:
        self.location = location
        self.state = state
        self.action = action
        #: Where shards and rejects go: the output, or its staging directory.
        self.target = location
        self._lock: HeldLock | None = lock
        self._created = created
        self._staging: storage.Location | None = None

    @classmethod
    def open(cls, location: storage.Location, request: OutputRequest) -> OutputSession:
        """Lock the output, read what it holds and decide what this writer may do with it;
        refused (:class:`OutputError`, exit 2) when it may do nothing."""
        created = _make_directory(location) if location.is_local else False
        try:
            lock = lock_output(location, ttl=request.lease_ttl)
        except BaseException:
            _remove_if_empty(location, created)
            raise
        try:
            state = scan(location)
            action = plan(
                state, overwrite=request.overwrite, resume=request.resume, merge=request.merge
            )
        except BaseException:
            lock.release()
            _remove_if_empty(location, created)
            raise
        return cls(location, lock, state, action, created)

    @property
    def staged(self) -> bool:
        """Whether this writer builds in a staging directory, beside a finished output that
        stays as it is unless :meth:`commit` swaps the new one in."""
        return self._staging is not None

    @property
    def existing_shards(self) -> list[str]:
        """The complete shards a resumed build checks and keeps."""
        return self.state.shards if self.action is Action.RESUME else []

    def unfinish(self) -> None:
        """Resuming a finished output that is not whole (a listed shard is gone): its manifest
        is removed first, and the build resumes it as unfinished."""
        assert self.action is Action.FINISHED
        storage.delete_many(self.location.join(n) for n in self.state.manifests)
        self.state.manifest, self.state.manifests = None, []
        self.state.shards, self.state.listed = self.state.listed, []
        self.action = Action.RESUME

    def start_over(self) -> None:
        """Rewrite an unfinished output from the start instead of resuming it (its files must
        be maskprep's, as for an overwrite): a Ray build resumes its parts, not its merge."""
        assert self.action is Action.RESUME
        check_unfinished_is_ours(self.state)
        self.action = Action.REPLACE

    def keepalive(self) -> None:
        """Keep the lock (renews a lease when due; raises if another writer took it)."""
        if self._lock is not None:
            self._lock.keepalive()

    def tidy(self) -> None:
        """Remove a dead writer's leftovers (temporaries, staging directories)."""
        self._remove(self.state.leftovers)
        self.state.leftovers = []

    def begin(self) -> None:
        """Make room to write: remove a dead writer's leftovers, an overwritten unfinished
        build's files, and with an overwrite of a finished output, open a staging directory."""
        self.tidy()
        if self.action is Action.REPLACE:
            storage.delete_many(self.location.join(n) for n in self.state.owned())
        if self.action is Action.STAGE:
            self._staging = self.location.join(STAGING_PREFIX + secrets.token_hex(8))
            storage.make_directory(self._staging)
            self.target = self._staging

    def commit(self, manifest: Manifest) -> None:
        """Finish the output: swap a staged one in, then create the manifest, last."""
        self.keepalive()
        if self._staging is not None:
            self._promote(manifest)
        write_manifest(self.location, manifest)
        # Finished from here: a staging directory that cannot be removed is a leftover the next
        # writer removes, not a failure of this build.
        staging, self._staging = self._staging, None
        if staging is not None:
            with contextlib.suppress(Exception):
                self._remove([staging.name])

    def _promote(self, manifest: Manifest) -> None:
        assert self._staging is not None
        new = [shard.path for shard in manifest.shards]
        if storage.exists(self._staging.join(REJECTS_NAME)):
            new.append(REJECTS_NAME)
        # From the moment the old manifest is gone the output is unfinished: a crash from here
        # on leaves maskprep shards and no manifest, which resume or overwrite take up.
        storage.delete_many(self.location.join(n) for n in self.state.manifests)
        old = [n for n in self.state.owned() if n not in self.state.manifests and n not in new]
        storage.delete_many(self.location.join(n) for n in old)
        for name in new:
            self.keepalive()
            _move(self._staging.join(name), self.location.join(name))
        if self.location.is_local:
            storage.writers.fsync_directory(self.location.path)

    def abort(self) -> None:
        """Remove what this writer made that is not a complete output: its staging directory
        and, locally, any temporary of maskprep's names a signal left behind."""
        with contextlib.suppress(Exception):
            if self._staging is not None:
                self._remove([self._staging.name])
                self._staging = None
            if self.location.is_local:
                self._remove([n for n in os.listdir(self.location.path) if _own_temporary(n)])

    def close(self) -> None:
        """Release the lock; a local directory this writer created and left empty goes."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
        _remove_if_empty(self.location, self._created)

    def _remove(self, names: list[str]) -> None:
        """Remove leftovers: files, or staging directories with all they hold."""
        for name in names:
            location = self.location.join(name)
            if not location.is_local:
                storage.delete_many([location, *(i.location for i in _walk(location))])
            elif os.path.isdir(location.path) and not os.path.islink(location.path):
                shutil.rmtree(location.path)  # never follows a link inside
            else:
                storage.delete(location)

    def __enter__(self) -> OutputSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        self.close()


@contextlib.contextmanager
def write_failures(location: storage.Location) -> Iterator[None]:
    """Report a failure to write the output at ``location`` (a full disk, an unwritable file) as
    one line naming it, instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise os_failure(location.url, "cannot write output", exc) from None
    except storage.StorageFailure as exc:
        # The machine failed, not the command (exit 1, see maskprep.errors).
        raise IOFailure(f"{exc.url}: cannot write output: {exc.detail}") from None


def _own_temporary(name: str) -> bool:
    target = temporary_target(name)
    return target is not None and is_own_name(target)


def _walk(location: storage.Location) -> list[storage.ObjectInfo]:
    try:
        return list(storage.walk(location, temporaries=True))
    except storage.NotFound:
        return []


def _move(source: storage.Location, target: storage.Location) -> None:
    """A staged file to its final name: renamed locally (atomic, same directory tree), copied
    server-side on a store (the copy appears whole or not at all)."""
    if source.is_local:
        os.replace(source.path, target.path)
        return
    storage.copy(source, target)


def _make_directory(location: storage.Location) -> bool:
    """Create a local output directory (and parents); True when this call created it."""
    path = location.path
    if os.path.isdir(path):
        return False
    if os.path.lexists(path):
        raise OutputError(f"{path}: output exists and is not a directory")
    try:
        os.makedirs(path)
    except FileExistsError:
        return False  # another process made it between the check and here; the lock decides
    except OSError as exc:
        raise os_failure(path, "cannot create output directory", exc) from None
    return True


def _remove_if_empty(location: storage.Location, created: bool) -> None:
    if created and location.is_local:
        with contextlib.suppress(OSError):
            os.rmdir(location.path)  # fails, as it should, unless it is empty
