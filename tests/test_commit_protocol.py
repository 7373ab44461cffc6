"""The commit protocol against writers that are suspended, overtaken or killed (issue #24).

No writer deletes or overwrites an object it cannot prove it created and that no committed
manifest references; the commit is one conditional write of the manifest. These tests run real
``maskprep`` processes, locally and against an S3-protocol server on loopback (moto), and check
the outputs as a user would: with ``maskprep inspect`` and the bytes of every shard listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_kit import build_args
from conftest import ROOT

pytestmark = pytest.mark.integration

MANIFEST = "_maskprep.json"
OPTIONS = ("--shard-rows", "8", "--batch-size", "4")


def _records(count: int, offset: int = 0) -> bytes:
    return "".join(
        json.dumps({"text": f"record {i} " + "word " * (i % 7)}) + "\n"
        for i in range(offset, offset + count)
    ).encode()


FIRST = _records(20)  # shards 0 and 1 complete, a third begun; then the writer waits for more
REST = _records(40, offset=20)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "maskprep", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )


def _run(*args: object, stdin: bytes | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "maskprep", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Place:
    """An output location and how to read what is there, by name."""

    out: str
    files: Callable[[], dict[str, bytes]]


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path) -> Place:
    if request.param == "local":
        out = tmp_path / "out"
        return Place(str(out), lambda: _local_files(out))
    pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
    boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3)")
    bucket = request.getfixturevalue("s3_bucket")

    return Place(f"s3://{bucket}/out", lambda: _s3_files(boto3, bucket))


def _s3_files(boto3, bucket: str) -> dict[str, bytes]:
    """Every object under ``out/`` with its bytes (one deleted between the listing and its
    read, as a writer's sweep may, left out)."""
    s3 = boto3.client("s3")
    found = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", []):
        try:
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        found[item["Key"].removeprefix("out/")] = body
    return found


def _local_files(directory: Path) -> dict[str, bytes]:
    """Every file of ``directory`` with its bytes (one removed between the listing and its read
    left out)."""
    found = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        try:
            if path.is_file():
                found[path.name] = path.read_bytes()
        except FileNotFoundError:
            continue
    return found


def _listed(files: dict[str, bytes]) -> list[tuple[str, str]]:
    """(name, sha256 recorded) of every shard the manifest lists."""
    manifest = json.loads(files[MANIFEST])
    return [(s["path"], s["sha256"]) for s in manifest["shards"]]


def assert_whole(place: Place) -> dict[str, bytes]:
    """The output at ``place`` is finished and whole: inspect passes, and every shard its
    manifest lists is there with the bytes it records."""
    files = place.files()
    assert MANIFEST in files, sorted(files)
    for name, digest in _listed(files):
        assert name in files, f"{name} is listed but gone: {sorted(files)}"
        assert hashlib.sha256(files[name]).hexdigest() == digest, f"{name} changed"
    inspected = _run("inspect", place.out, "--json")
    assert inspected.returncode == 0, inspected.stdout.decode()[-3000:] + inspected.stderr.decode()
    return files


def _shard_bytes(files: dict[str, bytes]) -> list[bytes]:
    return [files[name] for name, _ in _listed(files)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, llama_like) -> list[bytes]:
    """The shards of an undisturbed build of FIRST + REST, in the manifest's order."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = _run(*build_args("-", llama_like, out, *OPTIONS), stdin=FIRST + REST)
    assert done.returncode == 0, done.stderr.decode()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    return _shard_bytes(files)


def _suspend_after_two_shards(place: Place, tokenizer) -> subprocess.Popen:
    """A writer that has published two shards, begun a third, and is then stopped (SIGSTOP, as a
    batch scheduler suspends a job)."""
    writer = _start(*build_args("-", tokenizer, place.out, *OPTIONS))
    assert writer.stdin is not None
    writer.stdin.write(FIRST)
    writer.stdin.flush()
    deadline = time.monotonic() + 90
    while len([n for n in place.files() if n.startswith("data-")]) < 2:
        assert writer.poll() is None, writer.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the writer never published two shards"
        time.sleep(0.05)
    time.sleep(0.3)  # into the third shard
    writer.send_signal(signal.SIGSTOP)
    return writer


def _wake(writer: subprocess.Popen) -> subprocess.CompletedProcess:
    """Resume a stopped writer, give it the rest of its input, and wait for it to end."""
    writer.send_signal(signal.SIGCONT)
    try:
        stdout, stderr = writer.communicate(REST, timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    return subprocess.CompletedProcess(writer.args, writer.returncode, stdout, stderr)


def test_a_suspended_writer_woken_after_a_resume_finished_leaves_that_output_whole(
    place, llama_like, reference
):
    writer = _suspend_after_two_shards(place, llama_like)
    try:
        second = _run(
            *build_args("-", llama_like, place.out, *OPTIONS, "--resume"), stdin=FIRST + REST
        )
        assert second.returncode == 0, second.stderr.decode()[-2000:]
        finished = assert_whole(place)
        assert _shard_bytes(finished) == reference
    finally:
        woken = _wake(writer)
    assert b"Traceback" not in woken.stderr, woken.stderr.decode()[-2000:]
    after = assert_whole(place)
    assert _shard_bytes(after) == reference
    assert after[MANIFEST] == finished[MANIFEST]


def test_a_suspended_writer_woken_after_an_overwrite_finished_leaves_that_output_whole(
    place, llama_like
):
    writer = _suspend_after_two_shards(place, llama_like)
    other = ("--shard-rows", "5", "--batch-size", "4")  # another build: other shard bounds
    try:
        second = _run(
            *build_args("-", llama_like, place.out, *other, "--overwrite"), stdin=FIRST + REST
        )
        assert second.returncode == 0, second.stderr.decode()[-2000:]
        finished = assert_whole(place)
        assert len(_listed(finished)) == 12  # 60 rows of 5
    finally:
        woken = _wake(writer)
    assert b"Traceback" not in woken.stderr, woken.stderr.decode()[-2000:]
    after = assert_whole(place)
    assert after[MANIFEST] == finished[MANIFEST]
    assert _shard_bytes(after) == _shard_bytes(finished)


def test_a_writer_stopped_at_a_random_moment_never_damages_the_output_that_overtook_it(
    place, llama_like, tmp_path
):
    """The writer reads a file and is stopped wherever it happens to be (reading, encoding,
    writing a shard, committing): whichever of the two finishes, the output is whole."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(_records(400))
    args = build_args(source, llama_like, place.out, "--shard-rows", "40", "--batch-size", "8")
    for trial in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-m", "maskprep", *args, "--overwrite"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        time.sleep(random.Random(trial).uniform(0.5, 2.5))
        writer.send_signal(signal.SIGSTOP)
        try:
            second = _run(*args, "--overwrite", "--shard-rows", "30")
            assert second.returncode == 0, second.stderr.decode()[-2000:]
            finished = assert_whole(place)
        finally:
            writer.send_signal(signal.SIGCONT)
            _, stderr = writer.communicate(timeout=120)
        assert b"Traceback" not in stderr, stderr.decode()[-2000:]
        after = assert_whole(place)
        # The woken writer either gave up or replaced the output with a whole one of its own.
        if after[MANIFEST] != finished[MANIFEST]:
            assert writer.returncode == 0


# ------------------------------------------------------------------ a finished output that changed


def _tamper(place: Place, name: str, data: bytes, tmp_path: Path) -> None:
    """Replace the file ``name`` of the output at ``place`` with ``data``."""
    if place.out.startswith("s3://"):
        import boto3

        bucket = place.out.removeprefix("s3://").split("/")[0]
        boto3.client("s3").put_object(Bucket=bucket, Key=f"out/{name}", Body=data)
    else:
        (Path(place.out) / name).write_bytes(data)


def test_resume_of_a_finished_output_whose_shard_bytes_changed_is_not_finished(
    place, llama_like, tmp_path
):
    """docs/storage.md: a finished output is returned as it is only if it is still what the
    build makes; a shard rewritten with other bytes (the same rows, another compression) is
    not, and is named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    args = build_args("-", llama_like, place.out, *OPTIONS)
    done = _run(*args, stdin=FIRST + REST)
    assert done.returncode == 0, done.stderr.decode()
    files = place.files()
    name = _listed(files)[1][0]
    sink = pa.BufferOutputStream()
    pq.write_table(pq.read_table(pa.BufferReader(files[name])), sink, compression="gzip")
    # Negative control first: unchanged, the finished output is returned as it is.
    again = _run(*args, "--resume", stdin=FIRST + REST)
    assert again.returncode == 0, again.stderr.decode()
    _tamper(place, name, sink.getvalue().to_pybytes(), tmp_path)
    resumed = _run(*args, "--resume", stdin=FIRST + REST)
    assert resumed.returncode == 2, resumed.stderr.decode()
    message = resumed.stderr.decode().strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert name in message and "holds other bytes" in message and "--overwrite" in message
    assert place.files()[name] == sink.getvalue().to_pybytes()  # nothing was touched


# ------------------------------------------------------------------ a killed overwrite


def _switch_begun(place: Place) -> bool:
    """Whether an overwrite has begun to move its files into the output (tagged shard names
    there that the manifest does not list): the moment the switch is under way."""
    files = place.files()
    listed = {name for name, _ in _listed(files)} if MANIFEST in files else set()
    return any(n.startswith("data-") and n.count("-") == 2 and n not in listed for n in files)


def _overwrite_kill_trial(place: Place, tokenizer, source_old, source_new, trials: int) -> None:
    """Replace a finished output with ``--overwrite``, killing the writer (SIGTERM, and every
    fourth time SIGKILL) ``trials`` times: at a random moment of its run, or the moment its
    switch is seen under way. Afterwards the output is always whole, the old one or the new
    one, never neither."""
    many = ("--shard-rows", "2", "--batch-size", "8")  # many shards: a long switch to hit
    old = _run(*build_args(source_old, tokenizer, place.out, *many))
    assert old.returncode == 0, old.stderr.decode()
    old_shards = _shard_bytes(assert_whole(place))
    timed = time.monotonic()
    new = _run(*build_args(source_new, tokenizer, place.out, *many, "--overwrite"))
    duration = time.monotonic() - timed
    assert new.returncode == 0, new.stderr.decode()
    new_shards = _shard_bytes(assert_whole(place))
    assert new_shards != old_shards
    seen = {"old": 0, "new": 0, "mid-switch": 0}
    rng = random.Random(24)
    for trial in range(trials):
        source = source_new if trial % 2 else source_old  # alternate which one replaces
        writer = subprocess.Popen(
            [sys.executable, "-m", "maskprep",
             *build_args(source, tokenizer, place.out, *many, "--overwrite")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
        )  # fmt: skip
        if trial % 3 == 2:  # random: anywhere in the run
            time.sleep(rng.uniform(0.3, 1.3) * duration)
        else:  # the switch: as soon as it is seen under way
            deadline = time.monotonic() + 120
            while not _switch_begun(place) and writer.poll() is None:
                assert time.monotonic() < deadline, "the switch never began"
            seen["mid-switch"] += writer.poll() is None
        writer.send_signal(signal.SIGKILL if trial % 4 == 3 else signal.SIGTERM)
        _, stderr = writer.communicate(timeout=120)
        assert b"Traceback" not in stderr, stderr.decode()[-2000:]
        shards = _shard_bytes(assert_whole(place))
        assert shards in (old_shards, new_shards), f"trial {trial}: neither output"
        seen["old" if shards == old_shards else "new"] += 1
    assert seen["mid-switch"], seen  # the kills did land in the switch


def test_a_killed_overwrite_leaves_the_old_or_the_new_output_whole(tmp_path, llama_like):
    out = tmp_path / "out"
    old = tmp_path / "old.jsonl"
    old.write_bytes(_records(120))
    new = tmp_path / "new.jsonl"
    new.write_bytes(_records(100, offset=500))
    place = Place(str(out), lambda: _local_files(out))
    _overwrite_kill_trial(place, llama_like, old, new, trials=18)


def test_a_killed_overwrite_on_s3_leaves_the_old_or_the_new_output_whole(
    s3_bucket, tmp_path, llama_like
):
    boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3)")
    old = tmp_path / "old.jsonl"
    old.write_bytes(_records(60))
    new = tmp_path / "new.jsonl"
    new.write_bytes(_records(50, offset=500))

    place = Place(f"s3://{s3_bucket}/out", lambda: _s3_files(boto3, s3_bucket))
    _overwrite_kill_trial(place, llama_like, old, new, trials=6)


def test_two_attempts_of_one_build_both_end_with_its_output(tmp_path, llama_like, monkeypatch):
    """The same build twice at once (a retried task beside the one it replaced): the one that
    commits second finds the very manifest it was to write, and takes it as its result."""
    import dataclasses

    from conftest import make_config, write_jsonl

    import maskprep.pipeline as pipeline
    from maskprep import build

    source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"doc {i}"} for i in range(30)])
    config = make_config([source], llama_like, tmp_path / "out", pad_token="eos", shard_rows=7)
    real = pipeline.OutputSession.commit
    raced = {}

    def race(self, manifest):
        if not raced:  # another attempt commits first, between this one's shards and manifest
            raced["other"] = None
            raced["other"] = build(dataclasses.replace(
                config, output=dataclasses.replace(config.output, resume=True)
            ))  # fmt: skip
        return real(self, manifest)

    monkeypatch.setattr(pipeline.OutputSession, "commit", race)
    first = build(config)
    assert first.manifest == raced["other"].manifest
    assert (tmp_path / "out" / MANIFEST).is_file()
