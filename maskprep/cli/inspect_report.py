"""Rendering ``maskprep inspect``'s result: summary, histograms, buckets, the manifest's facts,
checks and decoded rows; and the ``--json`` object. No logic lives here."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..inspecting.checks import SPECS, CheckResult
from ..inspecting.results import (
    BucketStats,
    BuildFacts,
    DecodedRow,
    HistogramBin,
    InspectResult,
    LengthStats,
)

# ----------------------------------------------------------------------------- inspect


_CHECK_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
_ROLE_STYLE = {"trained": "green", "prompt": "cyan", "padding": "dim"}
_BAR_WIDTH = 40


def inspect_json(result: InspectResult, strict: bool = False) -> dict[str, Any]:
    """The object ``maskprep inspect --json`` prints (``ok`` added by the command):
    ``summary``, ``checks``, ``rows``."""
    data = asdict(result.stats)
    summary = {
        "source": result.source,
        "shards": list(result.shards),
        "rows_total": result.rows_total,
        "sampled": result.sampled,
        "layout": asdict(result.layout),
        **data,
        "build": asdict(result.build) if result.build is not None else None,
    }
    return {
        "strict": strict,
        "summary": summary,
        "checks": [
            {
                "name": c.name,
                "kind": c.kind,
                "invariant": SPECS[c.name].invariant,
                "reference": SPECS[c.name].reference,
                "status": c.status,
                "count": c.count,
                "rows": list(c.rows),
                "detail": c.detail,
                "unknown": c.unknown,
            }
            for c in result.checks
        ],
        "rows": [asdict(row) for row in result.decoded],
        "elapsed_s": round(result.elapsed_s, 3),
    }


def _length_line(lengths: LengthStats | None) -> str:
    if lengths is None:
        return "-"
    return (
        f"min {lengths.min} · mean {lengths.mean:.1f} · p50 {lengths.p50:g} · "
        f"p90 {lengths.p90:g} · p99 {lengths.p99:g} · max {lengths.max}"
    )


def inspect_summary(result: InspectResult) -> Table:
    """A two-column table of what the rows hold."""
    s, layout = result.stats, result.layout
    where = f"{len(result.shards)} shard{'s' if len(result.shards) != 1 else ''}"
    table = Table(
        title=f"maskprep inspect → {result.source} ({where})",
        show_header=False,
        title_justify="left",
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    inspected = f"{s.rows:,}"
    if result.sampled:
        inspected += f" (random sample of {result.rows_total:,})"
    shape = f"{layout.strategy} ({layout.strategy_source})"
    if layout.max_length is not None:
        shape += f", width {layout.max_length}"
    if layout.buckets:
        shape += f", buckets {','.join(str(b) for b in layout.buckets)}"
    if layout.padding_side:
        shape += f", padding {layout.padding_side}"
    if layout.pad_id is not None:
        shape += f", pad id {layout.pad_id} ({layout.pad_id_source})"
    if layout.eos_id is not None:
        shape += f", eos id {layout.eos_id}"
    rows = [
        ("rows inspected", inspected),
        ("layout", shape),
        ("positions", f"{s.positions:,}"),
        ("real tokens", f"{s.real_tokens:,}"),
        ("pad tokens", f"{s.pad_tokens:,} ({s.pad_fraction:.1%} of positions)"),
        ("trained (label) tokens", f"{s.label_tokens:,} ({s.label_fraction:.1%} of real tokens)"),
        ("real tokens per row", _length_line(s.lengths)),
    ]
    if s.documents is not None:
        rows.append(("documents", f"{s.documents:,}"))
        rows.append(("documents per row", _length_line(s.documents_per_row)))
    rows.append(("time", f"{result.elapsed_s:.2f} s"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def length_histogram(bins: tuple[HistogramBin, ...], title: str) -> Table:
    """Rows per length range drawn as bars."""
    table = Table(title=title, show_header=False, title_justify="left", box=None)
    table.add_column("range", justify="right")
    table.add_column("bar")
    table.add_column("rows", justify="right")
    peak = max((b.rows for b in bins), default=0)
    for b in bins:
        bar = "█" * (round(_BAR_WIDTH * b.rows / peak) if peak else 0)
        if b.rows and not bar:
            bar = "▏"
        table.add_row(f"{b.lo}–{b.hi}", Text(bar, style="blue"), f"{b.rows:,}")
    return table


def bucket_table(buckets: tuple[BucketStats, ...]) -> Table:
    """One line per bucket width: rows, fill and real-token lengths."""
    table = Table(title="buckets", title_justify="left")
    for name in ("width", "rows", "fill", "real tokens per row"):
        table.add_column(name, justify="right" if name != "real tokens per row" else "left")
    for b in buckets:
        table.add_row(f"{b.width}", f"{b.rows:,}", f"{b.fill:.1%}", _length_line(b.lengths))
    return table


def build_facts_table(facts: BuildFacts) -> Table:
    """What the manifest says about the build: documents, losses and the tokenizer."""
    table = Table(title="from the manifest", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")

    def count(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    tok = facts.tokenizer
    identity = f"{tok.get('name_or_path', '?')}"
    if tok.get("revision"):
        identity += f"@{tok['revision']}"
    if tok.get("fingerprint"):
        identity += f" (sha256 {str(tok['fingerprint'])[:12]}…)"
    specials = ", ".join(
        f"{name} {tok[key]!r}"
        for name, key in (("pad", "pad_token"), ("eos", "eos_token"))
        if tok.get(key) is not None
    )
    rows = [
        ("documents read", count(facts.documents_read)),
        ("documents truncated", count(facts.documents_truncated)),
        ("documents dropped", count(facts.documents_dropped)),
        ("documents split", count(facts.documents_split)),
        ("records rejected", count(facts.records_rejected)),
        ("tokens lost", count(facts.tokens_lost)),
        ("tokenizer", identity),
        ("special tokens", specials or "-"),
        ("maskprep version", facts.maskprep_version or "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def checks_table(checks: tuple[CheckResult, ...]) -> Table:
    """One line per check: status, offending rows and the first of them."""
    table = Table(title="checks", title_justify="left")
    table.add_column("status")
    table.add_column("check")
    table.add_column("inv.", justify="right")  # its number in docs/contract.md
    table.add_column("rows", justify="right")
    table.add_column("first rows")
    table.add_column("what it asserts")
    for c in checks:
        label = c.status.upper() if c.status in ("fail", "warn") else c.status
        style = _CHECK_STYLE[c.status]
        detail = c.detail
        if c.unknown is not None:  # not run for lack of information: fails --strict
            style, detail = "yellow", f"{detail} (not run)"
        table.add_row(
            Text(label, style=style),
            c.name,
            str(SPECS[c.name].invariant or "-"),
            f"{c.count:,}" if c.status != "skip" else "",
            ", ".join(str(r) for r in c.rows),
            detail,
        )
    return table


def decoded_row_text(row: DecodedRow, color: bool) -> Text:
    """One row as text, each run of tokens marked by role. In colour: trained green, prompt
    (attended, not trained) cyan, padding dim. Without colour: prompt runs in ``{…}``, trained
    runs bare, padding as ``[pad×N]``. ``║`` separates packed documents either way."""
    text = Text(f"row {row.index} ({row.real_tokens}/{row.width} real): ", style="bold")
    previous_doc: int | None = None
    for segment in row.segments:
        if segment.document is not None:
            if previous_doc is not None and segment.document != previous_doc:
                text.append(" ║ ", style="bold magenta")
            previous_doc = segment.document
        if segment.role == "padding":
            text.append(f"[pad×{len(segment.ids)}]", style=_ROLE_STYLE["padding"])
            continue
        shown = segment.text.replace("\n", "⏎")
        if not color and segment.role == "prompt":
            shown = "{" + shown + "}"
        text.append(shown, style=_ROLE_STYLE[segment.role] if color else "")
    return text


def decoded_legend(color: bool) -> Text:
    """The key to :func:`decoded_row_text`."""
    if not color:
        return Text("rows: trained text bare · {prompt: attended, not trained} · [pad×N] · ║ doc")
    legend = Text("rows: ")
    legend.append("trained", style=_ROLE_STYLE["trained"])
    legend.append(" · ")
    legend.append("attended, not trained", style=_ROLE_STYLE["prompt"])
    legend.append(" · ")
    legend.append("[pad×N]", style=_ROLE_STYLE["padding"])
    legend.append(" · ")
    legend.append("║", style="bold magenta")
    legend.append(" document boundary")
    return legend


def verdict(result: InspectResult, strict: bool) -> Text:
    """The closing line: which checks failed, or that none did; how many ran and how many were
    skipped, naming those skipped for lack of information (they fail under ``strict``)."""
    skipped = [c for c in result.checks if c.status == "skip"]
    unknown = [c for c in skipped if c.unknown is not None]
    tally = f"{len(result.checks) - len(skipped)} run, {len(skipped)} skipped"
    if unknown:
        names = ", ".join(c.name for c in unknown)
        tally += f", {len(unknown)} of them for lack of information: {names}"
    failed = result.failures(strict)
    if not failed:
        warned = [c.name for c in result.checks if c.status == "warn"]
        line = f"OK: no check failed ({tally})"
        if warned:
            line += f"; warnings: {', '.join(warned)}"
        return Text(line, style="bold green")
    names = ", ".join(f"{c.name} ({SPECS[c.name].reference})" for c in failed)
    return Text(f"FAILED: {len(failed)} check(s): {names} ({tally})", style="bold red")


def print_inspect(console: Console, result: InspectResult, strict: bool = False) -> None:
    """Render an inspection on ``console``; colours only where the console is a terminal."""
    console.print(inspect_summary(result))
    if result.stats.buckets:
        console.print(bucket_table(result.stats.buckets))
        for bucket in result.stats.buckets:
            title = f"real tokens per row, bucket {bucket.width}"
            console.print(length_histogram(bucket.histogram, title))
    elif result.stats.histogram:
        console.print(length_histogram(result.stats.histogram, "real tokens per row"))
    if result.build is not None:
        console.print(build_facts_table(result.build))
    console.print(checks_table(result.checks))
    if result.decoded:
        color = console.is_terminal and not console.no_color
        console.print(decoded_legend(color))
        for row in result.decoded:
            console.print(decoded_row_text(row, color), soft_wrap=True)
    console.print(verdict(result, strict), soft_wrap=True)  # one line, for grep and tail
