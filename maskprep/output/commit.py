"""The commit protocol: how a build or a merge writes an output (a local directory or an
object-store prefix) so that nothing any writer does can damage a finished output, whatever it
is doing when it is stopped, killed, suspended or overtaken.

**The rule.** No writer deletes or overwrites an object it cannot prove it created and that no
committed manifest references. The manifest is the commit: one conditional write, created only
if absent (a first build) or replaced only if it is still the version the writer started from
(``--overwrite``). What an aborted or overtaken attempt leaves behind is garbage for the next
writer that commits, never a hole in someone else's output. No step depends on a clock: a writer
suspended for an hour, one whose clock is wrong, or a batch slower than any lease cannot make
another writer's output lose a file.

**Names** (:mod:`.names`). A build that starts an output or resumes one writes *plain* names
(``data-00000.parquet``); every attempt of the same build writes the same bytes under them, so a
resumed build is byte-identical to an undisturbed one. A writer that replaces an output writes
names *tagged* with its random attempt id (``data-00000-<tag>.parquet``), which no other writer
ever uses, in a staging directory ``.staging-<tag>/``; the output it replaces stays whole beside
them until the manifest switches.

**Steps** (:class:`OutputSession`):

1. *Open.* Read what is there, once (:func:`.directory.scan`): the manifest and its version (the
   base this writer commits against), the files of an unfinished build, garbage, foreign files
   and links (refused: nothing is written or deleted through a link). Decide (:func:`plan`):
   write afresh, resume, replace, or return a finished output that is still what this build
   makes (:mod:`.finished`, every listed byte checked). A record ``.maskprep-writer-<tag>.json``
   says who writes; locally it is ``flock``-ed while its writer lives, which lets a plain build
   say "another maskprep process is writing" (a courtesy: safety never rests on it).
2. *Write.* Shards and the rejects file go through atomic writers (complete or absent) and are
   published create-if-absent: a plain name already there is compared byte for byte (sha256)
   and kept if equal (another attempt of the same build wrote it), else the build stops; a
   writer never overwrites a file. Just before each publish the writer checks it has not been
   overtaken (a manifest appeared, or changed from its base) and stops if it has.
3. *Commit* (:meth:`OutputSession.commit`). A tagged writer first moves its staged files to
   their final (tagged, so unused) names, create-if-absent. Then the manifest: put-if-absent
   (``os.link`` locally, ``If-None-Match: *`` on S3), or compare-and-swap against the base
   version (``If-Match`` on S3; locally the sha256 of the file, compared and renamed under a
   ``flock`` of the directory). One write: before it the old output is whole, after it the new
   one is. A plain writer that finds a manifest byte-identical to its own has been overtaken
   by the same build and returns it as its result.
4. *Sweep.* Only a writer whose commit succeeded removes garbage, and only the files that were
   there when it opened: every writer whose files those are based itself on a state its commit
   has ended (the manifest absent, or an older version), so none of them can commit any more,
   and no committed manifest lists them. Files that appeared since are left alone.
5. *Abort.* A writer that fails or is interrupted removes only what it made and nobody else can
   use: its temporaries, its staging directory, its tagged files (before it issued its commit).
   Complete files under plain names stay (another attempt may already have taken them up); they
   are an unfinished output, which ``--resume`` finishes, and garbage to the next commit.

What this costs: a writer stopped while publishing a shard can, on waking, leave that one shard
under a name no manifest lists; readers that go by the manifest ignore it, ``inspect`` notes it,
and the next commit removes it. No leases: with this rule a second writer is never unsafe, so
it is not kept waiting (a killed Kubernetes pod's or Ray task's retry resumes at once).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from .. import storage
from ..errors import (
    OVERWRITE,
    RESUME,
    ConfigError,
    DataError,
    IOFailure,
    OutputError,
    os_failure,
)
from .directory import (
    OutputState,
    WriterRecord,
    check_unfinished_is_ours,
    hold_record,
    holds_maskprep_content,
    names_shown,
    other_writers,
    scan,
)
from .manifest import Manifest, manifest_bytes
from .names import (
    MANIFEST_NAME,
    PLAIN,
    NameSet,
    is_staging_name,
    new_tag,
    staging_name,
    temporary_target,
)


@dataclass(frozen=True)
class OutputRequest:
    """What a command asks of an output: ``overwrite`` / ``resume`` as the user chose, ``merge``
    for a merge (which has no resume)."""

    overwrite: bool = False
    resume: bool = False
    merge: bool = False


class Action(enum.Enum):
    """What a build or merge does with an output, decided by :func:`plan`."""

    #: Nothing of value there: write plain names.
    WRITE = "write"
    #: An unfinished build, resumed: its complete plain shards are checked and kept.
    RESUME = "resume"
    #: An unfinished build, overwritten: a new one under tagged names; the old files are
    #: garbage once it commits.
    REPLACE = "replace"
    #: A finished output, overwritten: built beside it under tagged names, switched by a
    #: compare-and-swap of the manifest.
    STAGE = "stage"
    #: A finished output, resumed: returned as it is if it is still what this build makes.
    FINISHED = "finished"


class Overtaken(OutputError):
    """Another writer committed the output while this one was writing: this one stops, and
    changes nothing of what the other wrote."""


def plan(state: OutputState, request: OutputRequest, alive: list[WriterRecord]) -> Action:
    """What a build (or, with ``request.merge``, a merge) may do with the output ``state``
    describes; refuses with :class:`OutputError` (exit 2) what it may not touch. ``alive``:
    writers known to be running (locally), or not known to be dead (on a store)."""
    url = state.location.url
    if state.links:
        where = state.location.join(state.links[0]).url
        raise OutputError(
            f"{where}: is a symbolic link; maskprep never writes through a link in its output "
            "directory (remove it)"
        )
    if state.foreign:
        raise OutputError(
            f"{url}: holds files maskprep did not write ({names_shown(state.foreign)})"
        )
    if state.finished:
        if request.resume:
            return Action.FINISHED
        if request.overwrite:
            if not storage.capabilities(state.location).compare_and_swap:
                raise OutputError(
                    f"{url}: this store cannot replace an object only if it is unchanged (no "
                    "conditional replace), which replacing a finished output needs; remove the "
                    "output first, or write to another place"
                )
            return Action.STAGE
        raise OutputError(
            f"{url}: output directory is not empty (a finished output); overwrite it "
            f"({OVERWRITE}) to replace its contents",
            suggests=(OVERWRITE,),
        )
    if request.resume and not request.merge:
        return Action.RESUME
    if request.overwrite:
        if state.unfinished:
            check_unfinished_is_ours(state)
            return Action.REPLACE
        return Action.WRITE
    if alive:
        raise alive[0].refusal(url)
    if state.unfinished:
        _refuse_unfinished(state, request)
    return Action.WRITE


def _refuse_unfinished(state: OutputState, request: OutputRequest) -> None:
    url = state.location.url
    if request.merge:
        # A merge cannot resume (a build's way out): only replacing it is suggested.
        raise OutputError(
            f"{url}: holds an unfinished output ({len(state.shards)} complete shards and no "
            f"{MANIFEST_NAME}); overwrite it ({OVERWRITE}) to replace it with the merge",
            suggests=(OVERWRITE,),
        )
    raise OutputError(
        f"{url}: unfinished build ({len(state.shards)} complete shards and no {MANIFEST_NAME}); "
        f"resume it ({RESUME}) to finish it, or overwrite it ({OVERWRITE}) to start over",
        suggests=(RESUME, OVERWRITE),
    )


class OutputSession:
    """One writer's hold on the output at ``location`` (see the module notes); open with
    :meth:`open`, use as a context manager (aborts on an exception, then closes)."""

    def __init__(
        self,
        location: storage.Location,
        state: OutputState,
        action: Action,
        created: bool,
    ) -> None:
        self.location = location
        self.state = state
        self.action = action
        self.tag = new_tag()
        tagged = action in (Action.REPLACE, Action.STAGE)
        #: The names this writer gives its files.
        self.names: NameSet = NameSet(self.tag) if tagged else PLAIN
        self._staging = location.join(staging_name(self.tag)) if tagged else None
        #: Where shards and rejects go: the output, or this writer's staging directory.
        self.target = self._staging or location
        self._created = created
        self._record: storage.Held | None = None
        #: Files this writer alone made under their final names (a tagged writer's moved files,
        #: a merge's placed shards), and whether the manifest's write was issued.
        self._moved: list[storage.Location] = []
        self._placed: list[storage.Location] = []
        self._scratch: list[storage.Location] = []
        self._issued = False

    @classmethod
    def open(cls, location: storage.Location, request: OutputRequest) -> OutputSession:
        """Read what the output holds and decide what this writer may do with it; refused
        (:class:`OutputError`, exit 2) when it may do nothing."""
        try:
            created = storage.create_directory(location)
        except storage.StorageRequestError as exc:
            raise OutputError(f"{location.url}: output {exc.detail}") from None
        except OSError as exc:
            raise os_failure(location.url, "cannot create output directory", exc) from None
        try:
            state = scan(location)
            action = plan(state, request, other_writers(location, state.writers))
            session = cls(location, state, action, created)
            if action is not Action.FINISHED:
                try:
                    session._record = hold_record(location, session.tag, action.value)
                except OSError as exc:
                    raise os_failure(
                        location.url, "cannot write to the output directory", exc
                    ) from None
        except BaseException:
            if created:
                storage.remove_empty_directory(location)
            raise
        return session

    @property
    def staged(self) -> bool:
        """Whether this writer builds in a staging directory, beside an output that stays as it
        is unless :meth:`commit` switches to the new one."""
        return self._staging is not None

    @property
    def existing_shards(self) -> list[str]:
        """The complete shards a resumed build checks and keeps."""
        return self.state.shards if self.action is Action.RESUME else []

    def start_over(self) -> None:
        """Write an unfinished output anew instead of resuming it (its files must be
        maskprep's, as for an overwrite): a Ray build resumes its parts, not its merge."""
        assert self.action is Action.RESUME
        check_unfinished_is_ours(self.state)
        self.action = Action.REPLACE
        self.names = NameSet(self.tag)
        self._staging = self.target = self.location.join(staging_name(self.tag))

    def begin(self) -> None:
        """Make room to write: the staging directory of a writer of tagged names."""
        if self._staging is not None:
            storage.create_directory(self._staging)

    # ------------------------------------------------------------------ overtaken?

    def guard(self) -> None:
        """Raise :class:`Overtaken` if another writer committed the output since this one
        opened it (the manifest's version is not the one it started from): from then on this
        writer publishes nothing more."""
        if storage.version(self.location.join(MANIFEST_NAME)) != self.state.manifest_version:
            raise Overtaken(
                f"{self.location.url}: another writer finished this output while this build was "
                "writing; nothing it wrote was changed. Check it (maskprep inspect), or overwrite "
                f"it ({OVERWRITE})",
                suggests=(OVERWRITE,),
            )

    # ------------------------------------------------------------------ write

    def writer(self, name: str) -> storage.AtomicWriter:
        """An atomic writer of the file ``name`` in :attr:`target`, published by
        :meth:`publish`."""
        return storage.write(self.target.join(name), exclusive=True, tag=self.tag)

    def publish(self, writer: storage.AtomicWriter) -> storage.WriteResult:
        """Publish a complete file create-if-absent, unless this writer was overtaken. A file
        already there under a plain name holding exactly these bytes (another attempt of the same
        build wrote it) is kept as it is; other bytes stop the build, and nothing is replaced."""
        try:
            return writer.commit(self.guard)
        except storage.AlreadyExists:
            location = writer.location
            digest = writer.hexdigest()
            if self._staging is None and storage.sha256_of(location) == digest:
                return storage.WriteResult(location, writer.tell(), digest)
            raise OutputError(
                f"{location.url}: written meanwhile by another writer, with other bytes than "
                f"this build writes there; nothing was replaced. Overwrite the output "
                f"({OVERWRITE}) to rebuild it",
                suggests=(OVERWRITE,),
            ) from None

    def write_scratch(self, name: str, data: bytes) -> None:
        """Publish a file of this writer's scratch (a resume point), create-if-absent, best
        effort: one that cannot be written only makes a later resume slower. Scratch is removed
        once the output is committed."""
        writer = self.writer(name)
        try:
            writer.write(data)
            self.publish(writer)
            self._scratch.append(self.target.join(name))
        except Exception:
            writer.abort()

    def place(self, name: str, source: storage.Location, sha256: str) -> bool:
        """Place a copy of ``source`` (a merged part's shard, whose bytes must have ``sha256``)
        as ``name`` in :attr:`target`, create-if-absent: a hard link locally, a server-side copy
        on a store, else a copy through this process; the placed bytes are checked. Returns
        whether the shard was hard-linked. A merge never takes up a file it did not place, so
        those it placed are its own: an abort removes them."""
        target = self.target.join(name)
        self.guard()
        try:
            linked, digest = storage.link_or_copy(source, target, tag=self.tag)
        except storage.NotFound:
            raise ConfigError(f"{source}: shard listed in its part's manifest is missing") from None
        except storage.StorageRequestError as exc:
            if exc.url != source.url:
                raise
            raise ConfigError(
                f"{source}: shard listed in its part's manifest is not a file ({exc.detail})"
            ) from None
        except storage.AlreadyExists:
            raise OutputError(
                f"{target.url}: written meanwhile by another writer; nothing was replaced. "
                f"Overwrite the output ({OVERWRITE}) to redo the merge",
                suggests=(OVERWRITE,),
            ) from None
        self._placed.append(target)
        if (digest or storage.sha256_of(target)) != sha256:
            raise DataError(
                f"{source}: does not match the sha256 its part's manifest records (the shard was "
                "changed after the part was built); rebuild the part"
            )
        return linked

    # ------------------------------------------------------------------ commit

    def commit(self, manifest: Manifest) -> None:
        """Finish the output: move a staged one to its final names, then write the manifest,
        conditionally and last, then remove the garbage that was there when this writer
        opened (see the module notes). A writer of plain names that finds the very manifest it
        was to write (another attempt of this build committed first) takes it as its result."""
        if self._staging is not None:
            self.guard()  # overtaken: move nothing
            self._move_staged(manifest)
            self.guard()
        data = manifest_bytes(manifest)
        target = self.location.join(MANIFEST_NAME)
        base = self.state.manifest_version
        self._issued = True
        try:
            if base is not None:
                storage.replace_if_match(target, data, base)
            else:
                storage.put_if_absent(target, data)
        except storage.AlreadyExists:
            self._issued = False
            if self._staging is not None or storage.read_bytes(target) != data:
                self.guard()  # raises Overtaken: another writer committed other contents
                raise
            # Another attempt of this very build committed first: this output is it.
            with contextlib.suppress(Exception):
                storage.delete_many(self._scratch)
            return
        except (storage.VersionMismatch, storage.NotFound):
            self._issued = False
            self.guard()
            raise
        self._sweep(manifest)
        with contextlib.suppress(Exception):
            storage.delete_many(self._scratch)
        staging, self._staging = self._staging, None
        if staging is not None:
            with contextlib.suppress(Exception):
                storage.remove_tree(staging)

    def _move_staged(self, manifest: Manifest) -> None:
        """Each staged file to its final name in the output: a hard link locally (then the
        staged name goes), a create-if-absent server-side copy on a store."""
        assert self._staging is not None
        names = [shard.path for shard in manifest.shards]
        if manifest.rejects is not None:
            names.append(manifest.rejects.path)
        for name in names:
            target = self.location.join(name)
            self._moved.append(target)
            storage.move_if_absent(self._staging.join(name), target, tag=self.tag)
        storage.sync_directory(self.location)

    def _sweep(self, manifest: Manifest) -> None:
        """Remove what was there when this writer opened and its manifest does not list: every
        writer of it based itself on a state this commit ended. Best effort: the output is
        finished already, and what stays is garbage for the next commit."""
        keep = {shard.path for shard in manifest.shards} | {MANIFEST_NAME}
        if manifest.rejects is not None:
            keep.add(manifest.rejects.path)
        replaced = set(self.state.listed)  # the old output's, by its manifest: no need to look
        for name in sorted(self.state.names() - keep):
            with contextlib.suppress(Exception):
                location = self.location.join(name)
                if is_staging_name(name):
                    storage.remove_tree(location)
                # A foreign file that only borrows a shard's or rejects file's name stays.
                elif name in replaced or holds_maskprep_content(location):
                    storage.delete(location)

    # ------------------------------------------------------------------ end

    def abort(self) -> None:
        """Remove what this writer made that nobody else can use: its staging directory, its
        tagged files in the output (unless the manifest's write was issued, whose outcome may be
        unknown), and its temporaries. Complete plain files stay (see the module notes)."""
        with contextlib.suppress(Exception):
            if self._staging is not None:
                storage.remove_tree(self._staging)
                self._staging = None
            if not self._issued:
                storage.delete_many(self._moved + self._placed)
            self._moved, self._placed = [], []
            found = storage.entries(self.location) or []
            # This writer's temporaries: ``.tmp-NAME.<its tag>``.
            mine = [
                e.name
                for e in found
                if temporary_target(e.name) is not None and e.name.endswith("." + self.tag)
            ]
            storage.delete_many(self.location.join(n) for n in mine)

    def close(self) -> None:
        """Remove this writer's record; a local directory it created and left empty goes."""
        record, self._record = self._record, None
        if record is not None:
            record.release()
        if self._created:
            storage.remove_empty_directory(self.location)

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
