"""What a build's manifest tells ``inspect``: whether the shard files are the ones it lists (sha256,
rows, token counts), the layout the build recorded, and the build's own counts."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .layout import LayoutHints
from .options import InspectOptions
from .readers import Shard
from .results import BuildFacts
from .specs import SHARDS_MATCH_MANIFEST, STRATEGIES, CheckResult

_COUNTED = ("positions", "real_tokens", "label_tokens")


def hash_files(paths: dict[int, Path], stop: threading.Event) -> dict[int, str]:
    """sha256 of each shard file by shard number; gives up (incomplete) once ``stop`` is set."""
    digests: dict[int, str] = {}
    for number, path in paths.items():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if stop.is_set():
                    return digests
                digest.update(chunk)  # releases the GIL: runs beside the analysis
        digests[number] = digest.hexdigest()
    return digests


def shards_match_manifest(
    shards: list[Shard],
    manifest: dict[str, Any],
    counts: np.ndarray | None,
    digests: dict[int, str] | None,
    listed: int,
) -> CheckResult:
    """Whether the shard files are the ones the manifest lists: same sha256, rows and (when every
    row was read) positions, real and trained tokens. A shard copied short, replaced or edited
    since the build fails it; the rows it names are the first row of each such shard."""
    entries = manifest.get("shards", [])
    problems: list[str] = []
    first_rows: list[int] = []
    bad_rows = 0
    start = 0
    for number, (shard, entry) in enumerate(zip(shards, entries, strict=True)):
        assert shard.rows is not None, "a shard file's row count is read from its footer"
        differs = []
        recorded = entry.get("sha256")
        if digests is not None and recorded and digests.get(number, recorded) != recorded:
            differs.append("sha256")
        if entry.get("rows", shard.rows) != shard.rows:
            differs.append(f"rows {shard.rows:,} (manifest {entry['rows']:,})")
        for column, key in enumerate(_COUNTED):
            found = None if counts is None else int(counts[number, column])
            if found is not None and entry.get(key, found) != found:
                differs.append(f"{key.replace('_', ' ')} {found:,} (manifest {entry[key]:,})")
        if differs:
            problems.append(f"{entry.get('path', shard.name)}: {', '.join(differs)}")
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


def layout_hints(manifest: dict[str, Any] | None, options: InspectOptions, eos: int | None) -> Any:
    shape = (manifest or {}).get("config", {}).get("shape", {})
    tokenizer = (manifest or {}).get("tokenizer", {})
    strategy = options.strategy or shape.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        strategy = None  # a strategy this version does not know: infer it from the data
    buckets = options.buckets or (tuple(shape["buckets"]) if shape.get("buckets") else None)
    pad_id = options.pad_id if options.pad_id is not None else tokenizer.get("pad_token_id")
    return LayoutHints(
        strategy=strategy,
        max_length=shape.get("max_length"),
        buckets=buckets,
        # Packed rows may be padded at the end whatever side the tokenizer pads on.
        padding_side=tokenizer.get("padding_side") if strategy in ("pad", "bucket") else None,
        pad_id=pad_id,
        eos_id=eos,
        strategy_source="option" if options.strategy else "manifest",
        pad_id_source="option" if options.pad_id is not None else "manifest",
    )


def build_facts(manifest: dict[str, Any]) -> BuildFacts:
    totals = manifest.get("totals", {})
    tokenizer = manifest.get("tokenizer", {})
    lost = [totals[k] for k in ("tokens_truncated", "tokens_dropped") if k in totals]
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
        maskprep_version=manifest.get("maskprep_version"),
        documents_read=totals.get("records_read"),
        documents_truncated=totals.get("documents_truncated"),
        documents_dropped=totals.get("documents_dropped"),
        documents_split=totals.get("documents_split"),
        records_rejected=totals.get("records_rejected"),
        tokens_lost=sum(v for v in lost if v is not None)
        if any(v is not None for v in lost)
        else None,
        tokenizer={k: tokenizer[k] for k in keep if k in tokenizer},
    )
