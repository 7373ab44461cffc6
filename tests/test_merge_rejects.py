"""merge joins the parts' rejects files only as they were built: a symbolic link or a named pipe
planted as a part's rejects file is refused (no hang, nothing read through it), and the bytes it
joins are held to the size and sha256 each part's manifest records (issue #24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_kit import build_args
from click.testing import CliRunner
from conftest import ROOT

from maskprep.cli import main

REJECTS = "_rejects.jsonl"
MANIFEST = "_maskprep.json"


def _lines(count: int) -> str:
    """JSONL with every fourth line broken (rejected under skip)."""
    return "".join(
        "{broken\n" if i % 4 == 3 else json.dumps({"text": f"record {i}"}) + "\n"
        for i in range(count)
    )


@pytest.fixture
def parts(tmp_path, llama_like):
    source = tmp_path / "in.jsonl"
    source.write_text(_lines(40))
    made = []
    for index in range(2):
        out = tmp_path / f"part{index}"
        extra = ("--num-parts", "2", "--part-index", index, "--on-bad-record", "skip")
        result = CliRunner().invoke(main, build_args(source, llama_like, out, *extra))
        assert result.exit_code == 0, result.output
        made.append(out)
    return made


def _merge(parts, out, timeout: float = 60):
    """``maskprep merge`` in a subprocess, so that a hang is a failed test, not a stuck one."""
    return subprocess.run(
        [sys.executable, "-m", "maskprep", "merge", *map(str, parts), "-o", str(out)],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def _assert_refused(result, *mentions: str) -> None:
    message = result.stderr.decode().strip()
    assert result.returncode in (1, 2), message
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    for needle in mentions:
        assert needle in message, message


def test_intact_parts_merge_with_their_rejects_joined(tmp_path, parts):
    """Negative control for the refusals below."""
    result = _merge(parts, tmp_path / "merged")
    assert result.returncode == 0, result.stderr.decode()
    joined = (tmp_path / "merged" / REJECTS).read_bytes()
    assert joined == b"".join((p / REJECTS).read_bytes() for p in parts)
    manifest = json.loads((tmp_path / "merged" / MANIFEST).read_text())
    assert manifest["rejects"]["path"] == REJECTS and manifest["rejects"]["size"] == len(joined)


def test_a_symlinked_rejects_file_of_a_part_is_refused_and_never_read(tmp_path, parts):
    secret = tmp_path / "secret.txt"
    secret.write_text("root-only secret\n")
    secret.chmod(0o600)
    victim = parts[1] / REJECTS
    victim.unlink()
    victim.symlink_to(secret)
    out = tmp_path / "merged"
    _assert_refused(_merge(parts, out), f"part1/{REJECTS}", "symbolic link")
    assert not (out / MANIFEST).exists()
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert [p for p in written if b"secret" in p.read_bytes()] == []


def test_a_fifo_as_a_parts_rejects_file_is_refused_without_waiting(tmp_path, parts):
    victim = parts[0] / REJECTS
    victim.unlink()
    os.mkfifo(victim)
    _assert_refused(_merge(parts, tmp_path / "merged", timeout=60), f"part0/{REJECTS}")
    assert not (tmp_path / "merged" / MANIFEST).exists()


def test_rejects_bytes_changed_after_the_part_was_built_are_refused(tmp_path, parts):
    victim = parts[1] / REJECTS
    lines = victim.read_text().splitlines(keepends=True)
    record = json.loads(lines[0])
    record["reason"] = "nothing wrong here"  # the same size would not be enough either
    victim.write_text(json.dumps(record) + "\n" + "".join(lines[1:]))
    out = tmp_path / "merged"
    _assert_refused(_merge(parts, out), f"part1/{REJECTS}", "sha256")
    assert not (out / MANIFEST).exists()


def test_a_rejects_file_rewritten_with_its_record_must_still_count_the_parts_rejects(
    tmp_path, parts
):
    """A tamperer who rewrites the rejects file and its size and sha256 together still has to
    match the number of records the part's totals say it rejected."""
    victim = parts[0] / REJECTS
    victim.write_text("")
    manifest_path = parts[0] / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    assert manifest["totals"]["records_rejected"] > 0
    manifest["rejects"]["size"] = 0
    manifest["rejects"]["sha256"] = (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    manifest_path.write_text(json.dumps(manifest))
    _assert_refused(_merge(parts, tmp_path / "merged"), f"part0/{REJECTS}", "rejected records")
    assert not (tmp_path / "merged" / MANIFEST).exists()


def test_a_skip_part_whose_manifest_records_no_rejects_file_is_refused(tmp_path, parts):
    """Every skip build records its rejects file; a part without that record is not read by name
    (no earlier version wrote one: 0.1.0 is the first)."""
    manifest_path = parts[1] / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["rejects"]
    manifest_path.write_text(json.dumps(manifest))
    _assert_refused(_merge(parts, tmp_path / "merged"), "part1", "records no rejects file")
    assert not (tmp_path / "merged" / MANIFEST).exists()
