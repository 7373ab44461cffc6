"""Rendering ``maskprep build``'s result: the summary table and the ``--json`` object."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..results import BuildResult
from ..shaping.fill import Fill
from .progress import si


def build_summary(result: BuildResult) -> Table:
    """A two-column table of a build's counts."""
    totals = result.totals.as_dict()
    table = Table(
        title=f"maskprep build → {result.output}", show_header=False, title_justify="left"
    )
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    rate = result.totals.real_tokens / result.elapsed_s if result.elapsed_s > 0 else 0.0
    rows = [
        ("records read", f"{totals['records_read']:,}"),
        ("blank lines skipped", f"{totals['blank_lines']:,}"),
        ("records rejected", f"{totals['records_rejected']:,}"),
        ("documents written", f"{totals['documents_written']:,}"),
        ("documents truncated", f"{totals['documents_truncated']:,}"),
        ("tokens lost to truncation", f"{totals['tokens_truncated']:,}"),
        ("documents dropped (too long)", f"{totals['documents_dropped']:,}"),
        ("documents split", f"{totals['documents_split']:,}"),
        ("rows written", f"{totals['rows_written']:,}"),
        ("shards", f"{len(result.shards):,}"),
        ("real tokens", f"{totals['real_tokens']:,}"),
        ("pad tokens", f"{totals['pad_tokens']:,}"),
        ("trained (label) tokens", f"{totals['label_tokens']:,}"),
        ("fill (real / positions)", f"{totals['fill']:.1%}"),
        ("time", f"{result.elapsed_s:.2f} s ({si(rate)} tokens/s)"),
    ]
    if result.manifest.config.supervised:
        without_labels, *cuts = _sft_rows(totals)
        rows[6:6] = cuts  # after the truncation counts
        rows[3:3] = [without_labels]  # under the rejected records
    rows.extend(_fill_rows(result.manifest.fill))
    if result.reused_shards:
        rows.append(("shards reused (resume)", f"{result.reused_shards:,}"))
    if result.tokenizer_cached:
        rows.append(("tokenizer", "from the tokenizer cache"))
    rows.extend(("warning", text) for text in result.warnings)
    for name, value in rows:
        table.add_row(name, value)
    return table


def _fill_rows(fill: Fill) -> list[tuple[str, str]]:
    """Summary lines for the strategy: documents per packed row, or fill per bucket."""
    rows = [("strategy", fill.strategy)]
    if fill.strategy == "pack":
        rows.append(("documents per row", f"{fill.documents_per_row:.2f}"))
    for bucket in fill.buckets or ():
        rows.append((f"  bucket {bucket.length}", f"{bucket.rows:,} rows · fill {bucket.fill:.1%}"))
    return rows


def _sft_rows(totals: dict[str, Any]) -> list[tuple[str, str]]:
    """Summary rows only supervised builds have."""
    return [
        ("  of which without labels", f"{totals['documents_without_labels']:,}"),
        (
            "prompts cut from the left",
            f"{totals['prompts_truncated']:,} ({totals['prompt_tokens_truncated']:,} tokens)",
        ),
        (
            "completions cut from the right",
            f"{totals['completions_truncated']:,} "
            f"({totals['completion_tokens_truncated']:,} tokens)",
        ),
    ]


def build_json(result: BuildResult) -> dict[str, Any]:
    """The summary object ``maskprep build --json`` prints."""
    return {
        "ok": True,
        "output": str(result.output),
        "shards": [shard.path for shard in result.manifest.shards],
        "totals": result.manifest.totals.as_dict(),
        "fill": result.manifest.fill.as_dict(),
        "elapsed_s": round(result.elapsed_s, 3),
        "reused_shards": result.reused_shards,
        "tokenizer_cached": result.tokenizer_cached,
        "warnings": list(result.warnings),
    }
