"""Shared by the tests of the command line: the arguments of a test build, assertions on what a
command run through Click's runner ended with, and another process writing in an output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def assert_ran(result: Any) -> None:
    """The command exited 0 and raised nothing but Click's own exit."""
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def assert_one_line(result: Any, code: int, *mentions: str, stream: str = "output") -> str:
    """The command exited ``code`` with no traceback, its ``stream`` holds one line (Click's
    Usage/Try frame aside) and that line contains every one of ``mentions``; returns the line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [
        line
        for line in getattr(result, stream).splitlines()
        if line.strip() and not line.startswith(("Usage: ", "Try '"))  # Click's frame
    ]
    assert len(lines) == 1, lines
    for needle in mentions:
        assert needle in lines[0], lines[0]
    return lines[0]


def build_args(inputs: object, tokenizer: object, out: object, *extra: object) -> list[str]:
    """``build`` arguments with test-friendly defaults (16 wide, padded with EOS, quiet)."""
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return [
        "build",
        *map(str, items),
        "-t",
        str(tokenizer),
        "-o",
        str(out),
        "--max-length",
        "16",
        "--pad-token",
        "eos",
        "-q",
        *map(str, extra),
    ]


@contextmanager
def lock_held_elsewhere(directory: Path) -> Iterator[Path]:
    """Another process writing in ``directory`` while the body runs: it holds the flock of a
    writer's record there, as a running maskprep does (yielded); that process is then killed with
    SIGKILL, so it cleans nothing up (its record stays on disk, its flock goes with it)."""
    record = Path(directory) / f".maskprep-writer-{'0' * 15}1.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, json, os, time\n"
            f"fd = os.open({str(record)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, json.dumps({'host': 'here', 'pid': os.getpid()}).encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        yield record
    finally:
        holder.kill()
        holder.wait()
