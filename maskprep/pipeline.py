"""``maskprep.build``: the stages composed, streamed in batches.

    read (sources) → batch → encode (tokenizing) → shape (shaping) → write (output)

This module composes; each stage decides its part. Records rejected by reading travel in the
stream beside the records of their batch, those rejected by encoding (supervised records left
with nothing to train, :mod:`maskprep.tokenizing.prepare`) beside its documents, and the
bad-record policy (:class:`maskprep.sources.records.RejectPolicy`) takes both on this thread, in
input order.
The shaper fits and packs (:mod:`maskprep.shaping`), the shard writer writes, and the manifest
is assembled from every stage's counts (:mod:`maskprep.output.finished`): each count taken
once, as it passes. What a build reports: :class:`Progress` while it runs and
:class:`BuildResult` at the end (its :class:`~maskprep.output.manifest.Totals`, every count of a
build, live with the manifest that records them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from . import columns, storage
from .config import BuildConfig
from .contract import ShardContract
from .errors import DataError
from .output.commit import Action, OutputRequest, OutputSession, write_failures
from .output.finished import build_manifest, build_totals, check_unchanged, input_names, unusable
from .output.manifest import Manifest, Totals
from .output.names import PLAIN
from .output.shards import RejectsWriter, ShardInfo, ShardWriter
from .resume import Resume, ResumeLog, Snapshot, build_digest, find_resume
from .shaping.fill import FillStats, LostTokens, TruncationPastLimit, check_truncation
from .shaping.fit import check_room
from .shaping.rows import make_shaper
from .sources.inputs import STDIN
from .sources.records import (
    RejectPolicy,
    RejectsPastLimit,
    SourcePosition,
    SourceReader,
    batched,
)
from .tokenizing.cache import TokenizerCache
from .tokenizing.loading import TokenizerInfo
from .tokenizing.prepare import encode_stream, prepare_tokenizer

__all__ = ["BuildResult", "Progress", "RejectsPastLimit", "Totals", "TruncationPastLimit", "build"]


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running build, handed to the ``on_progress`` callback after each batch."""

    records: int
    rows: int
    real_tokens: int
    bytes_read: int
    bytes_total: int | None
    elapsed_s: float


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: where (a path, or the URL of an object-store output), the
    manifest written, and how long it took."""

    output: Path | str
    manifest: Manifest
    elapsed_s: float
    #: With resume: complete shards of the interrupted build that were checked and kept.
    reused_shards: int = 0
    #: The tokenizer came from the tokenizer cache (transformers was not loaded).
    tokenizer_cached: bool = False

    @property
    def totals(self) -> Totals:
        """Every count of the build (the manifest's)."""
        return self.manifest.totals

    @property
    def shards(self) -> tuple[ShardInfo, ...]:
        """The shards written, in order (the manifest's)."""
        return self.manifest.shards

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user should know about the output that is not an error, one line each
        (see :func:`build_warnings`)."""
        return build_warnings(self.manifest)

    @classmethod
    def finished(
        cls, directory: Path | str, manifest: Manifest, elapsed_s: float = 0.0
    ) -> BuildResult:
        """The result of an output that was already finished, returned as it is: every shard
        counts as reused."""
        return cls(directory, manifest, elapsed_s, reused_shards=len(manifest.shards))


#: A build that loses more than this share of the tokens it read to ``overflow`` warns.
TRUNCATION_WARNING = 0.05


def build_warnings(manifest: Manifest) -> tuple[str, ...]:
    """Warnings about a finished output, from its manifest: more than
    :data:`TRUNCATION_WARNING` of the tokens read lost to ``overflow``, and rows allowed longer
    than the tokenizer's ``model_max_length`` (where the tokenizer sets one)."""
    warnings = []
    max_length = manifest.config.max_length
    lost = LostTokens.of(manifest.totals.shape, manifest.totals.real_tokens)
    if lost.past(TRUNCATION_WARNING):
        warnings.append(
            f"{lost.describe(max_length)}: a longer max_length keeps them, or overflow 'split' "
            "(windows of max_length) for plain text"
        )
    limit = manifest.tokenizer.model_max_length
    if limit is not None and max_length > limit:
        warnings.append(
            f"max_length {max_length} exceeds the tokenizer's model_max_length {limit}: rows "
            "longer than the model's positions fail on absolute-position models and run on "
            "untrained positions on rotary ones; check the output against the model (maskprep "
            "verify)"
        )
    return tuple(warnings)


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
    transformers would load it as it is (:mod:`maskprep.tokenizing.loading`). For the other local
    tokenizers, ``tokenizer_cache``, when given, lets a plain-text build skip loading
    transformers once an earlier build has cached that tokenizer (see
    :mod:`maskprep.tokenizing.cache`); neither ever changes the output.

    ``config.output.directory`` is a local directory or an object-store URL (``s3://…``), whose
    filesystem ``storage_options`` configures. The output is written by the commit protocol of
    :mod:`maskprep.output.commit`.
    """
    location = storage.parse_location(config.output.directory, storage_options)
    with build_output(config, location) as (output, finished):
        if finished is not None:
            return finished
        return _build_locked(
            config,
            output,
            stdin=stdin,
            on_progress=on_progress,
            loaded=tokenizer,
            tokenizer_cache=tokenizer_cache,
        )


@contextmanager
def build_output(
    config: BuildConfig, location: storage.Location
) -> Iterator[tuple[OutputSession, BuildResult | None]]:
    """The output a build of ``config`` writes at ``location`` (whose storage options serve
    every file the build reads and writes), opened as its options ask
    (write failures as one line); with the finished build's result when a resume finds the
    output finished and still what this build makes (same options and part, inputs and tokenizer
    files unchanged, every file it lists there with the bytes it records; refused naming what is
    not), else ``None``."""
    request = OutputRequest(overwrite=config.output.overwrite, resume=config.output.resume)
    with write_failures(location), OutputSession.open(location, request) as output:
        finished = None
        if output.action is Action.FINISHED:
            manifest = output.state.manifest
            assert manifest is not None
            check_unchanged(manifest, config, output.location)
            finished = BuildResult.finished(output.location.native, manifest)
        yield output, finished


def _build_locked(
    config: BuildConfig,
    output: OutputSession,
    *,
    stdin: BinaryIO | None,
    on_progress: Callable[[Progress], None] | None,
    loaded: Any,
    tokenizer_cache: TokenizerCache | None,
) -> BuildResult:
    """The build proper, run in the output ``output`` opened: the stages set up, then run.
    Inputs and a chat template given as URLs are read with the output location's storage
    options: one set per build."""
    started = time.perf_counter()
    options = output.location.options
    reader = SourceReader(
        config.source, stdin=stdin, sft=config.sft, part=config.part, storage_options=options
    )
    tokenizing = prepare_tokenizer(config, loaded, tokenizer_cache, options)
    info = tokenizing.info
    check_room(config.shape, len(info.prefix_ids) + len(info.suffix_ids))
    shaper = make_shaper(config.shape, info.pad_token_id, info.padding_side)
    fill = FillStats.for_shape(config.shape)
    output.begin()
    log, resume = _resume_points(config, output, info, reader)
    taken = {shard.path for shard in resume.shards} if resume is not None else set()
    writer = ShardWriter(
        output.target,
        config.output,
        _shard_schema(config, info),
        existing=[name for name in output.existing_shards if name not in taken],
        names=output.names,
        open_writer=output.writer,
        publish=output.publish,
        on_close=None if log is None else lambda shard: log.shard(shard, writer.position),
    )
    skip = config.source.on_bad_record == "skip"
    rejects = RejectsWriter(output.writer(output.names.rejects), output.publish) if skip else None
    policy = RejectPolicy(
        rejects.add if rejects is not None else None,
        config.source.max_rejects,
        staged=output.staged,
        log=None if log is None else log.rejected,
    )
    if resume is not None:
        # Start where the point says: what came before is in the shards taken up.
        reader.start_at(resume.point.restart)
        writer.adopt(resume.shards, resume.point.skip)
        shaper.restore(resume.point.shaper)
        fill.restore(resume.point.fill)
        policy.restore(resume.point.read)
        if rejects is not None:
            rejects.add_lines(resume.rejects)

    def snapshot(start: SourcePosition | None) -> None:
        if log is not None and start is not None:
            log.batch(
                Snapshot(
                    start,
                    writer.position,
                    policy.counts(),
                    shaper.snapshot(),
                    fill.snapshot(),
                    0,
                )
            )

    def progress() -> None:
        if on_progress is not None:
            rows, real = writer.written()
            elapsed = time.perf_counter() - started
            on_progress(
                Progress(policy.read, rows, real, reader.bytes_read, reader.bytes_total, elapsed)
            )

    def write(shaped: Any) -> None:
        for rows in shaped:
            writer.write(rows.to_arrow())
            fill.add(rows)

    batches = batched(reader, config.batch_size, stop_at_reject=not skip, position=reader.position)
    stream = encode_stream(batches, tokenizing, config.shape)
    committed = False
    why: str | None = None
    try:
        # The steps, batch by batch: read → encode → shape → write.
        for batch, docs, rejected in stream:
            snapshot(batch.start)
            policy.reject(batch.rejected)  # what reading could not use
            policy.reject(rejected)  # what encoding could not train on
            policy.documents += len(docs)
            write(shaper.shape(docs))
            progress()
        snapshot(reader.position())
        write(shaper.finish())
        # Then the whole: limits judged, shards closed, the manifest assembled and committed.
        where = input_names(reader)
        policy.check_limit(where, finished=True)  # before the shards are complete
        check_truncation(config.shape, LostTokens.of(shaper.stats, writer.written()[1]), where)
        shards = writer.close()
        totals = build_totals(policy, reader, shaper.stats, shards)
        why = unusable(totals, reader, config)
        if why is not None:
            raise DataError(why)
        progress()
        published = rejects.publish() if rejects is not None else None
        manifest = build_manifest(config, info, reader, shards, totals, fill, published)
        output.commit(manifest)  # last: the output is finished from here on
        committed = True
    except BaseException as exc:
        if committed:
            raise  # finished: an interrupt just after the manifest takes nothing back
        stream.close()  # stops the reader thread before the files it feeds are closed
        # The shard being written goes; complete ones stay for a resume, as after a kill.
        writer.abort()
        explained = why is not None or isinstance(exc, RejectsPastLimit)
        if rejects is not None and rejects.published is None:
            if explained and policy.rejected and isinstance(exc, Exception):
                # Why no record could be used, or why too many were not: the one file such a
                # build publishes.
                with contextlib.suppress(Exception):
                    rejects.publish()
            rejects.discard()
        raise  # the session removes its staging and temporaries on the way out
    elapsed = time.perf_counter() - started
    return BuildResult(
        output.location.native,
        manifest,
        elapsed,
        reused_shards=writer.reused,
        tokenizer_cached=tokenizing.cached,
    )


def _resume_points(
    config: BuildConfig, output: OutputSession, info: TokenizerInfo, reader: SourceReader
) -> tuple[ResumeLog | None, Resume | None]:
    """The log of resume points this build writes, and the point a resumed build starts from
    (:mod:`maskprep.resume`). Standard input cannot be read twice, and a writer of tagged names
    is never resumed: neither gets points."""
    if output.names != PLAIN or STDIN in reader.files:
        return None, None
    digest = build_digest(config, info, reader.files)
    resume = None
    if output.action is Action.RESUME:
        state = output.state
        resume = find_resume(
            output.target, state.shards, state.resume_points, digest, reader, config.output.format
        )
    return ResumeLog(digest, output.write_scratch), resume


def _shard_schema(config: BuildConfig, info: TokenizerInfo) -> pa.Schema:
    """The shards' schema: the columns, and what the rows are in its metadata (for readers that
    get a shard without the manifest)."""
    packed = config.shape.strategy == "pack"
    return columns.schema(packed=packed).with_metadata(
        ShardContract.of_build(config, info).metadata()
    )
