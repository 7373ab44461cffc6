"""The names of the files in an output directory: the manifest, shards, rejects, the temporary
names files are written under before they are complete, each writer's record, and the staging
directory a writer of new names builds in.

Dataset readers (``pyarrow.dataset``, polars, DuckDB, Spark) read a directory as data and skip
only names that start with ``_`` or ``.``; any other file breaks them. So everything in an output
directory that is not a shard starts with one of those: ``_maskprep.json``, ``_rejects.jsonl``,
``.tmp-…``, ``.maskprep-writer-….json``, ``.staging-…/``.

**Name sets.** A build that starts an output afresh, or resumes one, writes the *plain* names
(``data-00000.parquet``, ``_rejects.jsonl``), the same on every run of the same build, so a
build is byte-identical however often it was interrupted. A writer that replaces an output
(``--overwrite``) writes names of its own, tagged with its random attempt id
(``data-00000-<16 hex>.parquet``, ``_rejects-<16 hex>.jsonl``), which no other writer uses:
the previous output stays whole beside the new one until the manifest switches (see
:mod:`.commit`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

MANIFEST_NAME = "_maskprep.json"
REJECTS_NAME = "_rejects.jsonl"
SHARD_PREFIX = "data-"
EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrow"}
TMP_PREFIX = ".tmp-"
#: A writer of tagged names builds in ``.staging-<tag>/`` inside the output (hidden from
#: dataset readers, which skip ``.`` names) and moves its files out just before it commits.
STAGING_PREFIX = ".staging-"
WRITER_PREFIX = ".maskprep-writer-"
#: A build writes ``.resume-<shard>.json`` once a shard is complete: where in the input the shard
#: ends, so that a resumed build skips what is done (see :mod:`maskprep.resume`).
RESUME_PREFIX = ".resume-"

_TAG = r"[0-9a-f]{16}"
_EXTENSION = "(" + "|".join(map(re.escape, EXTENSIONS.values())) + ")"
_SHARD_NAME = re.compile(re.escape(SHARD_PREFIX) + r"[0-9]+(?:-(" + _TAG + "))?" + _EXTENSION)
_REJECTS_NAME = re.compile(r"_rejects(?:-(" + _TAG + r"))?\.jsonl")
_STAGING = re.compile(r"\.staging-(" + _TAG + ")")
_WRITER = re.compile(re.escape(WRITER_PREFIX) + "(" + _TAG + r")\.json")
#: ``.tmp-NAME.<16 hex>``: the storage layer's writers (:mod:`maskprep.storage.location`).
_TEMPORARY = re.compile(r"\.tmp-(.+)\.[0-9a-f]{16}")


def new_tag() -> str:
    """A fresh attempt id: 16 random hex digits, so no two writers ever share one."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class NameSet:
    """The names one writer gives its files: the plain ones (``tag`` ``None``), or those tagged
    with its attempt id."""

    tag: str | None = None

    def shard(self, index: int, shard_format: str) -> str:
        """The name of shard ``index`` (0-based) of a ``shard_format`` output."""
        tag = f"-{self.tag}" if self.tag else ""
        return f"{SHARD_PREFIX}{index:05d}{tag}{EXTENSIONS[shard_format]}"

    @property
    def rejects(self) -> str:
        """The name of the rejects file."""
        return f"_rejects-{self.tag}.jsonl" if self.tag else REJECTS_NAME


PLAIN = NameSet()


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a shard file name (``data-00000.parquet``, or tagged
    ``data-00000-<16 hex>.parquet``): no directory part, nothing else between prefix and
    extension."""
    return _SHARD_NAME.fullmatch(name) is not None


def is_rejects_name(name: str) -> bool:
    """Whether ``name`` is a rejects file's name (plain or tagged)."""
    return _REJECTS_NAME.fullmatch(name) is not None


def name_set_of(name: str) -> NameSet | None:
    """The name set a shard or rejects file belongs to (``None`` for any other name)."""
    match = _SHARD_NAME.fullmatch(name) or _REJECTS_NAME.fullmatch(name)
    if match is not None:
        return NameSet(match.group(1))
    return None


def staging_name(tag: str) -> str:
    """The staging directory of the writer ``tag``."""
    return STAGING_PREFIX + tag


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is a writer's staging directory."""
    return _STAGING.fullmatch(name) is not None


def writer_name(tag: str) -> str:
    """The record a writer keeps in the output while it writes (who it is, for messages)."""
    return f"{WRITER_PREFIX}{tag}.json"


def is_writer_name(name: str) -> bool:
    """Whether ``name`` is a writer's record."""
    return _WRITER.fullmatch(name) is not None


def resume_name(shard: str) -> str:
    """The resume point written once ``shard`` is complete (see :mod:`maskprep.resume`)."""
    return f"{RESUME_PREFIX}{shard}.json"


def resume_shard(name: str) -> str | None:
    """The shard a resume point's ``name`` was written for (``None``: not a resume point)."""
    if name.startswith(RESUME_PREFIX) and name.endswith(".json"):
        shard = name[len(RESUME_PREFIX) : -len(".json")]
        return shard if is_shard_name(shard) else None
    return None


def temporary_target(name: str) -> str | None:
    """The final name a temporary file stands for (``.tmp-data-00000.parquet.<hex>`` →
    ``data-00000.parquet``), or ``None`` when ``name`` is not a temporary name."""
    match = _TEMPORARY.fullmatch(name)
    return match.group(1) if match else None


def is_own_name(name: str) -> bool:
    """Whether ``name`` is one maskprep writes in an output directory (ownership of the file
    itself is decided by :mod:`.directory`, never by the name alone)."""
    return (
        name == MANIFEST_NAME
        or is_shard_name(name)
        or is_rejects_name(name)
        or is_writer_name(name)
        or resume_shard(name) is not None
    )
