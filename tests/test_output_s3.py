"""The commit protocol on an object store: ``build``, ``--resume``, ``--overwrite`` and ``merge``
with ``s3://`` inputs and outputs, against a real S3-protocol server (moto on loopback, reached
only through the standard AWS variables), never a mock of the client.

Each protection has a hostile case (a planted partial object, a dead writer's temporary key, a
foreign key, another writer's record, a killed writer) and a negative control showing the same
check lets maskprep's own output through.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from cli_kit import assert_one_line, assert_ran, build_args
from click.testing import CliRunner
from conftest import ROOT, write_jsonl

from maskprep.cli import main
from maskprep.output.names import MANIFEST_NAME

# The S3 tests need the test extra (s3fs, moto and boto3); without it they skip, saying so.
pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
pytest.importorskip("moto", reason="the S3 tests need the test extra (moto)")
boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3)")


pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_server")]


def _cli(*args: object, stdin: bytes | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin)


def _args(source: object, tokenizer, out: str, *extra: object) -> list[str]:
    return build_args(source, tokenizer, out, "--shard-rows", 20, *extra)


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix/`` (hidden names too) by relative key, with its bytes."""
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {
        item["Key"].removeprefix(prefix + "/"): s3.get_object(Bucket=bucket, Key=item["Key"])[
            "Body"
        ].read()
        for item in listing
    }


def _etags(bucket: str, prefix: str) -> dict[str, str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}


def _open_uploads(bucket: str) -> list[str]:
    uploads = boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u["Key"] for u in uploads]


def _put(bucket: str, key: str, data: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def _rows(files: dict[str, bytes]) -> list[dict]:
    manifest = json.loads(files[MANIFEST_NAME])
    rows: list[dict] = []
    for shard in manifest["shards"]:
        rows += pq.read_table(io.BytesIO(files[shard["path"]])).to_pylist()
    return rows


def _local(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def source(tmp_path):
    """50 JSONL records (3 shards of at most 20 rows)."""
    records = [{"text": f"document {i} " + "word " * (i % 7)} for i in range(50)]
    return write_jsonl(tmp_path / "in.jsonl", records)


@pytest.fixture
def finished(s3_bucket, source, llama_like) -> str:
    """A finished build of ``source`` at ``s3://BUCKET/out``."""
    assert_ran(_cli(*_args(source, llama_like, f"s3://{s3_bucket}/out")))
    return f"s3://{s3_bucket}/out"


# ----------------------------------------------------------------------------- same bytes


def test_s3_output_is_byte_identical_to_a_local_build(s3_bucket, source, llama_like, tmp_path):
    assert_ran(_cli(*_args(source, llama_like, f"s3://{s3_bucket}/out/")))
    assert_ran(_cli(*_args(source, llama_like, str(tmp_path / "local"))))
    remote, local = _objects(s3_bucket, "out"), _local(tmp_path / "local")
    assert sorted(remote) == sorted(
        ["data-00000.parquet", "data-00001.parquet", "data-00002.parquet", MANIFEST_NAME]
    )
    assert remote == local  # every shard and the manifest, byte for byte
    manifest = json.loads(remote[MANIFEST_NAME])
    # The sha256 recorded is that of the bytes stored (computed as they streamed out).
    import hashlib

    for shard in manifest["shards"]:
        assert hashlib.sha256(remote[shard["path"]]).hexdigest() == shard["sha256"]
    assert _open_uploads(s3_bucket) == []


def test_s3_input_and_output_give_the_shards_of_a_local_build(
    s3_bucket, source, llama_like, tmp_path
):
    _put(s3_bucket, "in/data.jsonl", source.read_bytes())
    url = f"s3://{s3_bucket}/in/data.jsonl"
    assert_ran(_cli(*_args(url, llama_like, f"s3://{s3_bucket}/out")))
    assert_ran(_cli(*_args(source, llama_like, str(tmp_path / "local"))))
    remote, local = _objects(s3_bucket, "out"), _local(tmp_path / "local")
    assert {k: v for k, v in remote.items() if k != MANIFEST_NAME} == {
        k: v for k, v in local.items() if k != MANIFEST_NAME
    }
    manifest, expected = json.loads(remote[MANIFEST_NAME]), json.loads(local[MANIFEST_NAME])
    assert manifest["inputs"][0]["path"] == url
    assert manifest["config"]["source"]["inputs"] == [url]
    for key in ("shards", "totals", "fill", "tokenizer"):
        assert manifest[key] == expected[key], key
    assert manifest["inputs"][0]["sha256"] == expected["inputs"][0]["sha256"]


def test_bad_record_in_an_s3_input_names_the_url_and_line(s3_bucket, llama_like):
    _put(s3_bucket, "in.jsonl", b'{"text": "fine"}\nnot json\n')
    result = _cli(*_args(f"s3://{s3_bucket}/in.jsonl", llama_like, f"s3://{s3_bucket}/out"))
    assert_one_line(result, 1, f"s3://{s3_bucket}/in.jsonl:2: invalid JSON")
    assert _objects(s3_bucket, "out") == {}  # nothing left: no lock, no shard, no manifest


def test_s3_inputs_by_prefix_and_glob_are_read_in_key_order(s3_bucket, llama_like, tmp_path):
    for name, text in (("b.jsonl", "second"), ("a.jsonl", "first"), ("notes.md", "skipped")):
        _put(s3_bucket, f"in/{name}", json.dumps({"text": text}).encode() + b"\n")
    for given in (f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/in/*.jsonl"):
        out = f"s3://{s3_bucket}/out-{len(given)}"
        assert_ran(_cli(*_args(given, llama_like, out)))
        manifest = json.loads(_objects(s3_bucket, out.split("/", 3)[3])[MANIFEST_NAME])
        assert [i["path"] for i in manifest["inputs"]] == [
            f"s3://{s3_bucket}/in/a.jsonl",
            f"s3://{s3_bucket}/in/b.jsonl",
        ]
    missing = _cli(*_args(f"s3://{s3_bucket}/nope/*.jsonl", llama_like, f"s3://{s3_bucket}/x"))
    assert_one_line(missing, 2, f"s3://{s3_bucket}/nope/*.jsonl")


# ----------------------------------------------------------------------------- input rules
# What the local reader guards against holds for a streamed object too: it goes through the same
# line reader, decompression and sniffing (symbolic links and FIFOs are local matters only).


def _zst_frames(text: bytes, frames: int) -> bytes:
    """``text`` as ``frames`` zstd frames, each ending at a line end (as ``zstd`` streams)."""
    import zstandard

    lines = text.splitlines(keepends=True)
    step = -(-len(lines) // frames)
    compressor = zstandard.ZstdCompressor()
    return b"".join(
        compressor.compress(b"".join(lines[i : i + step])) for i in range(0, len(lines), step)
    )


def test_a_line_over_the_cap_in_an_s3_input_is_a_bad_record(s3_bucket, llama_like):
    body = (
        b'{"text": "fine"}\n' + json.dumps({"text": "x " * 3000}).encode() + b'\n{"text": "ok"}\n'
    )
    _put(s3_bucket, "in.jsonl", body)
    url = f"s3://{s3_bucket}/in.jsonl"
    cap = ["--max-record-bytes", "1K"]
    assert_one_line(_cli(*_args(url, llama_like, f"s3://{s3_bucket}/failed", *cap)), 1, f"{url}:2")
    out = f"s3://{s3_bucket}/out"
    assert_ran(_cli(*_args(url, llama_like, out, *cap, "--on-bad-record", "skip")))
    files = _objects(s3_bucket, "out")
    [reject] = [json.loads(line) for line in files["_rejects.jsonl"].splitlines()]
    assert (reject["file"], reject["line"]) == (url, 2)
    assert "longer than the record limit of 1,024 bytes" in reject["reason"]
    assert len(reject["raw"]) < 1100  # the head of the line, not all 6 kB of it
    # Negative control: under the default cap the same object is three good records.
    assert_ran(_cli(*_args(url, llama_like, f"s3://{s3_bucket}/whole")))
    totals = json.loads(_objects(s3_bucket, "whole")[MANIFEST_NAME])["totals"]
    assert (totals["records_read"], totals["records_rejected"]) == (3, 0)


def test_a_truncated_multi_frame_zst_object_fails_naming_it(s3_bucket, source, llama_like):
    whole = _zst_frames(source.read_bytes(), 3)
    _put(s3_bucket, "cut.jsonl.zst", whole[:-5])  # the last frame cut short
    url = f"s3://{s3_bucket}/cut.jsonl.zst"
    line = assert_one_line(_cli(*_args(url, llama_like, f"s3://{s3_bucket}/out")), 1, url)
    assert "invalid JSON" not in line and "zstd frame" in line, line
    assert _objects(s3_bucket, "out") == {}
    # Negative control: the same frames, whole, give every record.
    _put(s3_bucket, "whole.jsonl.zst", whole)
    assert_ran(
        _cli(*_args(f"s3://{s3_bucket}/whole.jsonl.zst", llama_like, f"s3://{s3_bucket}/ok"))
    )
    totals = json.loads(_objects(s3_bucket, "ok")[MANIFEST_NAME])["totals"]
    assert totals["records_read"] == 50


def test_an_s3_object_without_extension_is_sniffed_by_the_local_rule(s3_bucket, llama_like):
    """A JSONL object whose first record is broken is still JSONL (line 1 a bad record), not
    plain text with braces in it; a text object with one line of JSON stays text."""
    records = b"".join(json.dumps({"text": f"r{i}"}).encode() + b"\n" for i in range(6))
    _put(s3_bucket, "broken-first", b"not json\n" + records)
    url = f"s3://{s3_bucket}/broken-first"
    assert_one_line(_cli(*_args(url, llama_like, f"s3://{s3_bucket}/out")), 1, f"{url}:1", "JSON")
    _put(s3_bucket, "prose", b"first line\nsecond line\n" + records[:20] + b"\nlast line\n")
    assert_ran(_cli(*_args(f"s3://{s3_bucket}/prose", llama_like, f"s3://{s3_bucket}/text")))
    manifest = json.loads(_objects(s3_bucket, "text")[MANIFEST_NAME])
    assert manifest["inputs"][0]["format"] == "text"


def test_parts_of_an_s3_object_reach_it_through_the_storage_options(
    s3_server, s3_bucket, llama_like, tmp_path, monkeypatch
):
    """Every step of a part's plan (stat, compression check, line starts, sniffing the object's
    start, the ranged read) reaches the store through --storage-option alone; and a part that
    begins among JSON lines of a text object still reads text, as the whole object does."""
    body = b"".join(b"plain line %d\n" % i for i in range(20))
    body += b"".join(json.dumps({"text": f"j{i}"}).encode() + b"\n" for i in range(20))
    _put(s3_bucket, "mixed", body)
    (tmp_path / "mixed").write_bytes(body)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    flag = ["--storage-option", f"s3:endpoint_url={s3_server.endpoint}"]
    url = f"s3://{s3_bucket}/mixed"
    rows = []
    for index in range(2):
        part = tmp_path / f"part{index}"
        assert_ran(
            _cli(*_args(url, llama_like, part, *flag, "--num-parts", 2, "--part-index", index))
        )
        manifest = json.loads((part / MANIFEST_NAME).read_text())
        assert manifest["inputs"][0]["format"] == "text", index
        rows += _rows(_local(part))
    assert_ran(
        _cli(*_args(tmp_path / "mixed", llama_like, tmp_path / "single", "--input-format", "text"))
    )
    assert rows == _rows(_local(tmp_path / "single"))


# ----------------------------------------------------------------------------- finished outputs


def test_a_second_build_into_a_finished_s3_output_is_refused(
    finished, s3_bucket, source, llama_like
):
    before = _etags(s3_bucket, "out")
    assert_one_line(_cli(*_args(source, llama_like, finished)), 2, finished)
    assert _etags(s3_bucket, "out") == before
    # Negative control: resuming returns it untouched.
    assert_ran(_cli(*_args(source, llama_like, finished, "--resume")))
    assert _etags(s3_bucket, "out") == before


def test_overwrite_replaces_a_finished_s3_output(finished, s3_bucket, tmp_path, llama_like):
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": f"other {i}"} for i in range(7)])
    assert_ran(_cli(*_args(other, llama_like, finished, "--overwrite")))
    files = _objects(s3_bucket, "out")
    manifest = json.loads(files[MANIFEST_NAME])
    # The new output's files only (tagged names, unused by any other writer): no staging, no
    # record, nothing of the old output.
    (shard,) = [s["path"] for s in manifest["shards"]]
    assert sorted(files) == sorted([shard, MANIFEST_NAME]) and shard != "data-00000.parquet"
    assert manifest["totals"]["records_read"] == 7
    assert _open_uploads(s3_bucket) == []


def test_a_failed_overwrite_keeps_the_finished_s3_output(finished, s3_bucket, tmp_path, llama_like):
    before = _objects(s3_bucket, "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": f"new {i}"}) + "\n" for i in range(45)) + "{\n")
    result = _cli(*_args(bad, llama_like, finished, "--overwrite"))
    assert_one_line(result, 1, f"{bad}:46")
    assert _objects(s3_bucket, "out") == before  # old output intact, no staging keys left
    assert _open_uploads(s3_bucket) == []


def test_resume_of_a_finished_s3_output_whose_input_changed_is_refused(
    finished, s3_bucket, source, llama_like
):
    with open(source, "a") as handle:
        handle.write(json.dumps({"text": "appended"}) + "\n")
    result = _cli(*_args(source, llama_like, finished, "--resume"))
    assert_one_line(result, 2, str(source), "changed since the build")


# ----------------------------------------------------------------------------- hostile prefixes


@pytest.mark.parametrize(
    "key", ["notes.txt", "data-00000-of-00002.parquet", "sub/data-00000.parquet", ".tmp-notes"]
)
@pytest.mark.parametrize("mode", ["plain", "overwrite", "resume"])
def test_foreign_keys_in_the_output_prefix_refuse_every_mode(
    s3_bucket, source, llama_like, key, mode
):
    _put(s3_bucket, f"out/{key}", b"someone else's")
    extra = {"plain": [], "overwrite": ["--overwrite"], "resume": ["--resume"]}[mode]
    result = _cli(*_args(source, llama_like, f"s3://{s3_bucket}/out", *extra))
    assert_one_line(result, 2, key.split("/")[0])
    assert _objects(s3_bucket, "out") == {key: b"someone else's"}


def test_foreign_key_in_a_finished_s3_output_refuses_overwrite(
    finished, s3_bucket, source, llama_like
):
    _put(s3_bucket, "out/data-00099.parquet", b"not from this build")
    before = _objects(s3_bucket, "out")
    assert_one_line(
        _cli(*_args(source, llama_like, finished, "--overwrite")), 2, "data-00099.parquet"
    )
    assert _objects(s3_bucket, "out") == before


def test_a_partial_object_under_a_shard_name_is_never_taken_for_a_shard(
    s3_bucket, source, llama_like
):
    partial = b"PAR1" + b"\0" * 100  # the head of a Parquet file, cut short
    _put(s3_bucket, "out/data-00000.parquet", partial)
    out = f"s3://{s3_bucket}/out"
    assert_one_line(_cli(*_args(source, llama_like, out)), 2, "unfinished build")
    assert_one_line(_cli(*_args(source, llama_like, out, "--overwrite")), 2, "data-00000.parquet")
    assert_one_line(
        _cli(*_args(source, llama_like, out, "--resume")), 2, "data-00000.parquet: differs"
    )
    assert _objects(s3_bucket, "out") == {"data-00000.parquet": partial}


def test_a_dead_writers_temporary_key_is_removed_and_the_build_runs(s3_bucket, source, llama_like):
    # What a writer to a store without staged uploads leaves when it dies mid-shard.
    _put(s3_bucket, "out/.tmp-data-00000.parquet.0123456789abcdef", b"half a shard")
    assert_ran(_cli(*_args(source, llama_like, f"s3://{s3_bucket}/out")))
    assert ".tmp-data-00000.parquet.0123456789abcdef" not in _objects(s3_bucket, "out")


def test_an_aborted_build_leaves_nothing_on_s3(s3_bucket, tmp_path, llama_like):
    # 60 good records (three shards published) then a bad one: the build fails at the end.
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": f"r {i}"}) + "\n" for i in range(60)) + "{\n")
    assert_one_line(_cli(*_args(bad, llama_like, f"s3://{s3_bucket}/out")), 1, f"{bad}:61")
    assert _objects(s3_bucket, "out") == {}
    assert _open_uploads(s3_bucket) == []


# ----------------------------------------------------------------------------- other writers

RECORD = ".maskprep-writer-00000000000000aa.json"


def _plant_writer(bucket: str) -> None:
    """The record of another writer, which may be running or may have died: on a store nobody
    can tell (and no clock is trusted to)."""
    record = json.dumps({"host": "elsewhere", "pid": 4242, "action": "write"}).encode()
    _put(bucket, f"out/{RECORD}", record)


def test_a_plain_build_beside_another_writers_record_is_refused(s3_bucket, source, llama_like):
    _plant_writer(s3_bucket)
    out = f"s3://{s3_bucket}/out"
    result = _cli(*_args(source, llama_like, out))
    assert_one_line(result, 2, "elsewhere, pid 4242", "--resume", "--overwrite")
    assert list(_objects(s3_bucket, "out")) == [RECORD]


def test_resume_beside_another_writers_record_goes_on_at_once(s3_bucket, source, llama_like):
    """Negative control of the refusal, and no lease to wait for: the record is garbage once
    this build commits (the writer it names can never commit after it)."""
    _plant_writer(s3_bucket)
    started = time.monotonic()
    assert_ran(_cli(*_args(source, llama_like, f"s3://{s3_bucket}/out", "--resume")))
    assert time.monotonic() - started < 60
    left = _objects(s3_bucket, "out")
    assert RECORD not in left and MANIFEST_NAME in left


WRITER = """
import sys
from maskprep import BuildConfig, OutputConfig, ShapeConfig, SourceConfig, TokenizerConfig, build
tokenizer, out = sys.argv[1:3]
build(
    BuildConfig(
        source=SourceConfig(inputs=("-",)),
        tokenizer=TokenizerConfig(name_or_path=tokenizer, pad_token="eos"),
        shape=ShapeConfig(max_length=16),
        output=OutputConfig(directory=out, shard_rows=5, resume="--resume" in sys.argv),
        batch_size=5,
    ),
)
"""


def _lines(count: int) -> bytes:
    return b"".join(json.dumps({"text": f"line {i} " + "x " * (i % 5)}).encode() + b"\n"
                    for i in range(count))  # fmt: skip


def test_a_killed_s3_writer_is_resumed_byte_identical(s3_bucket, llama_like):
    out = f"s3://{s3_bucket}/out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", WRITER, str(llama_like), out]
    reference = f"s3://{s3_bucket}/reference"
    done = subprocess.run([*command[:-1], reference], input=_lines(30), env=env, check=False,
                          capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        child.stdin.write(_lines(30)[: len(_lines(12))])  # two shards complete, a third begun
        child.stdin.flush()
        deadline = time.monotonic() + 60
        while "data-00001.parquet" not in _objects(s3_bucket, "out"):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never published its second shard"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stderr.close()
    left = _objects(s3_bucket, "out")
    assert MANIFEST_NAME not in left, sorted(left)
    assert [n for n in left if n.startswith(".maskprep-writer-")], sorted(left)
    # No lease to wait for: the resume runs at once, and sweeps the dead writer's record.
    resume = [*command, "--resume"]
    done = subprocess.run(resume, input=_lines(30), env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _objects(s3_bucket, "out") == _objects(s3_bucket, "reference")


# ----------------------------------------------------------------------------- merge


def test_three_s3_parts_merge_on_s3_into_the_single_builds_rows(
    s3_bucket, source, llama_like, tmp_path
):
    _put(s3_bucket, "in.jsonl", source.read_bytes())
    url = f"s3://{s3_bucket}/in.jsonl"
    parts = [f"s3://{s3_bucket}/part{i}" for i in range(3)]
    for index, part in enumerate(parts):
        assert_ran(_cli(*_args(url, llama_like, part, "--num-parts", 3, "--part-index", index)))
    merged = f"s3://{s3_bucket}/merged"
    result = _cli("merge", *parts, "-o", merged, "--json")
    assert_ran(result)
    summary = json.loads(result.output)
    assert summary["copied"] == summary["shards"] and summary["linked"] == 0  # server-side
    assert_ran(_cli(*_args(source, llama_like, str(tmp_path / "single"))))
    files, single = _objects(s3_bucket, "merged"), _local(tmp_path / "single")
    assert _rows(files) == _rows(single)
    assert json.loads(files[MANIFEST_NAME])["totals"] == json.loads(single[MANIFEST_NAME])["totals"]
    # The merged output is finished: a second merge into it is refused.
    assert_one_line(_cli("merge", *parts, "-o", merged), 2, merged)
    # The parts' bytes, read again from the store, are what they recorded; then one is not.
    assert_ran(_cli("merge", *parts, "-o", f"{merged}-checked", "--check-input-bytes"))
    _put(s3_bucket, "in.jsonl", source.read_bytes().replace(b"e", b"E", 1))
    result = _cli("merge", *parts, "-o", f"{merged}-stale", "--check-input-bytes")
    assert_one_line(result, 2, url, "part 0")


def test_a_failed_merge_on_s3_leaves_no_complete_looking_shard(s3_bucket, source, llama_like):
    parts = [f"s3://{s3_bucket}/part{i}" for i in range(2)]
    for index, part in enumerate(parts):
        assert_ran(_cli(*_args(source, llama_like, part, "--num-parts", 2, "--part-index", index)))
    # Part 1's shard rewritten after its manifest (same rows, other bytes): the merge finds it
    # as it copies it, after part 0's shard was already copied.
    s3 = boto3.client("s3")
    key = "part1/data-00000.parquet"
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()))
    rewritten = io.BytesIO()
    pq.write_table(table, rewritten, compression="gzip")
    _put(s3_bucket, key, rewritten.getvalue())
    result = _cli("merge", *parts, "-o", f"s3://{s3_bucket}/merged")
    assert_one_line(result, 1, "part1/data-00000.parquet", "sha256")
    assert _objects(s3_bucket, "merged") == {}


# ----------------------------------------------------------------------------- storage options


def test_storage_options_come_from_the_flag_or_the_variable(
    s3_server, s3_bucket, source, llama_like, monkeypatch
):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    out = f"s3://{s3_bucket}/out"
    flag = ["--storage-option", f"s3:endpoint_url={s3_server.endpoint}"]
    assert_ran(_cli(*_args(source, llama_like, out, *flag)))
    monkeypatch.setenv("MASKPREP_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3_server.endpoint}))
    assert_ran(_cli(*_args(source, llama_like, out, "--resume")))
    monkeypatch.setenv("MASKPREP_STORAGE_OPTIONS", "{not json")
    assert_one_line(
        _cli(*_args(source, llama_like, out, "--resume")), 2, "MASKPREP_STORAGE_OPTIONS"
    )
    monkeypatch.delenv("MASKPREP_STORAGE_OPTIONS")
    assert_one_line(
        _cli(*_args(source, llama_like, out, "--storage-option", "novalue")), 2, "novalue"
    )


def test_an_output_in_a_missing_bucket_is_one_line(s3_server, source, llama_like):
    result = _cli(*_args(source, llama_like, "s3://maskprep-no-such-bucket/out"))
    assert_one_line(result, 2, "s3://maskprep-no-such-bucket", "no such bucket")
