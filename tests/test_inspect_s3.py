"""``inspect`` and ``verify`` read what a build wrote to object storage, through the same reader as
local data, against a real S3-protocol server (moto on loopback, reached through the standard AWS
variables or ``--storage-option``), never a mock of the client.

Each reader path has a hostile case (an edited, truncated or missing shard object, an unfinished
prefix, a URL that names nothing) and a negative control (the same check passing maskprep's own
output, or the same command on the local copy).
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_kit import assert_one_line, assert_ran, build_args
from click.testing import CliRunner
from conftest import write_jsonl

from maskprep.cli import main
from maskprep.output.names import MANIFEST_NAME

pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
pytest.importorskip("moto", reason="the S3 tests need the test extra (moto)")
boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3)")

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("s3_server")]


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _build(source, tokenizer, out: object, *extra: object):
    return _cli(*build_args(source, tokenizer, out, "--shard-rows", 20, *extra))


def _one_line(result, code: int, *mentions: str) -> str:
    return assert_one_line(result, code, *mentions, stream="stderr")


def _report(result, code: int = 0) -> dict:
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def _statuses(report: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in report["checks"]}


def _put(bucket: str, key: str, data: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def _get(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def source(tmp_path):
    """50 JSONL records: three shards of at most 20 rows."""
    records = [{"text": f"document {i} " + "word " * (i % 7)} for i in range(50)]
    return write_jsonl(tmp_path / "in.jsonl", records)


@pytest.fixture
def outputs(s3_bucket, source, llama_like, tmp_path) -> tuple[str, str]:
    """The same build written to ``s3://BUCKET/out`` and to a local directory."""
    assert_ran(_build(source, llama_like, f"s3://{s3_bucket}/out"))
    assert_ran(_build(source, llama_like, tmp_path / "local"))
    return f"s3://{s3_bucket}/out", str(tmp_path / "local")


def _same_findings(remote: dict, local: dict) -> None:
    """Everything inspect found, apart from where it read it and how long it took."""
    for report in (remote, local):
        report.pop("elapsed_s", None)
        summary = report["summary"]
        summary.pop("source")
        summary["shards"] = [name.rsplit("/", 1)[-1] for name in summary["shards"]]
    assert remote == local


# ----------------------------------------------------------------------------- inspect


def test_inspect_of_an_s3_output_finds_what_it_finds_locally(outputs):
    remote, local = outputs
    for given in (remote, remote + "/"):
        report = _report(_cli("inspect", given, "--json"))
        assert report["summary"]["shards"] == [f"{remote}/data-0000{i}.parquet" for i in range(3)]
        assert set(_statuses(report).values()) <= {"pass", "skip"}, _statuses(report)
        assert _statuses(report)["shards_match_manifest"] == "pass"
        assert _statuses(report)["manifest_consistent"] == "pass"
    _same_findings(
        _report(_cli("inspect", remote, "--json")), _report(_cli("inspect", local, "--json"))
    )


def test_an_edited_shard_object_fails_inspect(outputs, s3_bucket):
    """A shard replaced after the build by valid Parquet with one label changed: the sha256 and
    the counts no longer match the manifest (exit 1). The untouched output is the control."""
    remote, _ = outputs
    _report(_cli("inspect", remote, "--json"), 0)
    key = "out/data-00001.parquet"
    table = pq.read_table(io.BytesIO(_get(s3_bucket, key)))
    rows = table.to_pylist()
    rows[3]["labels"] = list(rows[3]["input_ids"])  # train on the padding too
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), sink)
    _put(s3_bucket, key, sink.getvalue())
    report = _report(_cli("inspect", remote, "--json"), 1)
    assert _statuses(report)["shards_match_manifest"] == "fail"
    assert f"{remote}/data-00001.parquet" in json.dumps(report)


def test_a_truncated_shard_object_is_one_line_naming_its_url(outputs, s3_bucket):
    remote, _ = outputs
    key = "out/data-00002.parquet"
    _put(s3_bucket, key, _get(s3_bucket, key)[:-100])
    line = _one_line(_cli("inspect", remote), 1, f"{remote}/data-00002.parquet")
    assert "not a Parquet or Arrow file" in line


def test_a_shard_object_missing_from_its_output_is_one_line(outputs, s3_bucket):
    remote, _ = outputs
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key="out/data-00000.parquet")
    _one_line(_cli("inspect", remote), 2, f"{remote}/data-00000.parquet")


def test_inspect_reads_one_shard_object_and_a_prefix_of_shards(outputs, s3_bucket):
    remote, _ = outputs
    one = _report(_cli("inspect", f"{remote}/data-00001.parquet", "--json"))
    assert one["summary"]["rows_total"] == 20 and one["summary"]["build"] is None
    # Another tool's prefix of shards, no manifest: read in name order.
    for index in (2, 0, 1):
        name = f"data-0000{index}.parquet"
        _put(s3_bucket, f"bare/{name}", _get(s3_bucket, f"out/{name}"))
    bare = _report(_cli("inspect", f"s3://{s3_bucket}/bare", "--json"))
    assert bare["summary"]["rows_total"] == 50
    assert bare["summary"]["shards"] == [
        f"s3://{s3_bucket}/bare/data-0000{i}.parquet" for i in range(3)
    ]
    assert set(_statuses(bare).values()) <= {"pass", "skip"}


def test_an_unfinished_s3_output_is_refused(outputs, s3_bucket):
    """Shards and a writer's record, no manifest: a build is running or died here."""
    _put(s3_bucket, "half/data-00000.parquet", _get(s3_bucket, "out/data-00000.parquet"))
    _put(s3_bucket, "half/.maskprep-writer-00000000000000ab.json", b"{}")
    _one_line(_cli("inspect", f"s3://{s3_bucket}/half"), 1, "did not finish")


def test_an_s3_url_naming_nothing_is_one_line(s3_bucket):
    _one_line(_cli("inspect", f"s3://{s3_bucket}/nothing"), 2, f"s3://{s3_bucket}/nothing")
    _one_line(_cli("inspect", "s3://maskprep-no-such-bucket/out"), 2, "maskprep-no-such-bucket")


def test_a_manifest_with_a_shard_name_climbing_out_is_refused(outputs, s3_bucket):
    """A hostile manifest may not send the reader to another key."""
    remote, _ = outputs
    manifest = json.loads(_get(s3_bucket, f"out/{MANIFEST_NAME}"))
    manifest["shards"][0]["path"] = "../elsewhere/data-00000.parquet"
    _put(s3_bucket, f"out/{MANIFEST_NAME}", json.dumps(manifest).encode())
    _one_line(
        _cli("inspect", remote), 1, f"{remote}/{MANIFEST_NAME}", "shards[0].path", "elsewhere"
    )


def test_inspect_takes_its_storage_options_from_the_flag_or_the_variable(
    outputs, s3_server, monkeypatch
):
    remote, _ = outputs
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    # Negative control: the endpoint from the environment alone reaches nothing.
    flag_for = ("--storage-option", "s3:config_kwargs.retries.max_attempts=1")
    # An endpoint nothing answers at is a failed store (exit 1, docs/cli.md): it may be a network
    # down as well as a wrong option.
    _one_line(_cli("inspect", remote, *flag_for), 1, remote)
    flag = ["--storage-option", f"s3:endpoint_url={s3_server.endpoint}"]
    _report(_cli("inspect", remote, "--json", *flag))
    monkeypatch.setenv("MASKPREP_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3_server.endpoint}))
    _report(_cli("inspect", remote, "--json"))
    monkeypatch.setenv("MASKPREP_STORAGE_OPTIONS", "{not json")
    _one_line(_cli("inspect", remote), 2, "MASKPREP_STORAGE_OPTIONS")
    monkeypatch.delenv("MASKPREP_STORAGE_OPTIONS")
    _one_line(_cli("inspect", remote, "--storage-option", "novalue"), 2, "novalue")


# ----------------------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    pytest.importorskip("torch", reason="needs the verify extra (torch)")
    from rowkit import tiny_config

    path = tmp_path_factory.mktemp("model") / "gpt2"
    tiny_config("gpt2").save_pretrained(path)
    return path


VERIFY = ("--from-config", "--attn-implementation", "eager", "--rows", 4, "--json")


def test_verify_reads_an_s3_output_and_catches_a_leak_there(
    s3_bucket, source, with_pad, gpt2, s3_server, monkeypatch
):
    from rowkit import one_torch_thread

    next(one_torch_thread())
    out = f"s3://{s3_bucket}/v"
    assert_ran(_build(source, with_pad, out))
    report = _report(_cli("verify", out, "-m", gpt2, *VERIFY))
    assert report["ok"] is True
    # The same through --storage-option only.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    flag = ["--storage-option", f"s3:endpoint_url={s3_server.endpoint}"]
    assert _report(_cli("verify", out, "-m", gpt2, *VERIFY, *flag))["ok"] is True
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    # A foreign shard object with labels on the padding of every row: a leak (exit 1).
    table = pq.read_table(io.BytesIO(_get(s3_bucket, "v/data-00000.parquet")))
    rows = table.to_pylist()
    for row in rows:
        row["labels"] = list(row["input_ids"])
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), sink)
    _put(s3_bucket, "leaky/data-00000.parquet", sink.getvalue())
    leaky = _report(_cli("verify", f"s3://{s3_bucket}/leaky/data-00000.parquet", "-m", gpt2,
                         *VERIFY), 1)  # fmt: skip
    assert leaky["ok"] is False
    _one_line(_cli("verify", f"s3://{s3_bucket}/none", "-m", gpt2, *VERIFY), 2, "/none")


# ----------------------------------------------------------------------------- load_dataset


def test_load_dataset_reads_an_s3_output(outputs, s3_bucket, s3_server, monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets", reason="needs the datasets extra")
    import maskprep

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    remote, local = outputs
    expected = maskprep.load_dataset(local).to_list()
    # The tests run with HF_HUB_OFFLINE=1, which datasets takes as "no remote file at all".
    with pytest.raises(maskprep.ConfigError, match="HF_DATASETS_OFFLINE=0"):
        maskprep.load_dataset(remote)
    # What HF_DATASETS_OFFLINE=0 gives (datasets reads it once, at import).
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert maskprep.load_dataset(remote).to_list() == expected
    # Through storage options alone, as datasets takes them (a dict) or as maskprep parses them.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    endpoint = {"endpoint_url": s3_server.endpoint}
    assert maskprep.load_dataset(remote, endpoint).num_rows == len(expected)
    from maskprep.storage import parse_option_items

    parsed = parse_option_items([f"s3:endpoint_url={s3_server.endpoint}"])
    assert maskprep.load_dataset(remote, parsed).num_rows == len(expected)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    # An unfinished output is named before datasets is asked for anything.
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key=f"out/{MANIFEST_NAME}")
    with pytest.raises(maskprep.DataError, match="did not finish"):
        maskprep.load_dataset(remote)


# ----------------------------------------------------------------------------- streaming


def _gets(server, key: str) -> int:
    """GET requests the server has logged for ``key``."""
    return server.requests("GET", f"{key} ")


def test_inspect_fetches_what_it_reads_not_the_whole_object(s3_server, s3_bucket):
    """Read through small read-ahead blocks (a storage option), a sample of one row touches the
    object's first bytes, its footer and one row group: a few ranged requests, where reading
    every row takes many."""
    import numpy as np

    from maskprep import columns

    rng = np.random.default_rng(0)
    rows, width = 20_000, 64
    ids = rng.integers(3, 30_000, size=(rows, width), dtype=np.int32)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
            "attention_mask": pa.ListArray.from_arrays(
                offsets, pa.array(np.ones(ids.size, np.int8))
            ),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
            "length": pa.array(np.full(rows, width, np.int32)),
        },
        schema=columns.schema(),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=500, compression="zstd")
    size = len(sink.getvalue())
    key = f"{s3_bucket}/big/data-00000.parquet"
    _put(s3_bucket, "big/data-00000.parquet", sink.getvalue())
    block = 64 << 10
    small = ("--storage-option", f"s3:default_block_size={block}", "--json")
    before = _gets(s3_server, key)
    _report(_cli("inspect", f"s3://{key}", "--sample", 1, *small))
    sampled = _gets(s3_server, key) - before
    before = _gets(s3_server, key)
    whole = _report(_cli("inspect", f"s3://{key}", *small))
    read_all = _gets(s3_server, key) - before
    assert whole["summary"]["rows_total"] == rows
    # Control: reading every row fetches the object in many ranged requests (about one per
    # column chunk: 40 row groups; one download of the whole object would be one)...
    assert read_all >= 20, (read_all, size, sampled)
    # ...and the sample a small part of it.
    assert sampled * 5 < read_all, (sampled, read_all)
