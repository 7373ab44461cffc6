"""The manifest, ``_maskprep.json``: a typed :class:`Manifest` composed by ``build`` and ``merge``,
written last (create-if-absent; an ``--overwrite`` replaces it only by compare-and-swap against
the version it opened with, docs/storage.md), so that an output holding one is finished; and read
back with validation by everything that reads an output (``inspect``, ``verify``, ``merge``,
resume, ``load_dataset``), from a local directory or an object-store prefix.

Reading is strict where a wrong value would be acted on: a file that is not UTF-8 JSON, not an
object, lacks a key, holds a value of the wrong type or names a shard by anything but a plain
shard name in its own directory is a :class:`~maskprep.errors.ManifestError` naming the file and
the field. What reads fine but does not add up (totals that break the accounting identity, a
strategy this version does not know, shard files on disk that it does not list) is listed by
:func:`manifest_problems`: ``inspect`` reports it as a failed check, ``merge`` and resume refuse.

JSON is read by the dataclasses' own type hints (:func:`decode`): ``int``, ``float``, ``str``,
``bool``, ``None``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses. A key may be missing only where its field defaults to ``None`` (``part``); keys a
dataclass does not have are ignored, so a manifest with more than this version writes still reads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from .. import storage
from .._version import __version__
from ..config import PADDING_SIDES, STRATEGIES, BuildConfig
from ..errors import DataError, IOFailure, ManifestError, OutputError
from ..shaping.fill import BucketFill, Fill, ratio
from ..shaping.fit import ShapeStats
from ..sources.parts import FileRange, PlannedFile
from ..sources.records import InputStats
from ..token_ids import token_id_problem
from ..tokenizing.loading import TokenizerInfo
from .names import (
    EXTENSIONS,
    MANIFEST_NAME,
    PLAIN,
    NameSet,
    is_rejects_name,
    is_shard_name,
    name_set_of,
)
from .shards import RejectsFile, ShardInfo

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class RecordedConfig:
    """The resolved build configuration as the manifest records it.

    ``raw`` is kept verbatim (a JSON object; do not change it), so that configs compare exactly
    and a merge passes on every option, including those of another maskprep version. The values
    readers act on are typed and checked when read.
    """

    raw: dict[str, Any]
    strategy: str
    max_length: int
    buckets: tuple[int, ...] | None
    shard_format: str
    on_bad_record: str
    #: Built from supervised (prompt/completion or chat) records.
    supervised: bool

    @classmethod
    def from_build(cls, config: BuildConfig) -> RecordedConfig:
        """The record of ``config`` (without its output path, see
        :meth:`~maskprep.config.BuildConfig.to_manifest`)."""
        return cls.from_dict(json.loads(json.dumps(config.to_manifest())), "<config>")

    @classmethod
    def from_dict(cls, raw: Any, path: str, where: str = "config") -> RecordedConfig:
        """Read the ``config`` entry of the manifest at ``path``."""

        def get(*keys: str, kind: Any) -> Any:
            value = raw
            for depth, key in enumerate(keys):
                if not isinstance(value, dict):
                    field = ".".join((where, *keys[:depth]))
                    raise ManifestError(path, field, f"expected an object, got {json_kind(value)}")
                if key not in value:
                    raise ManifestError(path, ".".join((where, *keys[: depth + 1])), "missing")
                value = value[key]
            return decode(kind, value, path, ".".join((where, *keys)))

        shard_format = get("output", "format", kind=str)
        if shard_format not in EXTENSIONS:
            field = f"{where}.output.format"
            raise ManifestError(path, field, f"unknown shard format {shard_format!r}")
        buckets = get("shape", "buckets", kind=tuple[int, ...] | None)
        return cls(
            raw=raw,
            strategy=get("shape", "strategy", kind=str),
            max_length=get("shape", "max_length", kind=int),
            buckets=buckets,
            shard_format=shard_format,
            on_bad_record=get("source", "on_bad_record", kind=str),
            supervised=get("sft", kind=dict[str, Any] | None) is not None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The recorded JSON object (a copy)."""
        return json.loads(json.dumps(self.raw))


@dataclass(frozen=True)
class Totals:
    """Every count of a build. Each record read ends up written, rejected or dropped:
    ``records_read == shape.documents_written + shape.documents_dropped + records_rejected``
    (see :attr:`accounted`). Rows, positions, real and label tokens are the written shards'."""

    records_read: int = 0
    blank_lines: int = 0
    records_rejected: int = 0
    documents_without_labels: int = 0
    rows_written: int = 0
    positions: int = 0
    real_tokens: int = 0
    label_tokens: int = 0
    shape: ShapeStats = field(default_factory=ShapeStats)

    @property
    def pad_tokens(self) -> int:
        """Positions that hold padding."""
        return self.positions - self.real_tokens

    @property
    def fill(self) -> float:
        """Real tokens over positions."""
        return ratio(self.real_tokens, self.positions)

    @property
    def accounted(self) -> int:
        """Records that were written, dropped or rejected; equals ``records_read`` when every
        record is accounted for."""
        shape = self.shape
        return shape.documents_written + shape.documents_dropped + self.records_rejected

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for the manifest and ``--json``, with the derived counts and fractions."""
        return {
            "records_read": self.records_read,
            "blank_lines": self.blank_lines,
            "records_rejected": self.records_rejected,
            "documents_without_labels": self.documents_without_labels,
            **self.shape.as_dict(),
            "rows_written": self.rows_written,
            "positions": self.positions,
            "real_tokens": self.real_tokens,
            "pad_tokens": self.pad_tokens,
            "label_tokens": self.label_tokens,
            "fill": self.fill,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str, where: str = "totals") -> Totals:
        """Read the flat dict :meth:`as_dict` writes (derived values are recomputed)."""
        shape = decode_fields(ShapeStats, data, path, where)
        return decode_fields(cls, data, path, where, shape=shape)

    @classmethod
    def sum(cls, items: Sequence[Totals]) -> Totals:
        """The totals of the parts ``items`` of one build taken together (``merge``)."""
        shape = ShapeStats(
            **{f.name: sum(getattr(t.shape, f.name) for t in items) for f in fields(ShapeStats)}
        )
        counts = {
            f.name: sum(getattr(t, f.name) for t in items) for f in fields(cls) if f.name != "shape"
        }
        return cls(**counts, shape=shape)


@dataclass(frozen=True)
class Part:
    """Which part of how many a part's output is, the bytes it read, and every input file of the
    build as its plan saw it."""

    index: int
    count: int
    ranges: tuple[FileRange, ...]
    files: tuple[PlannedFile, ...]


@dataclass(frozen=True)
class MergedPart:
    """One part a merged output was joined from: its index, directory, ranges and shard count."""

    index: int
    directory: str
    ranges: tuple[FileRange, ...]
    shards: int


@dataclass(frozen=True)
class Manifest:
    """A finished output: how it was built, from what, and what it holds.

    ``part`` is set for one part of an array build, ``merged_from`` (and for packs
    ``pack_scope``) for a merge of parts, ``engine`` for a build run on Ray, ``rejects`` for an
    output with a rejects file (a build with the ``skip`` policy).
    """

    config: RecordedConfig
    tokenizer: TokenizerInfo
    inputs: tuple[InputStats, ...]
    shards: tuple[ShardInfo, ...]
    totals: Totals
    fill: Fill
    format: int = MANIFEST_FORMAT
    maskprep_version: str = __version__
    part: Part | None = None
    merged_from: tuple[MergedPart, ...] | None = None
    pack_scope: str | None = None
    engine: str | None = None
    rejects: RejectsFile | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; the entries that are not set are left out."""
        data: dict[str, Any] = {
            "format": self.format,
            "maskprep_version": self.maskprep_version,
            "config": self.config.as_dict(),
            "tokenizer": asdict(self.tokenizer),
            "inputs": [asdict(i) for i in self.inputs],
            "shards": [asdict(s) for s in self.shards],
            "totals": self.totals.as_dict(),
            "fill": self.fill.as_dict(),
        }
        for name in ("part", "merged_from", "pack_scope", "engine", "rejects"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                data[name] = [asdict(item) for item in value]
            elif dataclasses.is_dataclass(value):
                data[name] = asdict(value)  # type: ignore[arg-type] # an instance, not a class
            elif value is not None:
                data[name] = value
        return data

    @property
    def name_sets(self) -> set[NameSet]:
        """The name sets the output's shards use (one, unless the manifest was tampered with)."""
        return {name_set_of(s.path) or PLAIN for s in self.shards} or {PLAIN}

    @classmethod
    def from_dict(cls, data: Any, path: str) -> Manifest:
        """Read a parsed manifest; ``path`` names it in errors."""
        if not isinstance(data, dict):
            raise ManifestError(path, "", f"expected a JSON object, got {json_kind(data)}")
        for key in ("format", "config", "totals", "fill"):
            if key not in data:
                raise ManifestError(path, key, "missing")
        version = decode(int, data["format"], path, "format")
        if version > MANIFEST_FORMAT:
            raise ManifestError(
                path, "format", f"{version} is newer than this maskprep reads ({MANIFEST_FORMAT})"
            )
        fill = data["fill"]
        buckets = None
        if isinstance(fill, dict) and "buckets" in fill:
            buckets = decode(tuple[BucketFill, ...], fill["buckets"], path, "fill.buckets")
        manifest = decode_fields(
            cls,
            data,
            path,
            "",
            config=RecordedConfig.from_dict(data["config"], path),
            totals=Totals.from_dict(data["totals"], path),
            fill=decode_fields(Fill, fill, path, "fill", buckets=buckets),
        )
        _check_shard_names(manifest, path)
        _check_token_ids(manifest, path)
        return manifest


def _check_token_ids(manifest: Manifest, path: str) -> None:
    """The recorded pad and EOS ids are token ids and the padding side is one: readers hand them
    to collators and checks."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(manifest.tokenizer, name)
        problem = None if value is None else token_id_problem(value)
        if problem is not None:
            raise ManifestError(path, f"tokenizer.{name}", problem)
    side = manifest.tokenizer.padding_side
    if side not in PADDING_SIDES:
        raise ManifestError(path, "tokenizer.padding_side", f"{side!r} is not left or right")


def _check_shard_names(manifest: Manifest, path: str) -> None:
    """Shards are shard names inside the output directory: never a path that could reach
    outside it (absolute, ``..``, a subdirectory), and each listed once; so is the rejects
    file."""
    seen: set[str] = set()
    for number, shard in enumerate(manifest.shards):
        if not is_shard_name(shard.path):
            raise ManifestError(
                path,
                f"shards[{number}].path",
                f"{shard.path!r} is not a plain shard name (data-NNNNN.parquet or .arrow in the "
                "output directory itself)",
            )
        if shard.path in seen:
            raise ManifestError(path, f"shards[{number}].path", f"{shard.path} listed twice")
        seen.add(shard.path)
    if manifest.rejects is not None and not is_rejects_name(manifest.rejects.path):
        raise ManifestError(
            path,
            "rejects.path",
            f"{manifest.rejects.path!r} is not a rejects file name (_rejects.jsonl in the output "
            "directory itself)",
        )


#: Totals that are sums over the listed shards: (totals field, shard field).
_SHARD_SUMS = (
    ("rows_written", "rows"),
    ("positions", "positions"),
    ("real_tokens", "real_tokens"),
    ("label_tokens", "label_tokens"),
)


def manifest_problems(
    manifest: Manifest, directory: str | os.PathLike[str] | storage.Location | None = None
) -> list[str]:
    """What does not add up in ``manifest``, each as ``field: detail``: a strategy this version
    does not know, totals that break the accounting identity or disagree with the shards listed,
    and (given the output's ``directory``) files it lists that are missing, or shard files of its
    own name set that it does not list (foreign, or tampered with; files of another name set are
    an overtaken writer's leftovers, not counted against it)."""
    problems = []
    strategy = manifest.config.strategy
    if strategy not in STRATEGIES:
        known = ", ".join(STRATEGIES)
        problems.append(
            f"config.shape.strategy: unknown strategy {strategy!r} (this maskprep knows {known})"
        )
    totals = manifest.totals
    if totals.records_read != totals.accounted:
        problems.append(
            f"totals.records_read: {totals.records_read:,} records read, but "
            f"{totals.accounted:,} written, dropped or rejected"
        )
    for total, column in _SHARD_SUMS:
        recorded = getattr(totals, total)
        summed = sum(getattr(s, column) for s in manifest.shards)
        if recorded != summed:
            problems.append(f"totals.{total}: {recorded:,}, but the shards listed hold {summed:,}")
    if directory is None:
        return problems
    if not isinstance(directory, storage.Location):
        directory = storage.parse_location(directory)
    present = [info.name for info in storage.listdir(directory)]
    for number, shard in enumerate(manifest.shards):
        if shard.path not in present:
            problems.append(f"shards[{number}].path: {shard.path} is missing from the directory")
    if manifest.rejects is not None and manifest.rejects.path not in present:
        problems.append(f"rejects.path: {manifest.rejects.path} is missing from the directory")
    listed = {s.path for s in manifest.shards}
    own = manifest.name_sets
    unlisted = sorted(
        n for n in present if is_shard_name(n) and n not in listed and name_set_of(n) in own
    )
    if unlisted:
        shown = ", ".join(unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
        problems.append(
            f"shards: {len(unlisted)} shard file(s) in the directory are not listed ({shown})"
        )
    return problems


def find_manifest_at(directory: storage.Location) -> storage.Location | None:
    """The manifest of a directory or prefix, or ``None`` when it has none: the build did not
    finish."""
    location = directory.join(MANIFEST_NAME)
    try:
        return None if storage.stat(location).is_dir else location
    except storage.NotFound:
        return None


def load_manifest(path: str | os.PathLike[str] | storage.Location) -> Manifest:
    """Read and check the manifest file (or object) at ``path``."""
    location = path if isinstance(path, storage.Location) else storage.parse_location(path)
    name = location.url
    try:
        data = storage.read_bytes(location)
    except storage.StorageFailure as exc:  # the store failed: the same read may work later
        raise IOFailure(f"{name}: cannot read manifest: {exc.detail}") from None
    except storage.StorageError as exc:
        raise DataError(f"{name}: cannot read manifest: {exc.detail}") from None
    return parse_manifest(data, name)


def parse_manifest(data: bytes, name: str) -> Manifest:
    """Check a manifest's bytes; ``name`` names it in errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, "", f"not UTF-8 (byte {exc.start})") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{name}:{exc.lineno}", "", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ManifestError(name, "", "not valid JSON: nested too deeply") from None
    return Manifest.from_dict(parsed, name)


def read_manifest(
    directory: str | os.PathLike[str] | storage.Location,
    options: storage.StorageOptions | None = None,
) -> Manifest:
    """Read and check a finished output's manifest (a local directory, or a URL whose store
    ``options`` configures); a missing one means the build did not finish
    (:class:`~maskprep.errors.DataError`)."""
    where = (
        directory
        if isinstance(directory, storage.Location)
        else storage.parse_location(directory, options)
    )
    found = find_manifest_at(where)
    if found is None:
        raise DataError(f"{where.url}: no {MANIFEST_NAME}; the build did not finish")
    return load_manifest(found)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest as written: sorted keys, so equal builds give equal bytes."""
    return (
        json.dumps(manifest.as_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode("utf-8")


def write_manifest(
    directory: storage.Location | str | os.PathLike[str], manifest: Manifest
) -> storage.Location:
    """Create ``_maskprep.json`` in ``directory`` (a path or a location), atomically and only if
    it is absent."""
    if not isinstance(directory, storage.Location):
        directory = storage.parse_location(directory)
    location = directory.join(MANIFEST_NAME)
    try:
        storage.put_if_absent(location, manifest_bytes(manifest))
    except storage.AlreadyExists:
        raise OutputError(
            f"{location.url}: appeared while this build was writing (another writer finished "
            "the output); nothing was replaced"
        ) from None
    return location


T = TypeVar("T")

_JSON_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def json_kind(value: Any) -> str:
    """A JSON value shortly, for messages: ``"many"``, ``[...]``, ``{...}``."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(kind: Any, value: Any, path: str, where: str) -> Any:
    """``value`` (parsed JSON) as ``kind``; ``path`` names the file and ``where`` the field in
    the :class:`ManifestError` raised when it does not fit."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(kind)
        if value is None and type(None) in arms:
            return None
        others = [a for a in arms if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"cannot decode {kind}")
        return decode(others[0], value, path, where)
    if kind is type(None):
        if value is not None:
            raise ManifestError(path, where, f"expected null, got {json_kind(value)}")
        return None
    if dataclasses.is_dataclass(kind):
        return decode_fields(kind, value, path, where)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ManifestError(path, where, f"expected a list, got {json_kind(value)}")
        (item,) = typing.get_args(kind)[:1]
        items = [decode(item, v, path, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ManifestError(path, where, f"expected an object, got {json_kind(value)}")
        _, item = typing.get_args(kind)
        return {k: decode(item, v, path, f"{where}.{k}") for k, v in value.items()}
    return _scalar(kind, value, path, where)


def _scalar(kind: type, value: Any, path: str, where: str) -> Any:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        expected = _JSON_NAMES.get(kind, kind.__name__)
        raise ManifestError(path, where, f"expected {expected}, got {json_kind(value)}")
    return value


def decode_fields(cls: type[T], value: Any, path: str, where: str, **given: Any) -> T:
    """The dataclass ``cls`` from the JSON object ``value``, field by field; ``given`` supplies
    fields decoded otherwise by the caller."""
    if not isinstance(value, dict):
        raise ManifestError(path, where, f"expected an object, got {json_kind(value)}")
    hints = _hints(cls)  # type: ignore[arg-type] # a class is hashable
    kwargs: dict[str, Any] = dict(given)
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not spec.init or spec.name in given:
            continue
        inner = f"{where}.{spec.name}" if where else spec.name
        if spec.name not in value:
            if spec.default is None:
                continue
            raise ManifestError(path, inner, "missing")
        kwargs[spec.name] = decode(hints[spec.name], value[spec.name], path, inner)
    return cls(**kwargs)
