"""Terminal rendering: build progress on stderr and summary tables. No logic lives here."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from .pipeline import BuildResult, Progress


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


class ProgressReporter:
    """Shows build progress: a rich bar on a terminal, a plain line every ``interval`` seconds
    otherwise, nothing when quiet. Use as a context manager; ``update`` is the callback."""

    def __init__(self, quiet: bool, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interval = interval
        self._last: float | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressReporter:
        if not self.quiet and self.stream.isatty():
            from rich.progress import (
                BarColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]build"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("build", total=None, detail="starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def callback(self) -> Callable[[Progress], None] | None:
        """The function to pass as ``on_progress``, or ``None`` when quiet."""
        return None if self.quiet else self.update

    def update(self, progress: Progress) -> None:
        """Render one progress snapshot."""
        rate = progress.real_tokens / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
        detail = (
            f"{progress.records:,} docs · {_si(progress.real_tokens)} tokens · {_si(rate)} tok/s"
        )
        if self._bar is not None:
            self._bar.update(
                self._task,
                total=progress.bytes_total,
                completed=progress.bytes_read,
                detail=detail,
            )
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            print(f"maskprep: {detail}", file=self.stream, flush=True)


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
        ("time", f"{result.elapsed_s:.2f} s ({_si(rate)} tokens/s)"),
    ]
    if result.manifest["config"].get("sft") is not None:
        without_labels, *cuts = _sft_rows(totals)
        rows[6:6] = cuts  # after the truncation counts
        rows[3:3] = [without_labels]  # under the rejected records
    rows.extend(_fill_rows(result.manifest.get("fill")))
    if result.reused_shards:
        rows.append(("shards reused (resume)", f"{result.reused_shards:,}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _fill_rows(fill: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Summary lines for the strategy: documents per packed row, or fill per bucket."""
    if not fill:
        return []
    rows = [("strategy", fill["strategy"])]
    if fill["strategy"] == "pack":
        rows.append(("documents per row", f"{fill['documents_per_row']:.2f}"))
    for bucket in fill.get("buckets", []):
        rows.append(
            (
                f"  bucket {bucket['length']}",
                f"{bucket['rows']:,} rows · fill {bucket['fill']:.1%}",
            )
        )
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
        "shards": [shard["path"] for shard in result.manifest["shards"]],
        "totals": result.manifest["totals"],
        "fill": result.manifest.get("fill"),
        "elapsed_s": round(result.elapsed_s, 3),
        "reused_shards": result.reused_shards,
    }


_STATUS_STYLE = {"pass": "green", "LEAK": "bold red", "inconclusive": "yellow", "skipped": "dim"}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def verify_table(result: Any) -> Table:
    """One line per check of a :class:`maskprep.verify.VerifyResult`."""
    verdict = "no leak found" if result.ok else "LEAK FOUND"
    table = Table(
        title=(
            f"{verdict} · maskprep verify · {result.model} ({result.kind}) · {result.device} · "
            f"{result.dtype} · {len(result.rows)} rows · {result.elapsed_s:.1f} s"
        ),
        title_justify="left",
    )
    table.add_column("probe", overflow="fold")
    table.add_column("attention · form", overflow="fold")
    table.add_column("status", no_wrap=True)
    for name in ("max diff", "tolerance", "positions", "leaking", "worst row", "planted leak"):
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("note", ratio=1)
    for check in result.checks:
        style = _STATUS_STYLE.get(check.status, "")
        table.add_row(
            check.probe,
            f"{check.attn_implementation} · {check.form}",
            f"[{style}]{check.status}[/]",
            _num(check.max_diff),
            _num(check.tolerance),
            f"{check.positions:,}",
            f"{check.leaking:,}",
            "-" if check.worst_row is None else str(check.worst_row),
            _num(check.control_diff),
            check.note,
        )
    return table


def verify_json(result: Any) -> dict[str, Any]:
    """The object ``maskprep verify --json`` prints: ok, device, dtype, checks."""
    from dataclasses import asdict

    return {
        "ok": result.ok,
        "model": result.model,
        "kind": result.kind,
        "device": result.device,
        "dtype": result.dtype,
        "packed": result.packed,
        "rows": list(result.rows),
        "elapsed_s": round(result.elapsed_s, 3),
        "checks": [asdict(check) for check in result.checks],
    }
