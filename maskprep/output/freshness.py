"""Whether a finished output is still what a build would make now, before ``resume`` returns it
as it is: same options, the same bytes of every input, the same tokenizer files, and every file
its manifest lists (shards, rejects) still there with the bytes it records. Anything else is
refused, naming what changed: ``--overwrite`` rebuilds it.

Inputs are compared by size first (free), then by the sha256 of their bytes, which the manifest
holds: a file rewritten in place with the same size is caught too. The manifest records no
modification times (they would make equal builds give different manifests), so a finished
output's inputs are read once more to be hashed. Standard input cannot be read twice: an output
built from it is returned on trust. A named pipe (or a device) given as an input cannot be read
twice either, and is not standard input the user knowingly gave: it is refused, naming it.
"""

from __future__ import annotations

from .. import storage
from ..config import BuildConfig, PartSpec
from ..errors import OVERWRITE, DataError, OutputError
from ..sources.inputs import STDIN, expand_inputs, input_info, size_of
from ..sources.parts import FileRange, open_range, plan_part
from ..storage import StorageOptions
from ..tokenizing.loading import tokenizer_file_hashes
from .manifest import Manifest, RecordedConfig, manifest_problems


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
        size = _size(unit.path, options) if unit.whole else unit.end - unit.start
        if entry.size != size:
            raise _changed(where, unit.path, f"{size} bytes now, {entry.size} then")
        if entry.sha256 != _sha256(unit, options):
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
    return [FileRange(path, 0, _size(path, options), 1, whole=True) for path in files]


def _changed(where: str, path: str, detail: str) -> OutputError:
    return OutputError(
        f"{path}: changed since the build in {where} finished ({detail}); overwrite the output "
        "to rebuild it"
    )


def _size(path: str, options: StorageOptions | None) -> int:
    return size_of(path, options)


def _sha256(unit: FileRange, options: StorageOptions | None) -> str:
    with open_range(unit, options) as handle:
        return storage.sha256_stream(handle)


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
