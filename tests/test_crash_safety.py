"""Crash safety: a plain build never joins another one writing, unwritable outputs and full
disks, unfinished outputs refused without resume."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import time

import pytest
from cli_kit import build_args, lock_held_elsewhere
from conftest import make_config, write_jsonl

from maskprep import ConfigError, build
from maskprep.cli import main
from maskprep.errors import IOFailure
from maskprep.output.names import MANIFEST_NAME
from maskprep.storage import writers


@pytest.fixture
def source(tmp_path, corpus):
    return write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus * 4])


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(source, tokenizer, out, *extra):
    return build_args(source, tokenizer, out, "--shard-rows", 5, *extra)


def test_a_plain_build_into_a_directory_another_build_writes_fails_at_once(
    tmp_path, source, llama_like, runner
):
    out = tmp_path / "out"
    out.mkdir()
    with lock_held_elsewhere(out) as record:  # then SIGKILLed: its record stays on disk
        started = time.perf_counter()
        result = runner.invoke(main, _cli(source, llama_like, out))
        assert time.perf_counter() - started < 30
        assert result.exit_code == 2
        assert "another maskprep process" in result.output
        assert "is writing to this directory" in result.output
        assert "Traceback" not in result.output
        assert not (out / MANIFEST_NAME).exists()
    # Its writer dead (the kernel let go of its flock), the record is garbage: the same build
    # runs, and the commit sweeps the record away.
    assert record.exists()
    result = runner.invoke(main, _cli(source, llama_like, out))
    assert result.exit_code == 0, result.output
    assert (out / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_resume_or_overwrite_go_on_beside_a_running_writer(tmp_path, source, llama_like, runner):
    """The running writer is only a reason for a plain build to stop: with --resume a build goes
    on (a stopped writer must not hold an output hostage), safely (tests/test_commit_protocol)."""
    out = tmp_path / "out"
    out.mkdir()
    with lock_held_elsewhere(out) as record:
        result = runner.invoke(main, _cli(source, llama_like, out, "--resume"))
        assert result.exit_code == 0, result.output
        assert (out / MANIFEST_NAME).is_file()
        assert not record.exists()  # swept by the commit: its writer can never commit now


def _fill_disk(monkeypatch, room: int, applies=lambda name: True) -> list[str]:
    """Local writes of files whose final name ``applies`` fail with ENOSPC past ``room`` bytes,
    as on a full disk; returns the names of the files opened for writing, in order."""
    opened: list[str] = []
    real_init, real_write = writers._LocalSink.__init__, writers._LocalSink.write

    def init(self, location, *args):
        real_init(self, location, *args)
        opened.append(os.path.basename(location.path))

    def write(self, data) -> None:
        if applies(os.path.basename(self.final)) and self.file.tell() + len(data) > room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, data)

    monkeypatch.setattr(writers._LocalSink, "__init__", init)
    monkeypatch.setattr(writers._LocalSink, "write", write)
    return opened


def test_disk_full_gives_one_line_and_leaves_no_complete_looking_shard(
    tmp_path, source, llama_like, runner, monkeypatch
):
    before = (_digest(source), source.stat().st_mtime_ns)
    _fill_disk(monkeypatch, room=300)
    out = tmp_path / "out"
    result = runner.invoke(main, _cli(source, llama_like, out))
    assert result.exit_code == IOFailure.exit_code == 1  # the machine failed, not the command
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "cannot write output: No space left on device" in lines[0]
    assert "Traceback" not in result.output
    # Shards that did fit are removed with the one that did not: nothing looks finished.
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert (_digest(source), source.stat().st_mtime_ns) == before


def test_disk_full_on_a_later_shard_keeps_the_earlier_ones_for_a_resume(
    tmp_path, source, llama_like, monkeypatch
):
    """A writer that stops never removes a complete shard (another attempt of the same build may
    have taken it up: see maskprep.output.commit); the output is unfinished, and a resume once
    there is room finishes it byte-identical to an undisturbed build."""
    shards: list[str] = []

    def third_shard_on(name: str) -> bool:
        if name.startswith("data-") and name not in shards:
            shards.append(name)
        return len(shards) >= 3

    _fill_disk(monkeypatch, room=0, applies=third_shard_on)
    out = tmp_path / "out"
    out.mkdir()
    config = make_config([source], llama_like, out, pad_token="eos", shard_rows=5)
    with pytest.raises(IOFailure, match="No space left on device"):
        build(config)
    assert len(shards) == 3  # two shards were complete before the disk filled
    shards = sorted(p.name for p in out.iterdir() if not p.name.startswith(".resume-"))
    assert shards == ["data-00000.parquet", "data-00001.parquet"]
    monkeypatch.undo()
    resumed = build(
        dataclasses.replace(config, output=dataclasses.replace(config.output, resume=True))
    )
    assert resumed.reused_shards == 2
    clean = build(
        make_config([source], llama_like, tmp_path / "clean", pad_token="eos", shard_rows=5)
    )
    assert [s.sha256 for s in resumed.manifest.shards] == [s.sha256 for s in clean.manifest.shards]


def test_manifest_that_does_not_fit_leaves_no_partial_manifest(
    tmp_path, source, llama_like, monkeypatch
):
    _fill_disk(monkeypatch, room=10, applies=lambda name: name == MANIFEST_NAME)
    out = tmp_path / "out"
    with pytest.raises(IOFailure, match="No space left on device"):
        build(make_config([source], llama_like, out, pad_token="eos", shard_rows=5))
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".resume-"))
    assert MANIFEST_NAME not in names
    assert not [n for n in names if n.startswith(".tmp-")]
    # The complete shards stay: the output is unfinished, and resume can finish it.
    assert names and all(n.startswith("data-") for n in names)


def test_output_under_a_file_is_a_one_line_error(tmp_path, source, llama_like, runner):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(main, _cli(source, llama_like, blocker / "out"))
    assert result.exit_code == 2
    assert "cannot create output directory: Not a directory" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory(tmp_path, source, llama_like, runner):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = runner.invoke(main, _cli(source, llama_like, out))
    finally:
        out.chmod(0o755)
    assert result.exit_code == 2
    assert "cannot write to the output directory: Permission denied" in result.output


def test_unwritable_output_directory_is_refused_before_reading(
    tmp_path, source, llama_like, runner, monkeypatch
):
    """Where the test runs as root, a read-only directory is still writable; the creation of the
    writer's record (its first write) failing as it would for another user stands in for it."""
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.path.basename(str(path)).startswith(".maskprep-writer-"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(main, _cli(source, llama_like, out))
    assert result.exit_code == 2
    assert "cannot write to the output directory: Permission denied" in result.output
    assert list(out.iterdir()) == []


def test_unfinished_output_is_refused_with_how_to_resume(tmp_path, source, llama_like, runner):
    out = tmp_path / "out"
    assert runner.invoke(main, _cli(source, llama_like, out)).exit_code == 0
    (out / MANIFEST_NAME).unlink()  # as if the build had died before writing it
    (out / ".tmp-data-00009.parquet.0123456789abcdef").write_bytes(b"half a shard")
    result = runner.invoke(main, _cli(source, llama_like, out))
    assert result.exit_code == 2
    assert f"unfinished build (7 complete shards and no {MANIFEST_NAME})" in result.output
    assert "--resume" in result.output and "--overwrite" in result.output
    result = runner.invoke(main, _cli(source, llama_like, out, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert not (out / ".tmp-data-00009.parquet.0123456789abcdef").exists()


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    from maskprep import OutputConfig

    with pytest.raises(ConfigError, match="resume and overwrite"):
        OutputConfig(str(tmp_path), resume=True, overwrite=True)
