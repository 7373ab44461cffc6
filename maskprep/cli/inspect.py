"""``maskprep inspect``: check shards against the contract and show what they hold; exit 1 when a
check fails. Its result rendered: summary, histograms, buckets, the manifest's facts, checks and
decoded rows; and the ``--json`` object."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .. import config as cfg
from ..token_ids import MAX_TOKEN_ID
from .common import (
    BUCKETS,
    TOKEN_ID,
    Command,
    Report,
    config_from,
    standard_input,
    storage_options_option,
    two_column_table,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..inspecting.checks import CheckResult
    from ..inspecting.results import (
        BucketStats,
        BuildFacts,
        DecodedRow,
        HistogramBin,
        InspectResult,
        LengthStats,
    )


@click.command(cls=Command)
@click.argument("path", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option("--sample", type=click.IntRange(min=1), help="Inspect N random rows, not all.")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of --sample."
)
@click.option(
    "--rows", "show_rows", type=click.IntRange(min=0), default=0, help="Decode the first N rows."
)
@click.option(
    "--row", "row_indices", type=click.IntRange(min=0), multiple=True, help="Decode row INDEX."
)
@click.option(
    "-t",
    "--tokenizer",
    help="Tokenizer (default: the manifest's): decodes --rows/--row; gives the EOS id and "
    "vocabulary size where the manifest has none, and without --model its model_max_length "
    "limits the rows.",
)
@click.option(
    "--model", help="Hold rows to this model's positions and vocabulary (Hub name or directory)."
)
@click.option("--revision", help="Revision of --model (branch, tag or commit) on the Hub.")
@click.option("--trust-remote-code", is_flag=True, help="Allow --model's own config code to run.")
@click.option(
    "--eos-id",
    type=TOKEN_ID,
    help="EOS id (default: the manifest's or the tokenizer's).",
)
@click.option(
    "--pad-id",
    type=TOKEN_ID,
    help="Pad id (default: the manifest's or the tokenizer's, else inferred).",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(1, MAX_TOKEN_ID + 1),
    help="Token ids must lie below this (default: the manifest's or the tokenizer's).",
)
@click.option(
    "--strategy",
    type=click.Choice(cfg.STRATEGIES),
    help="Shape to hold rows to (default: the manifest's, else inferred).",
)
@click.option("--buckets", type=BUCKETS, help="Bucket widths, e.g. 64,128,256.")
@click.option(
    "--max-pad-fraction",
    type=click.FloatRange(0, 1),
    help="Warn when padding exceeds this fraction of positions.",
)
@click.option(
    "--min-label-fraction",
    type=click.FloatRange(0, 1),
    help="Warn when trained tokens are below this fraction of real tokens.",
)
@click.option(
    "--no-hash-check",
    is_flag=True,
    help="Do not compare each shard's sha256 with the manifest (saves reading the files twice).",
)
@storage_options_option
def inspect(**options: Any) -> Report:
    """Check shards against the data contract and show what they hold.

    PATH is a build output directory, a directory of shards without a manifest, one
    .parquet/.arrow shard (each may be a URL: s3://bucket/out), or - for Arrow IPC (stream or
    file) on stdin. Exit code 1 when a check fails (or warns, with --strict).
    """
    from ..inspecting.driver import inspect as run_inspect
    from ..inspecting.options import InspectOptions
    from ..sources.inputs import STDIN

    settings = config_from(
        InspectOptions,
        options,
        check_hashes=not options["no_hash_check"],
        model_revision=options["revision"],
    )
    stdin = standard_input() if options["path"] == STDIN else None
    result = run_inspect(options["path"], settings, stdin=stdin)
    strict = options["strict"]

    def show() -> None:
        from rich.console import Console

        # Piped output is read in logs and editors, wider than rich's 80-column default.
        console = Console(file=sys.stdout)
        if not console.is_terminal:
            console = Console(file=sys.stdout, width=120)
        print_inspect(console, result, strict)

    return Report(inspect_json(result, strict), show, ok=result.passes(strict))


_CHECK_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
_ROLE_STYLE = {"trained": "green", "prompt": "cyan", "padding": "dim"}
_BAR_WIDTH = 40


def inspect_json(result: InspectResult, strict: bool = False) -> dict[str, Any]:
    """The object ``maskprep inspect --json`` prints (``ok`` added by the command):
    ``summary``, ``checks``, ``rows``."""
    from ..inspecting.checks import SPECS

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
    return two_column_table(f"maskprep inspect → {result.source} ({where})", rows)


def length_histogram(bins: tuple[HistogramBin, ...], title: str) -> Table:
    """Rows per length range drawn as bars."""
    from rich.table import Table
    from rich.text import Text

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
    from rich.table import Table

    table = Table(title="buckets", title_justify="left")
    for name in ("width", "rows", "fill", "real tokens per row"):
        table.add_column(name, justify="right" if name != "real tokens per row" else "left")
    for b in buckets:
        table.add_row(f"{b.width}", f"{b.rows:,}", f"{b.fill:.1%}", _length_line(b.lengths))
    return table


def build_facts_table(facts: BuildFacts) -> Table:
    """What the manifest says about the build: documents, losses and the tokenizer."""

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
    return two_column_table("from the manifest", rows)


def checks_table(checks: tuple[CheckResult, ...]) -> Table:
    """One line per check: status, offending rows and the first of them."""
    from rich.table import Table
    from rich.text import Text

    from ..inspecting.checks import SPECS

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
    from rich.text import Text

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
    from rich.text import Text

    if not color:
        return Text("rows: trained text bare · {prompt: attended, not trained} · [pad×N] · ║ doc")
    return Text.assemble(
        "rows: ",
        ("trained", _ROLE_STYLE["trained"]),
        " · ",
        ("attended, not trained", _ROLE_STYLE["prompt"]),
        " · ",
        ("[pad×N]", _ROLE_STYLE["padding"]),
        " · ",
        ("║", "bold magenta"),
        " document boundary",
    )


def verdict(result: InspectResult, strict: bool) -> Text:
    """The closing line: which checks failed, or that none did; how many ran and how many were
    skipped, naming those skipped for lack of information (they fail under ``strict``)."""
    from rich.text import Text

    from ..inspecting.checks import SPECS

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
