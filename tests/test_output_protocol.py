"""The commit protocol on a local directory, step by step: what a signal racing a publish leaves,
a crash in the middle of an overwrite's swap, leftovers of dead writers, merge's output side
(links in parts, a failed overwrite of a merged output), and the lease lost mid-build on S3."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import make_config, write_jsonl

from maskprep import build, storage
from maskprep.distributed.merge import merge
from maskprep.errors import ConfigError, DataError, IOFailure, OutputError
from maskprep.output import session as session_module
from maskprep.output.directory import Action, plan, scan
from maskprep.output.names import LOCK_NAME, MANIFEST_NAME
from maskprep.storage import writers

OPTIONS = dict(pad_token="eos", shard_rows=20, max_length=16)


@pytest.fixture
def source(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [{"text": f"doc {i} " + "w " * (i % 5)}
                                               for i in range(60)])  # fmt: skip


def _names(directory) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _interrupt_after(monkeypatch, name: str, on_path: str) -> None:
    """``os.NAME`` runs, and when its (last) path argument contains ``on_path`` raises
    KeyboardInterrupt right after doing its work: a Ctrl-C landing between an operation and the
    bookkeeping that follows."""
    real = getattr(os, name)

    def interrupted(*args, **kwargs):
        result = real(*args, **kwargs)
        paths = [a for a in args if isinstance(a, str)]
        if paths and on_path in paths[-1]:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(os, name, interrupted)


# ----------------------------------------------------------------------------- signals


def test_a_signal_right_after_a_shard_is_renamed_leaves_no_orphan(
    tmp_path, source, llama_like, monkeypatch
):
    out = tmp_path / "out"
    # os.replace publishes a shard: the second one is published, then the signal lands.
    _interrupt_after(monkeypatch, "replace", on_path="/data-00001.parquet")
    with pytest.raises(KeyboardInterrupt):
        build(make_config([source], llama_like, out, **OPTIONS))
    # An interrupted build keeps the shards it had recorded complete (for a resume); the one
    # whose rename the signal raced is not left behind unrecorded. No temporary, no lock.
    assert _names(out) == ["data-00000.parquet"]
    monkeypatch.undo()
    _assert_resumes_to_a_clean_build(tmp_path, source, llama_like, out, reused=1)


def _assert_resumes_to_a_clean_build(tmp_path, source, llama_like, out, reused: int) -> None:
    resumed = build(make_config([source], llama_like, out, resume=True, **OPTIONS))
    assert resumed.reused_shards == reused
    clean = tmp_path / "clean"
    build(make_config([source], llama_like, clean, **OPTIONS))
    assert {n: (out / n).read_bytes() for n in _names(out)} == {
        n: (clean / n).read_bytes() for n in _names(clean)
    }


def test_negative_control_the_race_point_is_reached(tmp_path, source, llama_like, monkeypatch):
    """Without the interrupt the same build publishes three shards through os.replace (so the
    test above interrupts a real publish, the second of them)."""
    published = []
    real = writers.os.replace
    monkeypatch.setattr(writers.os, "replace", lambda a, b: (published.append(b), real(a, b)))
    build(make_config([source], llama_like, tmp_path / "out", **OPTIONS))
    assert [os.path.basename(p) for p in published][:3] == [
        "data-00000.parquet", "data-00001.parquet", "data-00002.parquet"
    ]  # fmt: skip


def test_a_signal_while_a_temporary_is_being_opened_leaves_no_temporary(
    tmp_path, source, llama_like, monkeypatch
):
    out = tmp_path / "out"
    # The second shard's temporary is created, then the signal lands.
    _interrupt_after(monkeypatch, "open", on_path="/.tmp-data-00001.parquet.")
    with pytest.raises(KeyboardInterrupt):
        build(make_config([source], llama_like, out, **OPTIONS))
    assert _names(out) == ["data-00000.parquet"]  # the temporary went with the interrupt
    monkeypatch.undo()
    _assert_resumes_to_a_clean_build(tmp_path, source, llama_like, out, reused=1)


# ----------------------------------------------------------------------------- overwrite's swap


def test_a_crash_in_the_middle_of_the_swap_never_leaves_a_finished_looking_output(
    tmp_path, source, llama_like, monkeypatch
):
    out = tmp_path / "out"
    build(make_config([source], llama_like, out, **OPTIONS))
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": f"other {i}"} for i in range(45)])
    real_move = session_module._move
    moved = []

    def crash_on_second(source_location, target):
        if moved:
            raise OSError(5, "Input/output error")  # the disk gives out mid-swap
        moved.append(target.name)
        real_move(source_location, target)

    monkeypatch.setattr(session_module, "_move", crash_on_second)
    with pytest.raises(IOFailure, match="Input/output error"):
        build(make_config([other], llama_like, out, overwrite=True, **OPTIONS))
    left = _names(out)
    assert MANIFEST_NAME not in left, left  # unfinished, never finished-looking
    assert not [n for n in left if n.startswith((".staging-", ".tmp-"))] and LOCK_NAME not in left
    with pytest.raises(OutputError, match="unfinished build"):
        build(make_config([other], llama_like, out, **OPTIONS))
    monkeypatch.setattr(session_module, "_move", real_move)
    result = build(make_config([other], llama_like, out, overwrite=True, **OPTIONS))
    assert result.totals.records_read == 45
    assert _names(out) == sorted(
        ["data-00000.parquet", "data-00001.parquet", "data-00002.parquet", MANIFEST_NAME]
    )


def test_a_dead_overwrites_staging_directory_is_removed_by_the_next_writer(
    tmp_path, source, llama_like
):
    out = tmp_path / "out"
    build(make_config([source], llama_like, out, **OPTIONS))
    staging = out / ".staging-0123456789abcdef"
    staging.mkdir()
    (staging / "data-00000.parquet").write_bytes(b"half of a new output")
    state = scan(storage.parse_location(str(out)))
    assert state.leftovers == [staging.name] and state.foreign == []
    result = build(make_config([source], llama_like, out, resume=True, **OPTIONS))
    assert result.reused_shards == 3
    assert not staging.exists()


def test_a_directory_that_only_looks_like_staging_is_foreign(tmp_path, source, llama_like):
    """Negative control: only maskprep's exact staging names are its leftovers."""
    out = tmp_path / "out"
    (out / ".staging-mine").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"did not write \(\.staging-mine\)"):
        build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert (out / ".staging-mine").is_dir()


def test_legacy_temporaries_are_leftovers_and_planted_links_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-data-00000.parquet").write_bytes(b"from maskprep before the storage layer")
    state = scan(storage.parse_location(str(out)))
    assert state.leftovers == [".tmp-data-00000.parquet"]
    assert plan(state, overwrite=False, resume=False) is Action.WRITE
    (out / "data-00001.parquet").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=r"data-00001\.parquet: is a symbolic link"):
        plan(scan(storage.parse_location(str(out))), overwrite=True, resume=False)


def test_an_unfinished_build_with_a_foreign_file_named_like_a_shard_is_not_overwritten(
    tmp_path, source, llama_like
):
    out = tmp_path / "out"
    build(make_config([source], llama_like, out, **OPTIONS))
    (out / MANIFEST_NAME).unlink()  # as if the build had died before it
    (out / "data-00003.parquet").write_bytes(b"someone else's file")
    with pytest.raises(OutputError, match=r"did not write \(data-00003\.parquet\)"):
        build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert (out / "data-00003.parquet").read_bytes() == b"someone else's file"
    assert (out / "data-00000.parquet").is_file()  # nothing was removed before refusing
    (out / "data-00003.parquet").unlink()  # negative control: the build's own shards go
    build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert (out / MANIFEST_NAME).is_file()


# ----------------------------------------------------------------------------- merge's output


@pytest.fixture
def parts(tmp_path, source, llama_like):
    from maskprep import PartSpec

    made = []
    for index in range(2):
        out = tmp_path / f"part{index}"
        build(make_config([source], llama_like, out, part=PartSpec(index, 2), **OPTIONS))
        made.append(out)
    return made


def test_merge_never_links_a_symbolic_link_of_a_part_into_its_output(tmp_path, parts):
    shard = parts[1] / "data-00000.parquet"
    moved = tmp_path / "moved.parquet"
    shutil.move(shard, moved)
    shard.symlink_to(moved)
    out = tmp_path / "merged"
    with pytest.raises(ConfigError, match=r"part1/data-00000\.parquet: .* not a file"):
        merge(parts, out)
    assert _names(out) == []


def test_a_failed_merge_overwrite_keeps_the_previous_merged_output(tmp_path, parts):
    out = tmp_path / "merged"
    merge(parts, out)
    before = {name: (out / name).read_bytes() for name in _names(out)}
    # Part 1's shard rewritten (same rows, other bytes): found as it is placed, after part 0's.
    shard = parts[1] / "data-00000.parquet"
    pq.write_table(pq.read_table(shard), shard.with_name("x.parquet"), compression="gzip")
    os.replace(shard.with_name("x.parquet"), shard)
    with pytest.raises(DataError, match="does not match the sha256"):
        merge(parts, out, overwrite=True)
    assert {name: (out / name).read_bytes() for name in _names(out)} == before


def test_merge_overwrite_replaces_a_merged_output(tmp_path, parts):
    """Negative control: with every part intact the overwrite goes through, nothing left aside."""
    out = tmp_path / "merged"
    merge(parts, out)
    result = merge(parts, out, overwrite=True)
    expected = [f"data-0000{i}.parquet" for i in range(result.shards)] + [MANIFEST_NAME]
    assert _names(out) == sorted(expected)


# ----------------------------------------------------------------------------- lease lost (S3)


def test_a_build_whose_lease_is_taken_over_stops_without_a_manifest(s3_bucket, source, llama_like):
    import time

    import boto3

    from maskprep.storage.lease import LeaseRecord

    s3 = boto3.client("s3")
    thief = LeaseRecord("another-writer", "elsewhere", 1, 60.0, time.time()).to_bytes()

    def steal(progress) -> None:
        s3.put_object(Bucket=s3_bucket, Key=f"out/{LOCK_NAME}", Body=thief)
        time.sleep(0.4)  # past a third of the lease's time to live: the next batch renews

    config = make_config([source], llama_like, f"s3://{s3_bucket}/out", batch_size=10, **OPTIONS)
    with pytest.raises(storage.LeaseLost, match="taken over"):
        build(config, on_progress=steal, lease_ttl=1.0)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == [f"out/{LOCK_NAME}"]  # the thief's lock; no shard, no manifest
    assert json.loads(s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read())["pid"] == 1


# ----------------------------------------------------------------------------- resume, finished


def test_resume_of_a_finished_output_names_an_input_that_joined_its_directory(tmp_path, llama_like):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", [{"text": f"a {i}"} for i in range(5)])
    out = tmp_path / "out"
    build(make_config([inputs], llama_like, out, **OPTIONS))
    before = {name: (out / name).read_bytes() for name in _names(out)}
    again = build(make_config([inputs], llama_like, out, resume=True, **OPTIONS))
    assert again.reused_shards == 1  # negative control: unchanged, returned as it is
    write_jsonl(inputs / "b.jsonl", [{"text": "late"}])
    with pytest.raises(OutputError, match=r"b\.jsonl: an input the build in .* did not read"):
        build(make_config([inputs], llama_like, out, resume=True, **OPTIONS))
    assert {name: (out / name).read_bytes() for name in _names(out)} == before


def test_resume_of_a_finished_merged_output_checks_every_parts_ranges(
    tmp_path, source, llama_like, parts
):
    out = tmp_path / "merged"
    merged = merge(parts, out)
    result = build(make_config([source], llama_like, out, resume=True, **OPTIONS))
    assert result.reused_shards == merged.shards  # returned as it is
    with open(source, "a") as handle:
        handle.write(json.dumps({"text": "appended"}) + "\n")
    with pytest.raises(OutputError, match=r"in\.jsonl: changed since the build"):
        build(make_config([source], llama_like, out, resume=True, **OPTIONS))


def test_load_dataset_of_an_object_store_output_is_a_clear_error():
    from maskprep.output.dataset import shard_paths

    with pytest.raises(ConfigError, match=r"s3://bucket/out: a local output directory is needed"):
        shard_paths("s3://bucket/out")
