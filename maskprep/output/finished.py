"""A finished output: its manifest assembled from what each stage counted, the check that it is
still what a build would make before ``--resume`` returns it as it is, and its shards read back
(``load_dataset``).

**Assembly.** The read side's records and rejects
(:class:`~maskprep.sources.records.RejectPolicy`), the inputs' own counts, what fitting did (the
shaper's :class:`~maskprep.shaping.fit.ShapeStats`), the fill, and the rows and tokens of the
shards written; also what makes a finished stream unusable as an output.

**Freshness.** A finished output is returned by a resumed build only if it has the same options,
the same bytes of every input, the same tokenizer files, and every file its manifest lists
(shards, rejects) still there with the bytes it records; anything else is refused, naming what
changed (``--overwrite`` rebuilds it). Inputs are compared by size first, then by the sha256 the
manifest holds (a file rewritten in place with the same size is caught too; the manifest records
no modification times, which would make equal builds differ). Standard input cannot be read
twice: an output built from it is returned on trust. A named pipe (or a device) given as an
input cannot be read twice either, and is not standard input the user knowingly gave: it is
refused, naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import storage
from ..config import BuildConfig, PartSpec
from ..errors import OVERWRITE, ConfigError, DataError, OutputError
from ..extras import require_extra
from ..shaping.fill import FillStats
from ..shaping.fit import ShapeStats
from ..sources.inputs import STDIN, expand_inputs, input_info, size_of
from ..sources.parts import FileRange, open_range, plan_part
from ..sources.records import RejectPolicy, SourceReader
from ..storage import StorageOptions
from ..tokenizing.loading import TokenizerInfo, tokenizer_file_hashes
from .manifest import (
    Manifest,
    Part,
    RecordedConfig,
    RejectsFile,
    Totals,
    manifest_problems,
    read_manifest,
)
from .shards import ShardInfo


def build_totals(
    policy: RejectPolicy, reader: SourceReader, shape: ShapeStats, shards: list[ShardInfo]
) -> Totals:
    """The build's totals: what was read, what fitting did, and what the shards hold."""
    return Totals(
        records_read=policy.read,
        blank_lines=sum(s.blank_lines for s in reader.stats),
        records_rejected=policy.rejected,
        documents_without_labels=policy.without_labels,
        rows_written=sum(s.rows for s in shards),
        positions=sum(s.positions for s in shards),
        real_tokens=sum(s.real_tokens for s in shards),
        label_tokens=sum(s.label_tokens for s in shards),
        shape=shape,
    )


def unusable(totals: Totals, reader: SourceReader, config: BuildConfig) -> str | None:
    """Why a build that read nothing, or could use nothing it read, fails; ``None`` when it
    wrote rows, every record read accounted for (an internal error otherwise). A part may be
    empty (more parts than lines): the merge checks the whole."""
    if config.part is None and totals.records_read == 0:
        return f"{input_names(reader)}: no documents in the input"
    if config.part is None and totals.rows_written == 0:
        return (
            f"{input_names(reader)}: no document could be used ({totals.records_rejected} "
            f"rejected, {totals.shape.documents_dropped} dropped as too long)"
        )
    if totals.records_read != totals.accounted:
        raise AssertionError(
            f"internal error: {totals.records_read} records read but "
            f"{totals.accounted} accounted for"
        )
    return None


def input_names(reader: SourceReader) -> str:
    """The input, or how many there are, for a one-line message."""
    names = [s.path for s in reader.stats]
    return names[0] if len(names) == 1 else f"{len(names)} inputs"


def build_manifest(
    config: BuildConfig,
    info: TokenizerInfo,
    reader: SourceReader,
    shards: list[ShardInfo],
    totals: Totals,
    fill: FillStats,
    rejects: RejectsFile | None,
) -> Manifest:
    """The manifest of a finished build of ``config``."""
    return Manifest(
        config=RecordedConfig.from_build(config),
        tokenizer=info,
        inputs=tuple(reader.stats),
        shards=tuple(shards),
        totals=totals,
        fill=fill.result(totals.rows_written, totals.positions, totals.real_tokens),
        part=_part(config, reader),
        rejects=rejects,
    )


def _part(config: BuildConfig, reader: SourceReader) -> Part | None:
    if config.part is None:
        return None
    assert reader.planned is not None and reader.ranges is not None  # a part plans its reads
    return Part(config.part.index, config.part.count, tuple(reader.ranges), tuple(reader.planned))


def check_unchanged(
    manifest: Manifest,
    config: BuildConfig,
    location: storage.Location,
) -> None:
    """Refuse (:class:`OutputError`, naming what changed) a finished output that is no longer
    what a build of ``config`` makes: see the module notes. Inputs and a chat template given as
    URLs are read with ``location``'s storage options, as the build read them."""
    where = location.url
    options = location.options
    check_same_build(manifest, config, where)
    check_inputs_unchanged(manifest, config, where, options)
    check_tokenizer_unchanged(manifest, config, where, options)
    check_files_unchanged(manifest, location)
    problems = manifest_problems(manifest, location)
    if problems:
        raise DataError(f"{where}: the finished build's manifest is wrong: {problems[0]}")


def check_files_unchanged(manifest: Manifest, location: storage.Location) -> None:
    """Refuse when a file the manifest lists is gone or holds other bytes (each is hashed)."""
    listed = [(s.path, s.sha256) for s in manifest.shards]
    if manifest.rejects is not None:
        listed.append((manifest.rejects.path, manifest.rejects.sha256))
    for name, recorded in listed:
        try:
            digest = storage.sha256_of(location.join(name))
        except storage.NotFound:
            detail = "is gone"
        else:
            if digest == recorded:
                continue
            detail = "holds other bytes than it did"
        raise OutputError(
            f"{location.join(name).url}: listed by the finished output, but {detail} (sha256 "
            f"recorded {recorded[:12]}); overwrite the output ({OVERWRITE}) to rebuild it",
            suggests=(OVERWRITE,),
        )


def check_same_build(manifest: Manifest, config: BuildConfig, where: str) -> None:
    """Refuse a finished output made with other options or as another part."""
    part = manifest.part
    same_part = (part is None and config.part is None) or (
        part is not None
        and config.part is not None
        and (part.index, part.count) == (config.part.index, config.part.count)
    )
    if manifest.config.raw != RecordedConfig.from_build(config).raw or not same_part:
        raise OutputError(
            f"{where}: holds a finished build made with other options; overwrite it to replace it"
        )


def check_inputs_unchanged(
    manifest: Manifest,
    config: BuildConfig,
    where: str,
    options: StorageOptions | None = None,
) -> None:
    """Refuse (naming the input) when an input is not the bytes the finished build read."""
    if STDIN in config.source.inputs:
        return
    units = _units(manifest, config, options)
    for unit in units:
        if not input_info(unit.path, options).regular:
            raise OutputError(
                f"{unit.path}: a pipe or device, which cannot be read again to check it holds "
                f"what the build in {where} read; give the data as a regular file, or overwrite "
                "the output to rebuild it"
            )
    recorded = manifest.inputs
    then = [entry.path for entry in recorded]
    now = [unit.path for unit in units]
    if now != then:
        added = [p for p in now if p not in then]
        gone = [p for p in then if p not in now]
        if added:
            problem = f"{added[0]}: an input the build in {where} did not read"
        elif gone:
            problem = f"{gone[0]}: read by the build in {where}, no longer an input"
        else:
            problem = f"{now[0]}: the inputs come in another order than in the build in {where}"
        raise OutputError(f"{problem}; overwrite the output to rebuild it")
    for unit, entry in zip(units, recorded, strict=True):
        size = size_of(unit.path, options) if unit.whole else unit.end - unit.start
        if entry.size != size:
            raise _changed(where, unit.path, f"{size} bytes now, {entry.size} then")
        with open_range(unit, options) as handle:
            digest = storage.sha256_stream(handle)
        if entry.sha256 != digest:
            raise _changed(where, unit.path, "same size, other bytes")


def _units(
    manifest: Manifest, config: BuildConfig, options: StorageOptions | None
) -> list[FileRange]:
    """What the manifest's inputs describe, planned afresh from the inputs as they are now: a
    part's byte ranges, every part's in turn for a merged output, else whole files."""
    files = expand_inputs(config.source.inputs, options)
    if config.part is not None:
        return plan_part(files, config.part, options=options)
    if manifest.merged_from:
        count = len(manifest.merged_from)
        plans = (plan_part(files, PartSpec(i, count), options=options) for i in range(count))
        return [r for plan in plans for r in plan]
    return [FileRange(path, 0, size_of(path, options), 1, whole=True) for path in files]


def _changed(where: str, path: str, detail: str) -> OutputError:
    return OutputError(
        f"{path}: changed since the build in {where} finished ({detail}); overwrite the output "
        "to rebuild it"
    )


def check_tokenizer_unchanged(
    manifest: Manifest,
    config: BuildConfig,
    where: str,
    options: StorageOptions | None = None,
) -> None:
    """Refuse when a file of a local tokenizer directory changed (or came or went) since the
    finished build, or, for chat records rendered with a template file, when the template did."""
    name = config.tokenizer.name_or_path
    now = tokenizer_file_hashes(name)
    then = manifest.tokenizer.files
    if now != then:
        changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        raise OutputError(
            f"tokenizer {name}: {', '.join(changed) or 'its files'} changed since the build in "
            f"{where} finished; overwrite the output to rebuild it"
        )
    if config.sft is not None and config.sft.chat_template is not None:
        from ..tokenizing.prepare import prepare_tokenizer

        fingerprint = prepare_tokenizer(config, None, None, options).info.fingerprint
        if fingerprint != manifest.tokenizer.fingerprint:
            raise OutputError(
                f"tokenizer {name} with chat template {config.sft.chat_template}: changed since "
                f"the build in {where} finished; overwrite the output to rebuild it"
            )


def shard_paths(directory: str | os.PathLike[str]) -> list[Path]:
    """Paths of a finished local output's shards, in manifest order. An object-store output is
    refused with a one-line error: its shards are objects, read with pyarrow or fsspec."""
    if not storage.parse_location(directory).is_local:
        raise ConfigError(
            f"{directory}: a local output directory is needed here; read the shards of an "
            "object-store output with pyarrow.dataset or fsspec"
        )
    manifest = read_manifest(directory)
    return [Path(directory) / shard.path for shard in manifest.shards]


def load_dataset(
    directory: str | os.PathLike[str],
    storage_options: storage.StorageOptions | Mapping[str, Any] | None = None,
) -> Any:
    """Open a finished output as a Hugging Face ``datasets.Dataset``; needs the ``datasets``
    extra. A local output is memory-mapped where it lies. An output on an object store
    (``s3://bucket/out``) is read through fsspec with ``storage_options`` (a
    :class:`~maskprep.storage.StorageOptions`, or a dict of filesystem keyword arguments as
    ``datasets`` takes them); ``datasets`` copies its shards into its cache first, as it does
    for any remote data file."""
    options = (
        storage_options
        if isinstance(storage_options, storage.StorageOptions) or storage_options is None
        else storage.StorageOptions.from_mapping(storage_options)
    )
    location = storage.parse_location(directory, options)
    if location.is_local:  # a broken output is named first
        paths = [str(p) for p in shard_paths(location.path)]
    else:
        paths = [location.join(s.path).url for s in read_manifest(location).shards]
    require_extra("datasets", "datasets", "load_dataset")
    import datasets

    kind = "parquet" if paths and paths[0].endswith(".parquet") else "arrow"
    if location.is_local:
        return datasets.load_dataset(kind, data_files=paths, split="train")
    fs_options = location.options.for_protocol(location.protocol)
    try:
        return datasets.load_dataset(
            kind, data_files=paths, split="train", storage_options=fs_options
        )
    except ConnectionError as exc:
        if not storage.is_offline_mode(exc):
            raise
        # datasets reads HF_HUB_OFFLINE as "no remote files at all", object stores included.
        raise ConfigError(
            f"{location.url}: datasets is offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set) "
            "and reads no remote file; set HF_DATASETS_OFFLINE=0 to read the shards from the "
            "store while the Hub stays offline"
        ) from None
