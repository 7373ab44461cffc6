"""``--resume``: a build killed at any point is finished, reusing its complete shards, with output
byte-identical to an uninterrupted build; and random input never crashes a build."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskprep import DataError, build
from maskprep.cli import main
from maskprep.errors import OutputError
from maskprep.output.names import MANIFEST_NAME, REJECTS_NAME

pytestmark = pytest.mark.integration

SHARD_ROWS = 5
BATCH = 3


def _lines(count: int) -> list[bytes]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        json.dumps({"text": " ".join(words[(i + k) % 8] for k in range(1 + i % 5))}).encode()
        + b"\n"
        for i in range(count)
    ]


LINES = _lines(30)
DATA = b"".join(LINES)
OPTIONS = dict(pad_token="eos", shard_rows=SHARD_ROWS, batch_size=BATCH, max_length=16)


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, llama_like):
    out = tmp_path_factory.mktemp("ref") / "out"
    build(make_config(["-"], llama_like, out, **OPTIONS), stdin=io.BytesIO(DATA))
    return _files(out)


def _start(tokenizer, out) -> subprocess.Popen:
    args = ["build", "-", "-t", str(tokenizer), "-o", str(out), "--max-length", "16"]
    args += ["--pad-token", "eos", "--shard-rows", str(SHARD_ROWS)]
    args += ["--batch-size", str(BATCH), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "maskprep", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _wait_for(path, process, timeout=60.0):
    """Wait until ``path`` exists; a name with ``*`` waits for any file matching it."""
    deadline = time.monotonic() + timeout
    while not (any(path.parent.glob(path.name)) if "*" in path.name else path.exists()):
        if process.poll() is not None:
            raise AssertionError(f"build ended early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.02)


def _feed(process, lines):
    process.stdin.write(b"".join(lines))
    process.stdin.flush()


def _kill(process):
    process.kill()  # SIGKILL: no cleanup of any kind runs
    process.wait()
    process.stdin.close()
    process.stderr.close()


def _kill_during_encoding(process, out):
    _wait_for(out / ".maskprep-writer-*.json", process)  # the writer's record: it has begun
    _feed(process, LINES[:2])  # less than a batch: read and waiting, nothing written
    time.sleep(0.5)


def _kill_mid_shard(process, out):
    _feed(process, LINES[:9])  # three batches: shard 0 complete, shard 1 holds 4 of 5 rows
    # The writer's temporary: .tmp-data-00001.parquet.<16 hex>
    _wait_for(out / ".tmp-data-00001.parquet.*", process)


def _kill_between_shards(process, out):
    _feed(process, LINES[:15])  # five batches, three full shards, the fourth not opened
    _wait_for(out / "data-00002.parquet", process)


def _kill_before_manifest(process, out):
    _feed(process, LINES)  # every shard complete; the manifest waits for the end of input
    _wait_for(out / "data-00005.parquet", process)


@pytest.mark.parametrize(
    ("point", "complete"),
    [
        (_kill_during_encoding, 0),
        (_kill_mid_shard, 1),
        (_kill_between_shards, 3),
        (_kill_before_manifest, 6),
    ],
    ids=["during-encoding", "mid-shard", "between-shards", "before-manifest"],
)
def test_resume_after_sigkill_is_byte_identical(tmp_path, llama_like, reference, point, complete):
    out = tmp_path / "out"
    process = _start(llama_like, out)
    try:
        point(process, out)
    finally:
        _kill(process)
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    shards = [n for n in left if n.startswith("data-")]
    assert len(shards) == complete
    assert MANIFEST_NAME not in left
    inodes = {n: (out / n).stat().st_ino for n in shards}

    # SIGKILL ran no clean-up: the writer's record stays, garbage to the next commit.
    assert [n for n in left if n.startswith(".maskprep-writer-")], left
    if shards:  # (a dead writer's record alone is garbage: a plain build would write)
        with pytest.raises(OutputError, match="unfinished build"):
            build(make_config(["-"], llama_like, out, **OPTIONS), stdin=io.BytesIO(DATA))
    result = build(
        make_config(["-"], llama_like, out, resume=True, **OPTIONS), stdin=io.BytesIO(DATA)
    )
    assert _files(out) == reference
    assert result.reused_shards == complete
    # Reused, not rewritten.
    assert {n: (out / n).stat().st_ino for n in shards} == inodes


def test_resume_cli_and_finished_output(tmp_path, llama_like, reference, runner):
    out = tmp_path / "out"
    args = ["build", "-", "-t", str(llama_like), "-o", str(out), "--max-length", "16"]
    args += ["--pad-token", "eos", "--shard-rows", str(SHARD_ROWS), "--batch-size", str(BATCH)]
    args += ["-q"]
    assert runner.invoke(main, args, input=DATA).exit_code == 0
    (out / MANIFEST_NAME).unlink()
    (out / "data-00004.parquet").unlink()
    result = runner.invoke(main, [*args[:-1], "--resume", "--json"], input=DATA)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reused_shards"] == 5  # data-00004 was rebuilt
    assert _files(out) == reference
    # Resuming a finished output leaves it alone (and reads no input).
    result = runner.invoke(main, [*args, "--resume"], input=b"")
    assert result.exit_code == 0, result.output
    assert _files(out) == reference
    result = runner.invoke(main, [*args, "--resume", "--max-length", "20"], input=DATA)
    assert result.exit_code == 2
    assert "holds a finished build made with other options" in result.output
    result = runner.invoke(main, [*args, "--resume", "--overwrite"], input=DATA)
    assert result.exit_code == 2
    assert "resume and overwrite exclude each other" in result.output


def test_resume_refuses_shards_of_another_build(tmp_path, llama_like):
    out = tmp_path / "out"
    build(make_config(["-"], llama_like, out, **OPTIONS), stdin=io.BytesIO(DATA))
    (out / MANIFEST_NAME).unlink()
    changed = {**OPTIONS, "max_length": 20}
    with pytest.raises(OutputError, match=r"data-00000\.parquet: differs from the shard"):
        build(make_config(["-"], llama_like, out, resume=True, **changed), stdin=io.BytesIO(DATA))
    assert (out / "data-00000.parquet").exists()  # kept: the user decides
    fewer = b"".join(LINES[:10])  # two full shards: 00002 on are stale
    with pytest.raises(OutputError, match=r"data-00002\.parquet: left by the interrupted build"):
        build(make_config(["-"], llama_like, out, resume=True, **OPTIONS), stdin=io.BytesIO(fewer))


# Random input: the build never fails with anything but a one-line maskprep error, and every
# line is accounted for.

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_json_lines = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["text", "other"]), _json_values, max_size=2),
        st.builds(lambda t: {"text": t}, st.text(max_size=30)),
        st.builds(lambda t: {"text": t}, st.text(alphabet="abc é東", min_size=1, max_size=30)),
        _json_values,
    ).map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
    max_size=12,
).map(lambda lines: b"\n".join(lines))
_unicode = st.lists(st.text(max_size=40), max_size=8).map(
    lambda lines: "\n".join(lines).encode("utf-8", errors="surrogatepass")
)
_inputs = st.one_of(st.binary(max_size=300), _json_lines, _unicode)


def _lines_in(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=_inputs,
    policy=st.sampled_from(["skip", "fail"]),
    fmt=st.sampled_from(["auto", "text", "jsonl"]),
)
def test_random_input_is_accounted_for(tmp_path, llama_like, data, policy, fmt):
    # A fresh directory per example: a failed overwrite keeps the previous example's output.
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "out"
    config = make_config(
        ["-"],
        llama_like,
        out,
        pad_token="eos",
        on_bad_record=policy,
        input_format=fmt,
        overwrite=True,
        max_length=12,
        overflow="drop",
        strategy="pack",
    )
    try:
        result = build(config, stdin=io.BytesIO(data))
    except DataError as error:
        assert "\n" not in str(error)
        assert MANIFEST_NAME not in os.listdir(out) if out.exists() else True
        return
    totals = result.manifest.as_dict()["totals"]
    assert totals["records_read"] == (
        totals["documents_written"] + totals["records_rejected"] + totals["documents_dropped"]
    )
    assert totals["records_read"] + totals["blank_lines"] == _lines_in(data)
    if policy == "skip":
        rejects = (out / REJECTS_NAME).read_text(encoding="utf-8").splitlines()
        assert len(rejects) == totals["records_rejected"]


def test_resuming_a_finished_output_built_from_a_named_pipe_says_what_to_do(tmp_path, llama_like):
    """A FIFO cannot be read again to check it: one line naming it and what to do, not a claim
    that it changed (it reads as 0 bytes)."""
    import threading

    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(DATA))
    writer.start()
    out = tmp_path / "out"
    build(make_config([fifo], llama_like, out, **OPTIONS))
    writer.join(timeout=30)
    with pytest.raises(OutputError) as raised:
        build(make_config([fifo], llama_like, out, resume=True, **OPTIONS))
    message = str(raised.value)
    assert message.startswith(f"{fifo}: a pipe or device, which cannot be read again")
    assert message.endswith("a regular file, or overwrite the output to rebuild it")
    assert "changed" not in message and len(message.splitlines()) == 1
    # A regular file with the same bytes resumes as the finished output it is.
    plain = tmp_path / "plain.txt"
    plain.write_bytes(DATA)
    again = tmp_path / "again"
    build(make_config([plain], llama_like, again, **OPTIONS))
    assert build(make_config([plain], llama_like, again, resume=True, **OPTIONS)).reused_shards
