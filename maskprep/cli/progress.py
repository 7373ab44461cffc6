"""Build progress on stderr: a rich bar on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console

from ..pipeline import Progress


def si(value: float) -> str:
    """``value`` with a G, M or k suffix (two decimals), for progress lines and summaries."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


class ProgressReporter:
    """Shows build progress: a rich bar on a terminal, a plain line every ``interval`` seconds
    otherwise, nothing when quiet. Use as a context manager; ``update`` is the callback."""

    def __init__(self, quiet: bool, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        # No stderr at all (a process started without one): nothing to show progress on.
        self.quiet = quiet or self.stream is None
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
        detail = f"{progress.records:,} docs · {si(progress.real_tokens)} tokens · {si(rate)} tok/s"
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
