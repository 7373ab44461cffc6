"""#14, signals: SIGINT exits 130 and SIGTERM 143, leaving an output that ``--resume`` finishes
byte-identical to an uninterrupted build, with no stray files and no rejects file; a refused
run leaves no rejects file either."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from cli_kit import lock_held_elsewhere

from .helpers import (
    MANIFEST,
    REJECTS,
    assert_clean_failure,
    assert_ok,
    build_args,
    cli,
    lines,
    start,
    stray_files,
)

OPTIONS = ("--shard-rows", "8", "--batch-size", "4", "--on-bad-record", "skip")


def _records(count: int, offset: int = 0) -> bytes:
    """JSONL with every fifth line not JSON (rejected under skip; never the first line, which
    decides the format of stdin)."""
    good = lines(count + offset).splitlines(keepends=True)[offset:]
    return "".join(
        "not json\n" if (offset + i) % 5 == 4 else line for i, line in enumerate(good)
    ).encode()


FIRST = _records(20)  # 16 good records: shards 0 and 1 complete, then the build waits for more
REST = _records(20, offset=20)


def _files(directory) -> dict[str, bytes]:
    """Shards and rejects by name: what an interrupted-then-resumed build must reproduce."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.name.startswith("data-") or p.name == REJECTS
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, llama_like) -> dict[str, bytes]:
    """The uninterrupted build of FIRST + REST from stdin."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert_ok(cli(*build_args("-", llama_like, out, *OPTIONS), stdin=FIRST + REST))
    return _files(out)


def _interrupt(out, tokenizer, signum: int) -> subprocess.CompletedProcess:
    """Start a build reading stdin, feed FIRST, wait until its second shard is complete (the
    build then waits for input, stdin still open), and send ``signum``."""
    child = start(*build_args("-", tokenizer, out, *OPTIONS))
    try:
        child.stdin.write(FIRST)
        child.stdin.flush()
        deadline = time.monotonic() + 60
        while not (out / "data-00001.parquet").exists():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the build never wrote its second shard"
            time.sleep(0.05)
        time.sleep(0.3)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def test_sigint_exits_130_and_the_output_resumes_byte_identical(tmp_path, llama_like, reference):
    out = tmp_path / "out"
    stopped = _interrupt(out, llama_like, signal.SIGINT)
    assert stopped.returncode == 130, f"exit {stopped.returncode}: {stopped.stderr.decode()[-500:]}"
    assert b"Traceback" not in stopped.stderr
    _assert_resumable(out, llama_like, reference)


def test_sigterm_exits_143_and_the_output_resumes_byte_identical(tmp_path, llama_like, reference):
    out = tmp_path / "out"
    stopped = _interrupt(out, llama_like, signal.SIGTERM)
    # 143 from a handler that exits, or death by the re-raised signal (a shell shows 143).
    assert stopped.returncode in (143, -signal.SIGTERM), stopped.returncode
    assert b"Traceback" not in stopped.stderr
    _assert_resumable(out, llama_like, reference)


def _assert_resumable(out, tokenizer, reference: dict[str, bytes]) -> None:
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert stray_files(out) == [], left
    assert REJECTS not in left, "an interrupted run published its rejects"
    assert MANIFEST not in left
    assert all(name.startswith("data-") for name in left), left
    resumed = cli(*build_args("-", tokenizer, out, *OPTIONS, "--resume"), stdin=FIRST + REST)
    assert_ok(resumed)
    assert _files(out) == reference


# ----------------------------------------------------------------------------- refused runs


def test_run_refused_by_a_locked_output_leaves_no_rejects(tmp_path, llama_like):
    out = tmp_path / "out"
    out.mkdir()
    with lock_held_elsewhere(out):
        refused = cli(*build_args("-", llama_like, out, *OPTIONS), stdin=FIRST)
    assert_clean_failure(refused, 2, mentions=[str(out)])
    assert not (out / REJECTS).exists()


def test_run_refused_by_a_non_empty_output_leaves_no_rejects(tmp_path, llama_like):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = cli(*build_args("-", llama_like, out, *OPTIONS), stdin=FIRST)
    assert_clean_failure(refused, 2, mentions=[str(out)])
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_reference_build_has_rejects(reference):
    """The signal tests compare rejects too: make sure there are some."""
    rejects = [json.loads(line) for line in reference[REJECTS].splitlines()]
    assert len(rejects) == 8
