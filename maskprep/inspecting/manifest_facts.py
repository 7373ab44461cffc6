"""What a build's manifest tells ``inspect``: whether the shard files are the ones it lists (sha256,
rows, token counts), whether the manifest adds up, the layout the build recorded, and the build's
own counts."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from dataclasses import asdict
from typing import Any

import numpy as np

from .. import storage
from ..config import STRATEGIES
from ..output.manifest import Manifest, manifest_problems
from ..reading.declared import Declared
from ..reading.shards import Shard
from .layout import LayoutHints
from .options import InspectOptions
from .results import BuildFacts
from .specs import MANIFEST_CONSISTENT, SHARDS_MATCH_MANIFEST, CheckResult

_COUNTED = ("positions", "real_tokens", "label_tokens")


def hash_files(paths: dict[int, storage.Location], stop: threading.Event) -> dict[int, str]:
    """sha256 of each shard file (or object, streamed) by shard number; gives up (incomplete)
    once ``stop`` is set."""
    digests: dict[int, str] = {}
    for number, path in paths.items():
        digest = hashlib.sha256()
        with storage.open_read(path) as handle:
            while chunk := handle.read(1 << 20):
                if stop.is_set():
                    return digests
                digest.update(chunk)  # releases the GIL: runs beside the analysis
        digests[number] = digest.hexdigest()
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
    contradicts the manifest (``conflicts``, by shard number, see :mod:`.declared`). A shard
    copied short, replaced or edited since the build fails it; the rows it names are the first
    row of each such shard."""
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


def layout_hints(found: Declared, options: InspectOptions) -> LayoutHints:
    """What the options and the declared contract (the manifest's, else the shards' metadata,
    see :mod:`.declared`) say about the data before it is read."""
    contract = found.contract
    source = found.source or "manifest"
    strategy = options.strategy or (contract.strategy if contract else None)
    if strategy is not None and strategy not in STRATEGIES:
        strategy = None  # a strategy this version does not know: infer it from the data
    if strategy == "pack" and found.stripped and options.strategy is None:
        # Declared packs whose pack columns are gone: hold the rows to what they now are, and
        # let the undeclared_packs check say what happened.
        strategy = None
    buckets = options.buckets or (contract.buckets if contract and contract.buckets else None)
    pad_id = options.pad_id
    if pad_id is None and contract is not None:
        pad_id = contract.pad_token_id
    eos_id = options.eos_id
    if eos_id is None and contract is not None:
        eos_id = contract.eos_token_id
    vocab = options.vocab_size
    if vocab is None and contract is not None:
        vocab = contract.vocab_size
    side = contract.padding_side if contract is not None else None
    return LayoutHints(
        strategy=strategy,
        max_length=contract.max_length if contract else None,
        buckets=buckets,
        # Packed rows may be padded at the end whatever side the tokenizer pads on.
        padding_side=side if strategy in ("pad", "bucket") else None,
        pad_id=pad_id,
        eos_id=eos_id,
        strategy_source="option" if options.strategy else source,
        pad_id_source="option" if options.pad_id is not None else source,
        bos_id=contract.bos_token_id if contract is not None else None,
        vocab_size=vocab,
        vocab_source="option" if options.vocab_size is not None else source,
        # The contract records the tokenizer's EOS id, null when it has none.
        no_eos=eos_id is None and contract is not None,
        records=contract.records if contract is not None else None,
        stripped=found.stripped,
    )


def with_tokenizer(hints: LayoutHints, tokenizer: Any) -> LayoutHints:
    """``hints`` with the EOS and BOS ids and the vocabulary size a loaded tokenizer knows, where
    neither the options nor the manifest said. Not its pad id: data is often padded with another
    token than the tokenizer's own (EOS, for one), so the pad id is inferred from the data."""
    changes: dict[str, Any] = {}
    if hints.eos_id is None:
        changes["eos_id"] = tokenizer.eos_token_id
        changes["no_eos"] = tokenizer.eos_token_id is None
    if hints.bos_id is None and tokenizer.bos_token_id is not None:
        changes["bos_id"] = tokenizer.bos_token_id
    if hints.vocab_size is None:
        changes.update(vocab_size=len(tokenizer), vocab_source="tokenizer")
    return dataclasses.replace(hints, **changes)


def build_facts(manifest: Manifest) -> BuildFacts:
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
