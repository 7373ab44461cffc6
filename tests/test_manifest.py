"""The typed manifest: written once, read back with validation by every reader, under file names
that dataset readers skip."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import make_config, write_jsonl

from maskprep import DataError, PartSpec, build, inspect, merge, read_manifest
from maskprep.errors import ManifestError
from maskprep.output.finished import shard_paths
from maskprep.output.manifest import Manifest, load_manifest, manifest_problems
from maskprep.output.names import (
    MANIFEST_NAME,
    REJECTS_NAME,
    is_shard_name,
)


@pytest.fixture(scope="module")
def docs(tmp_path_factory, corpus):
    directory = tmp_path_factory.mktemp("docs")
    records = [{"text": f"{t} {i}"} for i, t in enumerate(corpus * 3)]
    return write_jsonl(directory / "in.jsonl", [*records[:5], '{"broken', *records[5:]])


def _build(out, docs, tokenizer, **options):
    options.setdefault("pad_token", "eos")
    options.setdefault("on_bad_record", "skip")
    return build(make_config([docs], tokenizer, out, max_length=16, **options))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, docs, llama_like):
    """A pad, a pack and a merged (3 parts) output of the same input, several shards each."""
    root = tmp_path_factory.mktemp("outputs")
    made = {
        "pad": _build(root / "pad", docs, llama_like, shard_rows=10).output,
        "pack": _build(root / "pack", docs, llama_like, strategy="pack", shard_rows=3).output,
    }
    parts = [
        _build(root / f"part{i}", docs, llama_like, shard_rows=7, part=PartSpec(i, 3)).output
        for i in range(3)
    ]
    made["merged"] = merge(parts, root / "merged").output
    made["parts"] = parts
    return made


# ------------------------------------------------------------------ dataset readers read DIR as is


@pytest.mark.parametrize("kind", ["pad", "pack", "merged"])
def test_pyarrow_dataset_reads_every_row_of_an_output_directory(outputs, kind):
    directory = outputs[kind]
    assert {p.name for p in directory.iterdir()} >= {MANIFEST_NAME, REJECTS_NAME}
    table = ds.dataset(directory, format="parquet").to_table()
    manifest = read_manifest(directory)
    assert table.num_rows == manifest.totals.rows_written > 0
    # The rows, in shard order, are the shards' rows: nothing read twice or skipped.
    expected = pa.concat_tables(pq.read_table(p) for p in shard_paths(directory))
    assert table.to_pylist() == expected.to_pylist()


def test_pyarrow_dataset_reads_an_arrow_output(tmp_path, docs, llama_like):
    out = _build(tmp_path / "arrow", docs, llama_like, format="arrow", shard_rows=9).output
    table = ds.dataset(out, format="ipc").to_table()
    assert table.num_rows == read_manifest(out).totals.rows_written


def test_a_manifest_name_without_underscore_breaks_pyarrow_dataset(outputs, tmp_path):
    """Negative control: the check above can fail. With the manifest under a name dataset
    readers do not skip, the directory does not read as a dataset."""
    old = shutil.copytree(outputs["pad"], tmp_path / "old")
    (old / MANIFEST_NAME).rename(old / "maskprep.json")
    with pytest.raises(pa.ArrowInvalid):
        ds.dataset(old, format="parquet").to_table()


# ------------------------------------------------------------------------ reading with validation


def test_a_manifest_reads_back_equal_to_what_was_written(outputs):
    for kind in ("pad", "pack", "merged"):
        path = outputs[kind] / MANIFEST_NAME
        manifest = load_manifest(path)
        assert isinstance(manifest, Manifest)
        rewritten = json.dumps(manifest.as_dict(), indent=2, sort_keys=True, ensure_ascii=False)
        assert rewritten + "\n" == path.read_text(encoding="utf-8")
        assert manifest_problems(manifest, outputs[kind]) == []


def _tampered(outputs, tmp_path, change):
    out = shutil.copytree(outputs["pad"], tmp_path / "tampered")
    data = json.loads((out / MANIFEST_NAME).read_text())
    change(data)
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    return out


BROKEN = {
    "missing key": (lambda m: m["totals"].pop("rows_written"), "totals.rows_written: missing"),
    "wrong type": (
        lambda m: m["shards"][0].update(rows="many"),
        'shards[0].rows: expected an integer, got "many"',
    ),
    "bool for an int": (
        lambda m: m["shards"][1].update(positions=True),
        "shards[1].positions: expected an integer, got true",
    ),
    "absolute path": (
        lambda m: m["shards"][0].update(path="/etc/passwd"),
        "shards[0].path: '/etc/passwd' is not a plain shard name",
    ),
    "parent path": (
        lambda m: m["shards"][1].update(path="../data-00000.parquet"),
        "shards[1].path: '../data-00000.parquet' is not a plain shard name",
    ),
    "subdirectory": (
        lambda m: m["shards"][0].update(path="sub/data-00000.parquet"),
        "is not a plain shard name",
    ),
    "not a shard": (
        lambda m: m["shards"][0].update(path="notes.txt"),
        "shards[0].path: 'notes.txt' is not a plain shard name",
    ),
    "listed twice": (
        lambda m: m["shards"][1].update(path=m["shards"][0]["path"]),
        "shards[1].path: data-00000.parquet listed twice",
    ),
    "newer format": (lambda m: m.update(format=2), "format: 2 is newer than this maskprep"),
    "config not an object": (
        lambda m: m.update(config=[1]),
        "config: expected an object, got a list",
    ),
    "unknown shard format": (
        lambda m: m["config"]["output"].update(format="csv"),
        "config.output.format: unknown shard format 'csv'",
    ),
    "tokenizer field": (
        lambda m: m["tokenizer"].update(pad_token_id="0"),
        'tokenizer.pad_token_id: expected an integer, got "0"',
    ),
    # Characters str.splitlines breaks at that JSON leaves as they are: escaped in the message.
    "line separators in a value": (
        lambda m: m["shards"][0].update(rows="a\u2028b\x85c\x1ed"),
        'shards[0].rows: expected an integer, got "a\\u2028b\\x85c\\u001ed"',
    ),
    "newline in a value shown as it is": (
        lambda m: m["config"]["output"].update(format="csv\nx"),
        "config.output.format: unknown shard format 'csv\\nx'",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_manifest_is_one_error_naming_the_file_and_field(outputs, tmp_path, case):
    change, message = BROKEN[case]
    out = _tampered(outputs, tmp_path, change)
    with pytest.raises(ManifestError) as raised:
        read_manifest(out)
    assert str(out / MANIFEST_NAME) in str(raised.value)
    assert message in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1, str(raised.value)
    with pytest.raises(ManifestError, match=re.escape(message)):
        inspect(str(out))


def test_a_manifest_error_is_one_line_whatever_the_file_is_called(outputs, tmp_path):
    out = tmp_path / "we\nird\u2028name"
    shutil.copytree(outputs["pad"], out)
    manifest = out / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": "one"'))
    with pytest.raises(ManifestError) as raised:
        read_manifest(out)
    assert len(str(raised.value).splitlines()) == 1, str(raised.value)
    assert "we\\nird\\u2028name" in str(raised.value)
    assert raised.value.path == str(manifest)  # the attribute keeps the name as it is


def test_the_shard_name_rule():
    assert is_shard_name("data-00000.parquet") and is_shard_name("data-123456.arrow")
    refused = [
        "",
        "data-.parquet",
        "data-00000.csv",
        "/data-00000.parquet",
        "data-0/1.arrow",
        "..",
        "x/../data-00000.parquet",
        "data-00000.parquet\n",
        "DATA-00000.parquet",
    ]
    for name in refused:
        assert not is_shard_name(name), name


# ------------------------------------------------------------- what reads fine but does not add up


PROBLEMS = {
    "unknown strategy": (
        lambda m: m["config"]["shape"].update(strategy="zip"),
        "config.shape.strategy: unknown strategy 'zip'",
    ),
    "accounting": (
        lambda m: m["totals"].update(records_read=m["totals"]["records_read"] + 3),
        "totals.records_read:",
    ),
    "totals against shards": (
        lambda m: m["totals"].update(label_tokens=m["totals"]["label_tokens"] - 1),
        "totals.label_tokens:",
    ),
    "shards unlisted": (lambda m: m["shards"].pop(), "shards: 1 shard file(s) in the directory"),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_a_manifest_that_does_not_add_up_fails_inspect_naming_the_field(outputs, tmp_path, case):
    change, field = PROBLEMS[case]
    out = _tampered(outputs, tmp_path, change)
    if case == "shards unlisted":  # the shard sums must still agree: only the listing is wrong
        data = json.loads((out / MANIFEST_NAME).read_text())
        listed = data["shards"]
        for total, key in (("rows_written", "rows"), ("positions", "positions")):
            data["totals"][total] = sum(s[key] for s in listed)
        for key in ("real_tokens", "label_tokens"):
            data["totals"][key] = sum(s[key] for s in listed)
        (out / MANIFEST_NAME).write_text(json.dumps(data))
    problems = [str(p) for p in manifest_problems(read_manifest(out), out)]
    assert any(field in p for p in problems), problems
    result = inspect(str(out))
    check = next(c for c in result.checks if c.name == "manifest_consistent")
    assert check.status == "fail" and field in check.detail
    assert not result.ok


def test_an_intact_manifest_passes_the_consistency_check(outputs):
    """Negative control for the planted problems above."""
    result = inspect(str(outputs["merged"]))
    check = next(c for c in result.checks if c.name == "manifest_consistent")
    assert check.status == "pass" and result.ok


def test_resume_refuses_a_finished_output_that_does_not_add_up(outputs, tmp_path, docs, llama_like):
    out = _tampered(outputs, tmp_path, PROBLEMS["accounting"][0])
    with pytest.raises(DataError, match=r"totals\.records_read"):
        _build(out, docs, llama_like, shard_rows=10, resume=True)
