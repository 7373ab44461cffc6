"""What a build's manifest tells ``inspect``: whether the shard files are the ones it lists (sha256,
rows, token counts), whether the manifest adds up, and the build's own counts. (The layout it
records is read with the shards' contract: :func:`~.layout.layout_hints`.)"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict

import numpy as np

from .. import storage
from ..output.manifest import Manifest, manifest_problems
from ..reading.shards import Shard
from .checks import MANIFEST_CONSISTENT, SHARDS_MATCH_MANIFEST, CheckResult
from .results import BuildFacts

_COUNTED = ("positions", "real_tokens", "label_tokens")


def hash_files(paths: dict[int, storage.Location], stop: threading.Event) -> dict[int, str]:
    """sha256 of each shard file (or object, streamed) by shard number; gives up (incomplete)
    once ``stop`` is set."""
    digests: dict[int, str] = {}
    for number, path in paths.items():
        with storage.open_read(path) as handle:
            digest = storage.sha256_stream(handle, None, stop)  # runs beside the analysis
        if digest is None:
            return digests
        digests[number] = digest
    return digests


def shards_match_manifest(
    shards: list[Shard],
    manifest: Manifest,
    counts: np.ndarray | None,
    digests: dict[int, str] | None,
    listed: int,
    conflicts: dict[int, str] | None = None,
) -> CheckResult:
    """Whether the shard files are the ones the manifest lists: same sha256, rows and (when every
    row was read) positions, real and trained tokens, and no contract in their metadata that
    contradicts the manifest (``conflicts``, by shard number, see
    :mod:`maskprep.reading.declared`). A shard copied short, replaced or edited since the build
    fails it; the rows it names are the first row of each such shard."""
    entries = manifest.shards
    problems: list[str] = []
    first_rows: list[int] = []
    bad_rows = 0
    start = 0
    for number, (shard, entry) in enumerate(zip(shards, entries, strict=True)):
        assert shard.rows is not None, "a shard file's row count is read from its footer"
        differs = []
        recorded = entry.sha256
        if digests is not None and recorded and digests.get(number, recorded) != recorded:
            differs.append("sha256")
        if entry.rows != shard.rows:
            differs.append(f"rows {shard.rows:,} (manifest {entry.rows:,})")
        for column, key in enumerate(_COUNTED):
            found = None if counts is None else int(counts[number, column])
            if found is not None and getattr(entry, key) != found:
                expected = getattr(entry, key)
                differs.append(f"{key.replace('_', ' ')} {found:,} (manifest {expected:,})")
        if conflicts and number in conflicts:
            differs.append(conflicts[number])
        if differs:
            problems.append(f"{entry.path}: {', '.join(differs)}")
            first_rows.append(start)
            bad_rows += shard.rows
        start += shard.rows
    what = ", ".join(
        ["sha256"] * (digests is not None) + ["rows"] + (["tokens"] if counts is not None else [])
    )
    if not problems:
        skipped = []
        if digests is None:
            skipped.append("sha256 not checked")
        if counts is None:
            skipped.append("tokens not counted in a sample")
        note = f"; {', '.join(skipped)}" if skipped else ""
        detail = f"{len(shards)} shard(s) match the manifest ({what}){note}"
        return CheckResult(SHARDS_MATCH_MANIFEST, "invariant", "pass", 0, (), detail)
    detail = f"{len(problems)} of {len(shards)} shard(s) differ from the manifest: " + "; ".join(
        problems[:3]
    )
    if len(problems) > 3:
        detail += f"; and {len(problems) - 3} more"
    return CheckResult(
        SHARDS_MATCH_MANIFEST,
        "invariant",
        "fail",
        bad_rows,
        tuple(first_rows[:listed]),
        detail,
    )


def manifest_consistent(
    manifest: Manifest, directory: str | os.PathLike[str] | storage.Location
) -> CheckResult:
    """Whether the manifest adds up (see :func:`~maskprep.output.manifest.manifest_problems`):
    a failure names the field at fault."""
    problems = manifest_problems(manifest, directory)
    if not problems:
        detail = "totals account for every record and match the shards; strategy known"
        return CheckResult(MANIFEST_CONSISTENT, "invariant", "pass", 0, (), detail)
    detail = "; ".join(str(p) for p in problems)
    return CheckResult(MANIFEST_CONSISTENT, "invariant", "fail", 0, (), detail)


def build_facts(manifest: Manifest) -> BuildFacts:
    """What the manifest says about the build that wrote the data."""
    totals = manifest.totals
    tokenizer = asdict(manifest.tokenizer)
    keep = (
        "name_or_path",
        "revision",
        "tokenizer_class",
        "vocab_size",
        "fingerprint",
        "pad_token",
        "pad_token_id",
        "eos_token",
        "eos_token_id",
        "bos_token_id",
        "padding_side",
    )
    return BuildFacts(
        maskprep_version=manifest.maskprep_version,
        documents_read=totals.records_read,
        documents_truncated=totals.shape.documents_truncated,
        documents_dropped=totals.shape.documents_dropped,
        documents_split=totals.shape.documents_split,
        records_rejected=totals.records_rejected,
        tokens_lost=totals.shape.tokens_truncated + totals.shape.tokens_dropped,
        tokenizer={k: tokenizer[k] for k in keep if k in tokenizer},
    )
