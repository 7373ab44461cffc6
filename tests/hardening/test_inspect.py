"""#14, inspect: what it must not pass (ids outside the vocabulary, a manifest that disagrees
with the disk or with itself, an unknown strategy, the pad == EOS trap on foreign shards,
padding attended), what it must infer, how skipped checks count, and bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import (
    MANIFEST,
    assert_no_traceback,
    assert_ok,
    child_env,
    cli,
    edit_manifest,
    read_json,
    rehash_shards,
)

pytestmark = pytest.mark.integration

BOS, EOS, PAD = 1, 2, 3
DOCS = [[BOS, 5, 6, 7, EOS], [BOS, 8, 9, EOS], [BOS, 10, 11, 12, 13, EOS], [BOS, 14, EOS]]
WIDTH = 8


def _report(result) -> dict:
    assert_no_traceback(result)
    return json.loads(result.stdout)


def _failing(report: dict) -> set[str]:
    return {c["name"] for c in report["checks"] if c["status"] == "fail"}


def _write(path, rows: list[dict]) -> None:
    fields = [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("attention_mask", pa.list_(pa.int8())),
        pa.field("labels", pa.list_(pa.int32())),
    ]
    if "length" in rows[0]:
        fields.append(pa.field("length", pa.int32()))
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), path)


def _padded(pad_id: int, *, eos_trained: bool, with_length: bool = True) -> list[dict]:
    """Right-padded rows of DOCS. ``eos_trained=False`` is the pad == EOS trap: labels made by
    comparing ids with the pad id, so every real EOS is -100 (as a value-based collator does)."""
    rows = []
    for doc in DOCS:
        ids = doc + [pad_id] * (WIDTH - len(doc))
        mask = [1] * len(doc) + [0] * (WIDTH - len(doc))
        labels = [
            t if m and (eos_trained or t != pad_id) else -100
            for t, m in zip(ids, mask, strict=True)
        ]
        row = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if with_length:
            row["length"] = sum(mask)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- builds tampered


def _set_token(out, value: int) -> None:
    """Put ``value`` at a trained real position of the first row (label too, so labels still
    equal inputs and the manifest's counts still hold), then re-hash the shard."""
    shard = out / "data-00000.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    assert rows[0]["attention_mask"][1] == 1 and rows[0]["labels"][1] != -100
    rows[0]["input_ids"][1] = value
    rows[0]["labels"][1] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    rehash_shards(out)


def test_negative_token_ids_fail(finished_copy):
    _set_token(finished_copy, -5)
    result = cli("inspect", finished_copy, "--json")
    assert result.code == 1
    assert _failing(_report(result)) - {"shards_match_manifest"}


def test_token_ids_past_the_vocabulary_fail(finished_copy):
    vocab = read_json(finished_copy / MANIFEST)["tokenizer"]["vocab_size"]
    _set_token(finished_copy, vocab + 5)
    result = cli("inspect", finished_copy, "--json")
    assert result.code == 1
    assert _failing(_report(result)) - {"shards_match_manifest"}


def test_untampered_build_passes(finished):
    """Negative control for the tampering tests: the same build, untouched, passes --strict."""
    assert_ok(cli("inspect", finished, "--strict"))


def test_manifest_listing_no_shards_while_shards_are_on_disk_fails(finished_copy):
    edit_manifest(finished_copy, lambda m: m.update(shards=[]))
    result = cli("inspect", finished_copy)
    assert_no_traceback(result)
    assert result.code == 1, result.text


@pytest.mark.parametrize("key, delta", [("records_read", 7), ("rows_written", 3)])
def test_totals_that_break_the_accounting_identity_fail(finished_copy, key, delta):
    edit_manifest(finished_copy, lambda m: m["totals"].update({key: m["totals"][key] + delta}))
    result = cli("inspect", finished_copy)
    assert_no_traceback(result)
    assert result.code == 1, result.text


def test_unknown_strategy_in_the_manifest_fails_naming_it(finished_copy):
    edit_manifest(finished_copy, lambda m: m["config"]["shape"].update(strategy="zigzag"))
    result = cli("inspect", finished_copy)
    assert_no_traceback(result)
    assert result.code == 1, result.text
    assert "zigzag" in result.text


# ----------------------------------------------------------------------------- foreign shards


def test_foreign_shard_without_length_shows_the_pad_eos_trap(tmp_path):
    path = tmp_path / "foreign.parquet"
    _write(path, _padded(EOS, eos_trained=False, with_length=False))
    result = cli("inspect", path, "--json")
    assert "missing column" not in result.stderr
    report = _report(result)
    assert result.code == 1 and report["ok"] is False
    assert _failing(report)


def test_foreign_shard_without_length_is_checked_from_its_mask(tmp_path):
    path = tmp_path / "foreign.parquet"
    _write(path, _padded(PAD, eos_trained=True, with_length=False))
    assert_ok(cli("inspect", path))


def test_pad_eos_trap_is_inferred_without_an_eos_id(tmp_path):
    path = tmp_path / "foreign.parquet"
    _write(path, _padded(EOS, eos_trained=False))
    result = cli("inspect", path, "--json")
    report = _report(result)
    assert result.code == 1 and _failing(report), report["checks"]


def test_pad_eos_trap_is_caught_with_an_eos_id(tmp_path):
    """What the inference must match: told the EOS id, inspect already sees the trap."""
    path = tmp_path / "foreign.parquet"
    _write(path, _padded(EOS, eos_trained=False))
    result = cli("inspect", path, "--eos-id", str(EOS), "--json")
    assert result.code == 1
    assert "eos_masked_by_value" in _failing(_report(result))


def test_pad_equal_eos_with_eos_trained_passes_without_an_eos_id(tmp_path):
    """Negative control for the inference: pad == EOS, but every real EOS is trained."""
    path = tmp_path / "foreign.parquet"
    _write(path, _padded(EOS, eos_trained=True))
    assert_ok(cli("inspect", path))


def _all_ones(pad_id: int) -> list[dict]:
    """Rows padded with ``pad_id`` whose mask is all ones: the padding is attended."""
    rows = []
    for doc in DOCS:
        ids = doc + [pad_id] * (WIDTH - len(doc))
        labels = doc + [-100] * (WIDTH - len(doc))
        rows.append(
            {"input_ids": ids, "attention_mask": [1] * WIDTH, "labels": labels, "length": WIDTH}
        )
    return rows


def test_all_ones_mask_over_trailing_pad_ids_fails_when_the_pad_id_is_known(tmp_path):
    path = tmp_path / "foreign.parquet"
    _write(path, _all_ones(PAD))
    result = cli("inspect", path, "--pad-id", str(PAD), "--json")
    report = _report(result)
    assert result.code == 1 and _failing(report), report["checks"]


def test_all_ones_mask_without_trailing_pad_ids_passes(tmp_path):
    """Negative control: full rows (no pad id at their end) with an all-ones mask are fine."""
    rows = [
        {"input_ids": [BOS, 5, 6, 7, 8, 9, 10, EOS], "attention_mask": [1] * WIDTH,
         "labels": [BOS, 5, 6, 7, 8, 9, 10, EOS], "length": WIDTH}
    ] * 3  # fmt: skip
    path = tmp_path / "full.parquet"
    _write(path, rows)
    assert_ok(cli("inspect", path, "--pad-id", str(PAD), "--eos-id", str(EOS)))


# ----------------------------------------------------------------------------- skipped checks


@pytest.fixture
def uninformative(tmp_path):
    """A foreign shard that tells nothing of EOS or pad: full rows of plain ids, all trained."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(4):
        ids = [int(i) for i in rng.choice(np.arange(10, 200), size=WIDTH, replace=False)]
        rows.append(
            {"input_ids": ids, "attention_mask": [1] * WIDTH, "labels": ids, "length": WIDTH}
        )
    path = tmp_path / "plain.parquet"
    _write(path, rows)
    return path


def test_checks_skipped_for_lack_of_information_fail_under_strict(uninformative):
    assert cli("inspect", uninformative).code == 0
    result = cli("inspect", uninformative, "--strict")
    assert_no_traceback(result)
    assert result.code == 1, result.text


def test_skipped_checks_are_counted_apart_from_checks_run(uninformative):
    report = _report(cli("inspect", uninformative, "--json"))
    total = len(report["checks"])
    assert any(c["status"] == "skip" for c in report["checks"])
    verdict = cli("inspect", uninformative).stdout.strip().splitlines()[-1]
    assert "skip" in verdict.lower(), verdict
    assert f"{total} run" not in verdict, verdict


# ----------------------------------------------------------------------------- bounded memory


def _synthetic(path, rows: int) -> None:
    """``rows`` rows of 4 ids, written without Python loops (2 M rows in about a second)."""
    width = 4
    ids = np.tile(np.array([BOS, 5, 6, EOS], np.int32), rows)
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    labels = ids.copy()
    labels[0::width] = -100
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
            "attention_mask": pa.ListArray.from_arrays(
                offsets, pa.array(np.ones(rows * width, np.int8))
            ),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
            "length": pa.array(np.full(rows, width, np.int32)),
        }
    )
    pq.write_table(table, path, row_group_size=1 << 16)


def _peak_rss_mb(*args) -> float:
    """Peak resident memory of ``python -m maskprep ARGS``, measured from a fresh parent."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False)\n"
        "assert done.returncode == 0, done.returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    command = [sys.executable, "-c", probe, sys.executable, "-m", "maskprep", *map(str, args)]
    completed = subprocess.run(command, capture_output=True, env=child_env(), check=True)
    return int(completed.stdout) / 1024


def test_inspect_memory_does_not_grow_with_the_rows(tmp_path):
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    _synthetic(small, 100_000)
    _synthetic(large, 2_000_000)
    growth = _peak_rss_mb("inspect", large) - _peak_rss_mb("inspect", small)
    # 1.9 M more rows: at 75 bytes a row that is 140 MB; streamed, a few MB.
    assert growth < 50, f"peak memory grew by {growth:.0f} MB for 1.9 M more rows"
