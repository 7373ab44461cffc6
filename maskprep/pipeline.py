"""``maskprep.build``: the stages composed, streamed in batches.

    read (sources) → batch → encode (tokenizing) → shape (shaping) → write (output)

Rejected records travel in the stream beside the records of their batch, and the bad-record
policy is applied here, on this thread, in input order. Every count of the manifest is taken
once: records read, rejected and blank as they pass, what fitting did by the shaper, and rows
and tokens from the shards written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import columns, storage
from .config import BuildConfig, RejectLimit
from .contract import ShardContract
from .errors import BadRecordError, DataError
from .output.commit import Action, OutputRequest, OutputSession, write_failures
from .output.freshness import check_unchanged
from .output.manifest import Manifest, Part, RecordedConfig
from .output.names import PLAIN
from .output.rejects import RejectsWriter
from .output.shards import ShardInfo, ShardWriter
from .results import BuildResult, LostTokens, Progress, Totals
from .resume import ResumeLog, Snapshot, build_digest, find_resume
from .shaping.fill import Fill, FillStats
from .shaping.fit import check_room, split_trainable
from .shaping.shaper import Shaper, make_shaper
from .sources.batches import batched
from .sources.inputs import STDIN
from .sources.records import Rejected, SourcePosition, SourceReader
from .tokenizing.cache import TokenizerCache
from .tokenizing.prepare import prepare_tokenizer
from .tokenizing.stream import encode_stream

__all__ = ["BuildResult", "Progress", "Totals", "build", "finished_build"]


def build(
    config: BuildConfig,
    *,
    stdin: BinaryIO | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    tokenizer: Any = None,
    tokenizer_cache: TokenizerCache | None = None,
    storage_options: storage.StorageOptions | None = None,
) -> BuildResult:
    """Build masked shards (padded, bucketed, packed or unpadded, per ``config.shape.strategy``)
    and a manifest from ``config``; return what was written.

    Raises :class:`~maskprep.errors.ConfigError` for unusable options, inputs or tokenizers,
    :class:`~maskprep.errors.OutputError` (a ``ConfigError``) when another build holds the output
    directory or it cannot be used as asked, :class:`~maskprep.errors.IOFailure` when writing
    fails (a full disk, a store that fails), and :class:`~maskprep.errors.DataError` for bad data:
    a :class:`~maskprep.errors.BadRecordError` at the first bad record under the ``fail`` policy,
    or, under ``skip``, a :class:`RejectsPastLimit` once more records are rejected than
    ``config.source.max_rejects`` allows (a count as soon as it is passed, a percentage once the
    input is read), and a :class:`TruncationPastLimit` when more of the tokens read were lost to
    overflow than ``config.shape.max_truncated`` allows. On an error or an interrupt
    (``KeyboardInterrupt``, or any exception that is not an ``Exception``, such as a signal turned
    into one) no manifest is written, so nothing left behind looks finished: the shards this call
    completed stay, as after a kill, for ``config.output.resume`` to reuse (see
    :mod:`maskprep.output.commit` for why a writer that stops never removes a complete file), and
    its temporary files go. Past ``max_rejects`` the rejects file is published to say why; an
    output this call was to overwrite is left as it was (the failed build's files go with its
    staging directory). ``tokenizer`` is the tokenizer ``load_tokenizer(config.tokenizer)``
    returns, already loaded (a worker building several parts loads it once).

    A plain-text build reads a local ``tokenizer.json`` with ``tokenizers`` alone where
    transformers would load it as it is (:mod:`maskprep.tokenizing.direct`). For the other local
    tokenizers, ``tokenizer_cache``, when given, lets a plain-text build skip loading
    transformers once an earlier build has cached that tokenizer (see
    :mod:`maskprep.tokenizing.cache`); neither ever changes the output.

    ``config.output.directory`` is a local directory or an object-store URL (``s3://…``), whose
    filesystem ``storage_options`` configures. The output is written by the commit protocol of
    :mod:`maskprep.output.commit`.
    """
    location = storage.parse_location(config.output.directory, storage_options)
    with build_output(config, location, storage_options) as (output, finished):
        if finished is not None:
            return finished
        return _build_locked(
            config,
            output,
            storage_options,
            stdin=stdin,
            on_progress=on_progress,
            loaded=tokenizer,
            tokenizer_cache=tokenizer_cache,
        )


@contextmanager
def build_output(
    config: BuildConfig,
    location: storage.Location,
    storage_options: storage.StorageOptions | None = None,
) -> Iterator[tuple[OutputSession, BuildResult | None]]:
    """The output a build of ``config`` writes at ``location``, opened as its options ask
    (write failures as one line); with the finished build's result (:func:`finished_build`)
    when a resume finds the output finished and still what this build makes, else ``None``."""
    request = OutputRequest(overwrite=config.output.overwrite, resume=config.output.resume)
    with write_failures(location), OutputSession.open(location, request) as output:
        finished = None
        if output.action is Action.FINISHED:
            finished = finished_build(output, config, storage_options)
        yield output, finished


def finished_build(
    output: OutputSession,
    config: BuildConfig,
    storage_options: storage.StorageOptions | None = None,
) -> BuildResult:
    """Resuming an output that already finished: its result, unchanged, when it is still what
    this build makes (same options and part, inputs and tokenizer files unchanged, every file it
    lists there with the bytes it records); refused naming what is not."""
    manifest = output.state.manifest
    assert manifest is not None
    check_unchanged(manifest, config, output.location, storage_options)
    return BuildResult.finished(_result_path(output.location), manifest)


def _result_path(location: storage.Location) -> Path | str:
    """Where a build wrote, as :class:`BuildResult` gives it: a path, or the URL."""
    return location.native


class TruncationPastLimit(DataError):
    """More of the tokens read were lost to ``overflow`` than ``max_truncated`` allows: the build
    fails as a bad record under the ``fail`` policy does (no manifest; its complete shards stay
    for a resume)."""


def _check_truncation(config: BuildConfig, lost: LostTokens, where: str) -> None:
    """Raise :class:`TruncationPastLimit` when more tokens were lost than the limit allows."""
    limit = config.shape.max_truncated
    if limit is None or not lost.past(limit):
        return
    raise TruncationPastLimit(
        f"{where}: {lost.describe(config.shape.max_length)}, more than the max_truncated limit "
        f"of {100 * limit:g}%; the output is left unfinished (no manifest)"
    )


class RejectsPastLimit(DataError):
    """More records were rejected than ``max_rejects`` allows: the build fails as a bad record
    under the ``fail`` policy does (no manifest; its complete shards stay for a resume), publishing
    the rejects file to say why."""


@dataclass
class _Read:
    """What the read side counts, and the bad-record policy applied to the rejected records as
    they arrive in the stream: ``fail`` (no ``rejects``) raises at the first one, ``skip`` writes
    each to ``rejects`` and counts it, up to ``limit``. ``staged``: the build writes beside a
    finished output it would replace, which a failed build leaves as it was, rejects file and
    all (this build's rejects go with its staging)."""

    rejects: RejectsWriter | None
    limit: RejectLimit | None = None
    staged: bool = False
    documents: int = 0
    rejected: int = 0
    without_labels: int = 0
    #: Told every line written to the rejects file (the resume points keep them).
    log: Callable[[str], None] | None = None

    def counts(self) -> dict[str, int]:
        """The counts, for a resume point."""
        return {
            "documents": self.documents,
            "rejected": self.rejected,
            "without_labels": self.without_labels,
        }

    def restore(self, counts: dict[str, int]) -> None:
        """Take up the counts of a resume point."""
        self.documents = int(counts["documents"])
        self.rejected = int(counts["rejected"])
        self.without_labels = int(counts["without_labels"])

    def reject(self, items: list[Rejected]) -> None:
        """Apply the policy to ``items``, in order."""
        for item in items:
            if self.rejects is None:
                raise BadRecordError(item.location, item.reason)
            self.rejected += 1
            self.without_labels += item.without_labels
            line = self.rejects.add(item)
            if self.log is not None:
                self.log(line)
            if self.limit is not None and self.limit.count is not None:
                # A count is known to be passed as soon as it is: no need to read on.
                self.check_limit(item.location, finished=False)

    def check_limit(self, where: str, *, finished: bool) -> None:
        """Raise :class:`RejectsPastLimit` when the rejects are past the limit; a percentage is
        judged only once the input is ``finished``."""
        limit = self.limit
        if limit is None or (limit.percent is not None and not finished):
            return
        read = self.documents + self.rejected
        if not limit.exceeded(self.rejected, read):
            return
        share = f" of {read:,} read ({100 * self.rejected / read:.1f}%)" if finished else ""
        after = (
            "the finished output there is left as it was"
            if self.staged
            else "the rejects file says why each was"
        )
        raise RejectsPastLimit(
            f"{where}: {self.rejected:,} records rejected{share}, more than the max_rejects "
            f"limit of {limit}; {after}"
        )


def _build_locked(
    config: BuildConfig,
    output: OutputSession,
    storage_options: storage.StorageOptions | None,
    *,
    stdin: BinaryIO | None,
    on_progress: Callable[[Progress], None] | None,
    loaded: Any,
    tokenizer_cache: TokenizerCache | None,
) -> BuildResult:
    """The build proper, run while this process holds the output's lock."""
    started = time.perf_counter()
    reader = SourceReader(
        config.source,
        stdin=stdin,
        sft=config.sft,
        part=config.part,
        storage_options=storage_options,
    )
    tokenizing = prepare_tokenizer(config, loaded, tokenizer_cache, storage_options)
    info = tokenizing.info
    check_room(config.shape, len(info.prefix_ids) + len(info.suffix_ids))
    shaper = make_shaper(config.shape, info.pad_token_id, info.padding_side)
    fill = FillStats.for_shape(config.shape)
    output.begin()
    # Resume points: where a resumed build of this one starts (maskprep.resume). Standard input
    # cannot be read twice, and a writer of tagged names is never resumed.
    points = output.names == PLAIN and STDIN not in reader.files
    digest = build_digest(config, info, reader.files) if points else ""
    resume = None
    if points and output.action is Action.RESUME:
        state = output.state
        format_ = config.output.format
        resume = find_resume(
            output.target, state.shards, state.resume_points, digest, reader, format_
        )
    taken = {shard.path for shard in resume.shards} if resume is not None else set()
    log = ResumeLog(digest, output.write_scratch) if points else None
    packed = config.shape.strategy == "pack"
    # Every shard carries what its rows are, for readers that get it without the manifest.
    schema = columns.schema(packed=packed).with_metadata(
        ShardContract.of_build(config, info).metadata()
    )
    writer = ShardWriter(
        output.target,
        config.output,
        schema,
        existing=[name for name in output.existing_shards if name not in taken],
        names=output.names,
        open_writer=output.writer,
        publish=output.publish,
        on_close=None if log is None else lambda shard: log.shard(shard, writer.position),
    )
    skip = config.source.on_bad_record == "skip"
    rejects = RejectsWriter(output.writer(output.names.rejects), output.publish) if skip else None
    read = _Read(rejects, config.source.max_rejects, staged=output.staged)
    read.log = None if log is None else log.rejected
    if resume is not None:
        # Start where the point says: what came before is in the shards taken up.
        reader.start_at(resume.point.restart)
        writer.adopt(resume.shards, resume.point.skip)
        shaper.restore(resume.point.shaper)
        fill.restore(resume.point.fill)
        read.restore(resume.point.read)
        if rejects is not None:
            rejects.add_lines(resume.rejects)

    def snapshot(start: SourcePosition | None) -> None:
        if log is not None and start is not None:
            log.batch(
                Snapshot(
                    start,
                    writer.position,
                    read.counts(),
                    shaper.snapshot(),
                    fill.snapshot(),
                    0,
                )
            )

    def progress() -> None:
        if on_progress is not None:
            rows, real = writer.written()
            elapsed = time.perf_counter() - started
            records = read.documents + read.rejected
            on_progress(
                Progress(records, rows, real, reader.bytes_read, reader.bytes_total, elapsed)
            )

    def write(shaped: Any) -> None:
        for rows in shaped:
            writer.write(rows.to_arrow())
            fill.add(rows)

    batches = batched(reader, config.batch_size, stop_at_reject=not skip, position=reader.position)
    stream = encode_stream(batches, tokenizing)
    committed = False
    unusable: str | None = None
    try:
        for batch, items in stream:
            snapshot(batch.start)
            read.reject(batch.rejected)
            if config.sft is not None:
                docs, late = split_trainable(batch.records, items, config.shape)
                read.reject(late)
            else:
                docs = items  # type: ignore[assignment] # the fast path rejects nothing
            read.documents += len(docs)
            write(shaper.shape(docs))
            progress()
        snapshot(reader.position())
        write(shaper.finish())
        read.check_limit(_names(reader), finished=True)  # before the shards are complete
        lost = LostTokens.of(shaper.stats, writer.written()[1])
        _check_truncation(config, lost, _names(reader))
        shards = writer.close()
        totals = _totals(read, reader, shaper, shards)
        unusable = _unusable(totals, reader, config)
        if unusable is not None:
            raise DataError(unusable)
        if totals.records_read != totals.accounted:
            raise AssertionError(
                f"internal error: {totals.records_read} records read but "
                f"{totals.accounted} accounted for"
            )
        progress()
        manifest = Manifest(
            config=RecordedConfig.from_build(config),
            tokenizer=info,
            inputs=tuple(reader.stats),
            shards=tuple(shards),
            totals=totals,
            fill=_fill(fill, totals),
            part=_part(config, reader),
            rejects=rejects.publish() if rejects is not None else None,
        )
        output.commit(manifest)  # last: the output is finished from here on
        committed = True
    except BaseException as exc:
        if committed:
            raise  # finished: an interrupt just after the manifest takes nothing back
        stream.close()  # stops the reader thread before the files it feeds are closed
        # The shard being written goes; complete ones stay for a resume, as after a kill.
        writer.abort()
        explained = unusable is not None or isinstance(exc, RejectsPastLimit)
        if rejects is not None and rejects.published is None:
            if explained and read.rejected and isinstance(exc, Exception):
                # Why no record could be used, or why too many were not: the one file such a
                # build publishes.
                with contextlib.suppress(Exception):
                    rejects.publish()
            rejects.discard()
        raise  # the session removes its staging and temporaries on the way out
    elapsed = time.perf_counter() - started
    return BuildResult(
        _result_path(output.location),
        manifest,
        elapsed,
        reused_shards=writer.reused,
        tokenizer_cached=tokenizing.cached,
    )


def _totals(read: _Read, reader: SourceReader, shaper: Shaper, shards: list[ShardInfo]) -> Totals:
    """The build's totals: what was read, what fitting did, and what the shards hold."""
    return Totals(
        records_read=read.documents + read.rejected,
        blank_lines=sum(s.blank_lines for s in reader.stats),
        records_rejected=read.rejected,
        documents_without_labels=read.without_labels,
        rows_written=sum(s.rows for s in shards),
        positions=sum(s.positions for s in shards),
        real_tokens=sum(s.real_tokens for s in shards),
        label_tokens=sum(s.label_tokens for s in shards),
        shape=shaper.stats,
    )


def _fill(fill: FillStats, totals: Totals) -> Fill:
    return fill.result(totals.rows_written, totals.positions, totals.real_tokens)


def _part(config: BuildConfig, reader: SourceReader) -> Part | None:
    if config.part is None:
        return None
    assert reader.planned is not None and reader.ranges is not None  # a part plans its reads
    return Part(config.part.index, config.part.count, tuple(reader.ranges), tuple(reader.planned))


def _unusable(totals: Totals, reader: SourceReader, config: BuildConfig) -> str | None:
    """Why a build that read nothing, or could use nothing it read, fails; ``None`` when it
    wrote rows. A part may be empty (more parts than lines): the merge checks the whole."""
    if config.part is not None:
        return None
    if totals.records_read == 0:
        return f"{_names(reader)}: no documents in the input"
    if totals.rows_written == 0:
        return (
            f"{_names(reader)}: no document could be used ({totals.records_rejected} "
            f"rejected, {totals.shape.documents_dropped} dropped as too long)"
        )
    return None


def _names(reader: SourceReader) -> str:
    names = [s.path for s in reader.stats]
    return names[0] if len(names) == 1 else f"{len(names)} inputs"
