"""#14, inputs: corrupt compressed files, hostile records, oversized lines, FIFOs, directories
with symlinks, a closed stdin. Each either builds what it should or fails in one line."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import resource
import shlex
import subprocess
import sys
import threading

import pytest
import zstandard

from .helpers import (
    MANIFEST,
    PERMISSIONS_BITE,
    REJECTS,
    Outcome,
    assert_clean_failure,
    assert_ok,
    build_args,
    child_env,
    cli,
    json_lines,
    lines,
    proc,
    read_json,
)

pytestmark = pytest.mark.integration

RECORDS = lines(300)


def _totals(out) -> dict:
    return read_json(out / MANIFEST)["totals"]


# ----------------------------------------------------------------------------- compressed input


def _zst_frames(records: list[str], per_frame: int) -> list[bytes]:
    """One zstd frame per ``per_frame`` records, so every frame ends at a line end (what
    ``zstd`` writes for concatenated or streamed input)."""
    compressor = zstandard.ZstdCompressor()
    return [
        compressor.compress("".join(records[i : i + per_frame]).encode())
        for i in range(0, len(records), per_frame)
    ]


@pytest.mark.parametrize("cut", [1, 20])
def test_truncated_multi_frame_zst_fails_naming_the_file(tmp_path, llama_like, cut):
    frames = _zst_frames(RECORDS.splitlines(keepends=True), 100)
    assert len(frames) == 3
    path = tmp_path / "in.jsonl.zst"
    path.write_bytes(b"".join(frames)[:-cut])  # the last frame cut short
    out = tmp_path / "out"
    result = cli(*build_args(path, llama_like, out))
    line = assert_clean_failure(result, 1, mentions=[str(path)])
    assert "invalid JSON" not in line  # the stream is at fault, not a record
    assert not (out / MANIFEST).exists()


def test_whole_multi_frame_zst_reads_every_frame(tmp_path, llama_like):
    """Negative control for the test above: the same frames, not cut, give every record."""
    path = tmp_path / "in.jsonl.zst"
    path.write_bytes(b"".join(_zst_frames(RECORDS.splitlines(keepends=True), 100)))
    out = tmp_path / "out"
    assert_ok(cli(*build_args(path, llama_like, out)))
    assert _totals(out)["records_read"] == 300


@pytest.mark.parametrize(
    "name, compress",
    [("in.jsonl.gz", gzip.compress), ("in.jsonl.bz2", bz2.compress)],
)
def test_truncated_gzip_and_bzip2_fail_naming_the_file(tmp_path, llama_like, name, compress):
    path = tmp_path / name
    path.write_bytes(compress(RECORDS.encode())[:-30])
    out = tmp_path / "out"
    result = cli(*build_args(path, llama_like, out))
    assert_clean_failure(result, 1, mentions=[str(path)])
    assert not (out / MANIFEST).exists()


def test_corrupt_zst_mid_stream_fails_naming_the_file(tmp_path, llama_like):
    data = bytearray(zstandard.ZstdCompressor().compress(RECORDS.encode()))
    data[len(data) // 2 : len(data) // 2 + 40] = b"x" * 40
    path = tmp_path / "in.jsonl.zst"
    path.write_bytes(bytes(data))
    result = cli(*build_args(path, llama_like, tmp_path / "out"))
    assert_clean_failure(result, 1, mentions=[str(path)])


# ----------------------------------------------------------------------------- hostile records

HOSTILE = {
    "deep_nesting": '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "int_over_4300_digits": '{"text": "x", "n": ' + "9" * 5000 + "}",
    "lone_surrogate": '{"text": "a\\ud800b"}',
}


def _with_hostile_line(tmp_path, kind: str):
    path = tmp_path / "in.jsonl"
    good = json.dumps({"text": "a good record"})
    last = json.dumps({"text": "another good record"})
    path.write_text(f"{good}\n{HOSTILE[kind]}\n{last}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_record_fails_with_its_file_and_line(tmp_path, llama_like, kind):
    path = _with_hostile_line(tmp_path, kind)
    result = cli(*build_args(path, llama_like, tmp_path / "out"))
    assert_clean_failure(result, 1, mentions=[f"{path}:2"])


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_record_is_skipped_as_a_bad_record(tmp_path, llama_like, kind):
    path = _with_hostile_line(tmp_path, kind)
    out = tmp_path / "out"
    assert_ok(cli(*build_args(path, llama_like, out, "--on-bad-record", "skip")))
    totals = _totals(out)
    assert (totals["records_read"], totals["records_rejected"]) == (3, 1)
    rejects = json_lines((out / REJECTS).read_text(encoding="utf-8"))
    assert [r["line"] for r in rejects] == [2]


def test_lone_surrogate_in_a_prompt_is_a_bad_record(tmp_path, llama_like):
    path = tmp_path / "sft.jsonl"
    path.write_text(
        '{"prompt": "a\\ud800", "completion": "b"}\n{"prompt": "ok", "completion": "fine"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    sft = ["--prompt-field", "prompt", "--completion-field", "completion"]
    assert_ok(cli(*build_args(path, llama_like, out, *sft, "--on-bad-record", "skip")))
    assert _totals(out)["records_rejected"] == 1
    failed = cli(*build_args(path, llama_like, tmp_path / "out2", *sft))
    assert_clean_failure(failed, 1, mentions=[f"{path}:1"])


def test_nul_bytes_in_records_are_kept_as_text(tmp_path, llama_like):
    jsonl = tmp_path / "nul.jsonl"
    jsonl.write_text('{"text": "a\\u0000b"}\n{"text": "plain"}\n', encoding="utf-8")
    text = tmp_path / "nul.txt"
    text.write_bytes(b"hello\x00world\nsecond line\n")
    for path in (jsonl, text):
        out = tmp_path / f"out-{path.suffix}"
        assert_ok(cli(*build_args(path, llama_like, out)))
        assert _totals(out)["records_read"] == 2


def test_surrogate_bytes_in_a_text_file_are_rejected_as_invalid_utf8(tmp_path, llama_like):
    path = tmp_path / "in.txt"
    path.write_bytes(b"fine line\nbad \xed\xa0\x80 line\nlast line\n")
    out = tmp_path / "out"
    assert_ok(cli(*build_args(path, llama_like, out, "--on-bad-record", "skip")))
    assert _totals(out)["records_rejected"] == 1
    assert_clean_failure(cli(*build_args(path, llama_like, tmp_path / "o2")), 1, [f"{path}:2"])


# ----------------------------------------------------------------------------- oversized lines
# The cap's option name is the example (--max-record-bytes); rename here if the fix
# chooses another.


def _long_line_input(tmp_path, size: int):
    path = tmp_path / "long.txt"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("short first line\n")
        handle.write(("word " * (size // 5)) + "\n")
        handle.write("short last line\n")
    return path


def test_line_over_the_cap_fails_with_file_and_line(tmp_path, llama_like):
    path = _long_line_input(tmp_path, 200_000)
    result = cli(*build_args(path, llama_like, tmp_path / "out", "--max-record-bytes", "10000"))
    assert_clean_failure(result, 1, mentions=[f"{path}:2"])


def test_line_over_the_cap_is_skipped_and_counted(tmp_path, llama_like):
    path = _long_line_input(tmp_path, 200_000)
    out = tmp_path / "out"
    extra = ["--max-record-bytes", "10000", "--on-bad-record", "skip"]
    assert_ok(cli(*build_args(path, llama_like, out, *extra)))
    totals = _totals(out)
    assert (totals["records_read"], totals["records_rejected"]) == (3, 1)
    # The reject names the line; the 200 kB of raw text need not be copied whole.
    assert [r["line"] for r in json_lines((out / REJECTS).read_text())] == [2]


def _memory_cap() -> None:
    # A build that reads /dev/zero without a line cap grows until memory runs out: keep the
    # damage to this child.
    resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))


def test_dev_zero_stops_at_the_line_cap(tmp_path, llama_like):
    args = build_args("/dev/zero", llama_like, tmp_path / "out", "--max-record-bytes", "1M")
    result = proc(*args, preexec=_memory_cap, timeout=120)
    assert_clean_failure(result, (1, 2), mentions=["/dev/zero"])


def test_a_long_line_under_any_generous_default_cap_builds(tmp_path, llama_like):
    """The cap must be generous by default: a 1 MB document is ordinary."""
    path = _long_line_input(tmp_path, 1 << 20)
    out = tmp_path / "out"
    assert_ok(cli(*build_args(path, llama_like, out)))
    assert _totals(out)["records_read"] == 3


# ----------------------------------------------------------------------------- FIFOs and stdin


def test_fifo_cannot_be_split_into_parts(tmp_path, llama_like):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    # Hold the FIFO open for writing so a child that opens it does not block; it gets no data.
    holder = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        out = tmp_path / "part0"
        parts = ["--num-parts", "2", "--part-index", "0"]
        result = proc(*build_args(fifo, llama_like, out, *parts), timeout=60)
    finally:
        os.close(holder)
    assert_clean_failure(result, 2, mentions=[str(fifo)])
    assert not (out / MANIFEST).exists()


def test_fifo_input_without_parts_still_builds(tmp_path, llama_like):
    """Process substitution (``<(zcat x.gz)``) is a FIFO: a whole build must keep reading it."""
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w", encoding="utf-8") as handle:
            handle.write(lines(10))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = tmp_path / "out"
    result = proc(*build_args(fifo, llama_like, out), timeout=60)
    feeder.join(timeout=10)
    assert_ok(result)
    assert _totals(out)["records_read"] == 10


def test_closed_stdin_is_a_usage_error(tmp_path, llama_like):
    args = " ".join(f"'{a}'" for a in build_args("-", llama_like, tmp_path / "out"))
    completed = subprocess.run(
        ["bash", "-c", f"exec {shlex.quote(sys.executable)} -m maskprep {args} <&-"],
        capture_output=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    result = Outcome(completed.returncode, completed.stdout.decode(), completed.stderr.decode())
    assert_clean_failure(result, 2)


# ----------------------------------------------------------------------------- directories


@pytest.fixture
def tree(tmp_path):
    """``tree/a.txt`` and an ``elsewhere/b.txt`` outside it."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_text("line in a\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.txt").write_text("line in b\n")
    return root


def test_directory_input_follows_directory_symlinks(tmp_path, tree, llama_like):
    (tree / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    out = tmp_path / "out"
    assert_ok(cli(*build_args(tree, llama_like, out)))
    assert _totals(out)["records_read"] == 2


def test_directory_symlink_loop_ends_and_reads_each_file_once(tmp_path, tree, llama_like):
    """Loop protection: following directory links must not recurse forever (a subprocess with a
    timeout, so a hang fails instead of stalling the suite)."""
    (tree / "sub").mkdir()
    (tree / "sub" / "up").symlink_to(tree, target_is_directory=True)
    (tree / "self").symlink_to(tree, target_is_directory=True)
    out = tmp_path / "out"
    result = proc(*build_args(tree, llama_like, out), timeout=90)
    assert_ok(result)
    assert _totals(out)["records_read"] == 1


def test_dangling_symlink_in_a_directory_is_an_error(tmp_path, tree, llama_like):
    (tree / "gone.txt").symlink_to(tmp_path / "no-such-file.txt")
    out = tmp_path / "out"
    result = cli(*build_args(tree, llama_like, out))
    assert_clean_failure(result, (1, 2), mentions=["gone.txt"])
    assert not (out / MANIFEST).exists()


@pytest.mark.skipif(not PERMISSIONS_BITE, reason="root reads directories whatever their mode")
def test_unreadable_subdirectory_is_an_error(tmp_path, tree, llama_like):
    hidden = tree / "hidden"
    hidden.mkdir()
    (hidden / "c.txt").write_text("line in c\n")
    hidden.chmod(0)
    try:
        result = cli(*build_args(tree, llama_like, tmp_path / "out"))
    finally:
        hidden.chmod(0o755)
    assert_clean_failure(result, (1, 2), mentions=["hidden"])


def test_plain_subdirectories_are_read(tmp_path, tree, llama_like):
    """Negative control for the directory tests: a real subdirectory is searched."""
    (tree / "sub").mkdir()
    (tree / "sub" / "c.txt").write_text("line in c\n")
    out = tmp_path / "out"
    assert_ok(cli(*build_args(tree, llama_like, out)))
    assert _totals(out)["records_read"] == 2


# ----------------------------------------------------------------------------- found beyond #14


def test_piped_jsonl_with_a_bad_first_line_is_not_read_as_plain_text(tmp_path, llama_like):
    """The format of stdin is sniffed from its first line alone: a corrupt first record makes
    every following JSON object a plain-text document (braces, keys and all), exit 0. It must be
    read as JSONL with line 1 a bad record."""
    data = ("not json\n" + lines(10)).encode()
    out = tmp_path / "out"
    result = cli(*build_args("-", llama_like, out), stdin=data)
    assert_clean_failure(result, 1, mentions=["<stdin>:1"])
