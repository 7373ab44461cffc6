"""#14, the output directory: ownership decided by the manifest, not by names; symlinks planted
in it never written through; a failed or killed ``--overwrite`` keeps the previous output; a
full disk leaves no lock file."""

from __future__ import annotations

import os
import resource
import signal
import threading
import time

import pytest

from .helpers import (
    LOCK,
    MANIFEST,
    assert_clean_failure,
    assert_ok,
    build_args,
    cli,
    lines,
    proc,
    read_json,
    snapshot,
    start,
    stray_files,
)

pytestmark = pytest.mark.integration


def _assert_intact(out, before: dict[str, bytes]) -> None:
    """The previous finished output is still there: its manifest and every shard it lists, with
    the same bytes, and ``inspect`` passes on it."""
    assert (out / MANIFEST).is_file(), sorted(p.name for p in out.iterdir())
    assert (out / MANIFEST).read_bytes() == before[MANIFEST]
    for entry in read_json(out / MANIFEST)["shards"]:
        assert (out / entry["path"]).read_bytes() == before[entry["path"]], entry["path"]
    assert_ok(cli("inspect", out))


# ----------------------------------------------------------------------------- ownership


def test_overwrite_refuses_foreign_files_named_like_shards(tmp_path, jsonl_60, llama_like):
    out = tmp_path / "out"
    out.mkdir()
    (out / "data-00000-of-00002.parquet").write_bytes(b"someone else's shard 0")
    (out / "data-00001-of-00002.parquet").write_bytes(b"someone else's shard 1")
    before = snapshot(out)
    result = cli(*build_args(jsonl_60, llama_like, out, "--overwrite"))
    assert_clean_failure(result, 2, mentions=["data-0000"])
    assert snapshot(out) == before


def test_overwrite_refuses_a_shard_named_file_the_manifest_does_not_list(
    finished_copy, jsonl_60, llama_like
):
    foreign = finished_copy / "data-00099.parquet"
    foreign.write_bytes(b"not from this build")
    result = cli(*build_args(jsonl_60, llama_like, finished_copy, "--overwrite"))
    assert_clean_failure(result, 2, mentions=["data-00099.parquet"])
    assert foreign.read_bytes() == b"not from this build"


def test_overwrite_replaces_a_previous_maskprep_output(finished_copy, tmp_path, llama_like):
    """Negative control: what maskprep wrote, --overwrite replaces."""
    other = tmp_path / "other.jsonl"
    other.write_text(lines(7, prefix="other"))
    assert_ok(cli(*build_args(other, llama_like, finished_copy, "--overwrite")))
    manifest = read_json(finished_copy / MANIFEST)
    assert manifest["totals"]["records_read"] == 7
    # The new output's files only: the old shards went once the new manifest was committed.
    (shard,) = [s["path"] for s in manifest["shards"]]
    assert sorted(p.name for p in finished_copy.iterdir()) == sorted([shard, MANIFEST])


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the build")
        time.sleep(0.05)


def test_overwrite_replaces_a_build_killed_midway(tmp_path, llama_like):
    """Negative control: the shards of a SIGKILLed build (no manifest) are maskprep's own, so
    --overwrite must still start over on them, however ownership is decided."""
    out = tmp_path / "out"
    child = start(*build_args("-", llama_like, out, "--shard-rows", "4", "--batch-size", "4"))
    try:
        child.stdin.write(lines(12).encode())
        child.stdin.flush()
        _wait_for(lambda: (out / "data-00001.parquet").exists())
    finally:
        child.kill()
        child.communicate()
    assert not (out / MANIFEST).exists()
    source = tmp_path / "in.jsonl"
    source.write_text(lines(5))
    assert_ok(cli(*build_args(source, llama_like, out, "--overwrite")))
    assert read_json(out / MANIFEST)["totals"]["records_read"] == 5


# ----------------------------------------------------------------------------- planted symlinks

PLANTED = [
    LOCK,
    ".tmp-data-00000.parquet",
    ".tmp-_maskprep.json",
    ".tmp-_rejects.jsonl",
    # Final names too: a link there must be refused or replaced, never written through.
    MANIFEST,
    "data-00000.parquet",
    "_rejects.jsonl",
]


def _planted_cases():
    for name in PLANTED:
        for mode in ("plain", "resume", "overwrite"):
            yield pytest.param(name, mode, id=f"{name}-{mode}")


@pytest.mark.parametrize("name, mode", _planted_cases())
def test_symlink_planted_in_the_output_is_never_written_through(
    tmp_path, jsonl_60, llama_like, name, mode
):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious bytes outside the output\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    extra = {"plain": [], "resume": ["--resume"], "overwrite": ["--overwrite"]}[mode]
    result = cli(*build_args(jsonl_60, llama_like, out, "--on-bad-record", "skip", *extra))
    assert victim.read_bytes() == b"precious bytes outside the output\n"
    if result.code != 0:  # refusing is as good as replacing the link; crashing is not
        assert_clean_failure(result, 2)
    else:
        assert not (out / MANIFEST).is_symlink()
        assert not [p.name for p in out.iterdir() if p.is_symlink() and p.name != name]


def test_merge_never_writes_through_a_planted_lock_symlink(tmp_path, parts):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "merged"
    out.mkdir()
    (out / LOCK).symlink_to(victim)
    result = cli("merge", *parts, "-o", out)
    assert victim.read_bytes() == b"precious\n"
    if result.code != 0:
        assert_clean_failure(result, 2)


# ----------------------------------------------------------------------------- failed --overwrite


def test_failed_overwrite_keeps_the_previous_output(finished_copy, tmp_path, llama_like):
    before = snapshot(finished_copy)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines(30) + "not json\n")
    result = cli(*build_args(bad, llama_like, finished_copy, "--overwrite"))
    assert_clean_failure(result, 1, mentions=[f"{bad}:31"])
    _assert_intact(finished_copy, before)


def test_killed_overwrite_keeps_the_previous_output(finished_copy, tmp_path, llama_like):
    """The new build reads a FIFO: our open for writing returns exactly when the build opens its
    input, after it has prepared the output directory. It is killed there, mid-build."""
    before = snapshot(finished_copy)
    fifo = tmp_path / "new.jsonl"
    os.mkfifo(fifo)
    child = start(*build_args(fifo, llama_like, finished_copy, "--overwrite"))
    opened: list[int] = []
    opener = threading.Thread(target=lambda: opened.append(os.open(fifo, os.O_WRONLY)), daemon=True)
    opener.start()
    opener.join(timeout=60)
    try:
        assert opened, "the build never opened its input"
        os.write(opened[0], lines(3).encode())
        time.sleep(0.5)
    finally:
        child.kill()
        child.communicate()
        if not opened:  # release the opener thread, still waiting for a reader
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            opener.join(timeout=5)
            os.close(reader)
        for fd in opened:
            os.close(fd)
    _assert_intact(finished_copy, before)


# ----------------------------------------------------------------------------- full disk


def _disk_full() -> None:
    # Every write past 0 bytes fails with EFBIG, as a full disk fails with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_full_disk_leaves_no_lock_file(tmp_path, jsonl_60, llama_like):
    out = tmp_path / "out"
    result = proc(*build_args(jsonl_60, llama_like, out), preexec=_disk_full, timeout=120)
    assert_clean_failure(result, (1, 2))
    assert stray_files(out) == []
    assert not (out / MANIFEST).exists()


def test_merge_into_a_clean_directory_works(tmp_path, parts):
    """Negative control for the merge symlink test."""
    assert_ok(cli("merge", *parts, "-o", tmp_path / "merged"))
    assert read_json(tmp_path / "merged" / MANIFEST)["totals"]["records_read"] == 40
