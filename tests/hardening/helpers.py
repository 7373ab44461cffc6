"""Black-box drivers for the hardening tests: the CLI in-process (CliRunner) or in a subprocess,
and the checks every failure must pass (exit code, one line, no traceback).

Only the CLI and ``maskprep``'s public names are used here, so the tests survive the modules
moving about (issue #15).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_kit import build_args as build_args  # shared with the other CLI tests
from click.testing import CliRunner

from maskprep.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: An output's manifest and rejects file (dataset readers skip names starting with "_").
MANIFEST = "_maskprep.json"
REJECTS = "_rejects.jsonl"
LOCK = ".maskprep.lock"

#: For tests of `maskprep verify` past its first step: without torch (CI's torch-free runs) it
#: stops earlier, saying which extra to install.
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="verify needs torch (the verify extra)"
)


@dataclass(frozen=True)
class Outcome:
    """How one ``maskprep`` command ended."""

    code: int
    stdout: str
    stderr: str
    #: In-process only: the exception that escaped the command and was not a clean exit.
    crash: str | None = None

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def cli(*args: object, stdin: bytes | None = None) -> Outcome:
    """``maskprep ARGS`` in this process through Click's runner (fast: imports are shared)."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    crash = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(*result.exc_info))
    return Outcome(result.exit_code, result.stdout, result.stderr, crash)


def proc(
    *args: object,
    stdin: bytes | None = None,
    timeout: float = 120,
    preexec: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Outcome:
    """``python -m maskprep ARGS`` in a real subprocess of this checkout."""
    completed = subprocess.run(
        [sys.executable, "-m", "maskprep", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        preexec_fn=preexec,
        env=env or child_env(),
        cwd=cwd,
        check=False,
    )
    return Outcome(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m maskprep`` child: this checkout first, offline."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def start(*args: object, **popen: object) -> subprocess.Popen:
    """``python -m maskprep ARGS`` started in the background (stdin a pipe unless given)."""
    popen.setdefault("stdin", subprocess.PIPE)
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "maskprep", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        **popen,
    )


_CLICK_FRAME = re.compile(r"^(Usage: |Try '.*' for help\.$)")


def message_lines(outcome: Outcome) -> list[str]:
    """The lines of stderr a user reads as the error: Click's Usage/Try lines and blanks aside."""
    return [
        line
        for line in outcome.stderr.splitlines()
        if line.strip() and not _CLICK_FRAME.match(line)
    ]


def assert_no_traceback(outcome: Outcome) -> None:
    """Nothing escaped as a Python exception: no traceback printed, none caught in-process."""
    if outcome.crash is not None:
        last = outcome.crash.strip().splitlines()[-1]
        raise AssertionError(f"exception escaped the command: {last}\n{outcome.crash[-1500:]}")
    assert "Traceback (most recent call last)" not in outcome.text, outcome.text[-3000:]


def assert_clean_failure(
    outcome: Outcome, codes: int | Iterable[int] = (1, 2), mentions: Sequence[str] = ()
) -> str:
    """A failure as the project promises it: exit code in ``codes``, no traceback, exactly one
    line of message, which names each of ``mentions``. Returns that line."""
    assert_no_traceback(outcome)
    allowed = {codes} if isinstance(codes, int) else set(codes)
    assert outcome.code in allowed, (
        f"exit {outcome.code}, expected {sorted(allowed)}\n{outcome.text[-2000:]}"
    )
    lines = message_lines(outcome)
    assert len(lines) == 1, f"expected one line of message, got {len(lines)}: {lines!r}"
    for needle in mentions:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    return lines[0]


def assert_ok(outcome: Outcome) -> None:
    """Exit 0 and no traceback."""
    assert_no_traceback(outcome)
    assert outcome.code == 0, outcome.text[-3000:]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of ``directory`` (top level, hidden ones too) by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def edit_manifest(directory: Path, change: Callable[[dict], object]) -> None:
    """Load ``DIRECTORY/_maskprep.json``, let ``change`` edit it in place, write it back."""
    path = Path(directory) / MANIFEST
    manifest = read_json(path)
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def rehash_shards(directory: Path) -> None:
    """Make the manifest's sha256 of every shard match the file (a tamperer covering tracks)."""

    def change(manifest: dict) -> None:
        for entry in manifest["shards"]:
            entry["sha256"] = sha256(Path(directory) / entry["path"])

    edit_manifest(directory, change)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stray_files(directory: Path) -> list[str]:
    """Files a finished or cleanly stopped run must not leave: temporaries and the lock."""
    if not Path(directory).is_dir():
        return []
    return sorted(
        p.name for p in Path(directory).iterdir() if p.name.startswith(".tmp-") or p.name == LOCK
    )


#: Whether permission bits stop this process (they do not for root).
PERMISSIONS_BITE = os.geteuid() != 0


def lines(count: int, prefix: str = "document") -> str:
    """``count`` JSONL records of a few words each, distinct."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return "".join(
        json.dumps({"text": f"{prefix} {i} " + " ".join(words[(i + k) % 8] for k in range(i % 6))})
        + "\n"
        for i in range(count)
    )
