"""The commit protocol on a local directory, step by step: what a signal racing a publish leaves,
a crash in the middle of an overwrite's switch, leftovers of dead writers, merge's output side
(links in parts, a failed overwrite of a merged output), and a writer overtaken mid-build on S3
(maskprep/output/commit.py states the protocol)."""

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
from maskprep.output import commit
from maskprep.output.commit import Action, OutputRequest, plan
from maskprep.output.directory import scan
from maskprep.output.names import MANIFEST_NAME
from maskprep.storage import writers

OPTIONS = dict(pad_token="eos", shard_rows=20, max_length=16)


@pytest.fixture
def source(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [{"text": f"doc {i} " + "w " * (i % 5)}
                                               for i in range(60)])  # fmt: skip


def _names(directory) -> list[str]:
    """The files of an output, a build's resume points (its hidden scratch) aside."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(n for n in names if not n.startswith(".resume-"))


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


def test_a_signal_right_after_a_shard_is_published_leaves_it_whole_and_no_temporary(
    tmp_path, source, llama_like, monkeypatch
):
    out = tmp_path / "out"
    # os.link publishes a shard (create-if-absent): the second one is published, then the
    # signal lands before its temporary name is unlinked.
    _interrupt_after(monkeypatch, "link", on_path="/data-00001.parquet")
    with pytest.raises(KeyboardInterrupt):
        build(make_config([source], llama_like, out, **OPTIONS))
    # Both published shards are complete and stay (for a resume); the temporary of the one the
    # signal raced is this writer's own, and goes. Nothing else is left.
    assert _names(out) == ["data-00000.parquet", "data-00001.parquet"]
    monkeypatch.undo()
    _assert_resumes_to_a_clean_build(tmp_path, source, llama_like, out, reused=2)


def _assert_resumes_to_a_clean_build(tmp_path, source, llama_like, out, reused: int) -> None:
    resumed = build(make_config([source], llama_like, out, resume=True, **OPTIONS))
    assert resumed.reused_shards == reused
    clean = tmp_path / "clean"
    build(make_config([source], llama_like, clean, **OPTIONS))
    assert {n: (out / n).read_bytes() for n in _names(out)} == {
        n: (clean / n).read_bytes() for n in _names(clean)
    }


def test_negative_control_the_race_point_is_reached(tmp_path, source, llama_like, monkeypatch):
    """Without the interrupt the same build publishes three shards through os.link (so the test
    above interrupts a real publish, the second of them)."""
    published = []
    real = writers.os.link
    monkeypatch.setattr(
        writers.os, "link", lambda a, b, **k: (published.append(b), real(a, b, **k))
    )
    build(make_config([source], llama_like, tmp_path / "out", **OPTIONS))
    shards = [os.path.basename(p) for p in published if "data-" in os.path.basename(p)]
    assert [s for s in shards if not s.startswith(".resume-")][:3] == [
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


# ----------------------------------------------------------------------------- overwrite's switch


def test_a_crash_in_the_middle_of_the_switch_leaves_the_previous_output_whole(
    tmp_path, source, llama_like, monkeypatch
):
    out = tmp_path / "out"
    build(make_config([source], llama_like, out, **OPTIONS))
    before = {n: (out / n).read_bytes() for n in _names(out)}
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": f"other {i}"} for i in range(45)])
    real_link = os.link
    moved = []

    def crash_on_second(source_path, target_path, **kwargs):
        if ".staging-" in str(source_path):
            if moved:
                raise OSError(5, "Input/output error")  # the disk gives out mid-switch
            moved.append(target_path)
        return real_link(source_path, target_path, **kwargs)

    monkeypatch.setattr(os, "link", crash_on_second)
    with pytest.raises(IOFailure, match="Input/output error"):
        build(make_config([other], llama_like, out, overwrite=True, **OPTIONS))
    assert moved  # the switch had begun: one staged shard was in place
    # The previous output is whole and alone: the new one's files were its writer's own, and
    # went with its staging directory.
    assert {n: (out / n).read_bytes() for n in _names(out)} == before
    monkeypatch.setattr(os, "link", real_link)
    result = build(make_config([other], llama_like, out, overwrite=True, **OPTIONS))
    assert result.totals.records_read == 45
    assert _names(out) == sorted([s.path for s in result.manifest.shards] + [MANIFEST_NAME])


def test_a_dead_overwrites_staging_directory_is_removed_by_the_next_commit(
    tmp_path, source, llama_like
):
    out = tmp_path / "out"
    build(make_config([source], llama_like, out, **OPTIONS))
    staging = out / ".staging-0123456789abcdef"
    staging.mkdir()
    (staging / "data-00000.parquet").write_bytes(b"half of a new output")
    state = scan(storage.parse_location(str(out)))
    assert state.garbage == [staging.name] and state.foreign == []
    # A resume of the finished output commits nothing, so it removes nothing: the staging
    # directory may be a running overwrite's.
    result = build(make_config([source], llama_like, out, resume=True, **OPTIONS))
    assert result.reused_shards == 3
    assert staging.exists()
    # A commit ends every writer that was there when it began: then the garbage goes.
    build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert not staging.exists()


def test_a_directory_that_only_looks_like_staging_is_foreign(tmp_path, source, llama_like):
    """Negative control: only maskprep's exact staging names are its leftovers."""
    out = tmp_path / "out"
    (out / ".staging-mine").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"did not write \(\.staging-mine\)"):
        build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert (out / ".staging-mine").is_dir()


def test_temporaries_are_garbage_and_planted_links_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-data-00000.parquet.0123456789abcdef").write_bytes(b"a dead writer's")
    state = scan(storage.parse_location(str(out)))
    assert state.garbage == [".tmp-data-00000.parquet.0123456789abcdef"]
    assert plan(state, OutputRequest(), []) is Action.WRITE
    # Negative control: a name no writer of maskprep's makes is not its garbage.
    (out / ".tmp-data-00000.parquet").write_bytes(b"someone else's")
    state = scan(storage.parse_location(str(out)))
    assert state.foreign == [".tmp-data-00000.parquet"]
    (out / "data-00001.parquet").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=r"data-00001\.parquet: is a symbolic link"):
        plan(scan(storage.parse_location(str(out))), OutputRequest(overwrite=True), [])


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
    result = build(make_config([source], llama_like, out, overwrite=True, **OPTIONS))
    assert _names(out) == sorted([s.path for s in result.manifest.shards] + [MANIFEST_NAME])


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
    first = merge(parts, out)
    result = merge(parts, out, overwrite=True)
    assert _names(out) == sorted([s.path for s in result.manifest.shards] + [MANIFEST_NAME])
    assert [s.sha256 for s in result.manifest.shards] == [s.sha256 for s in first.manifest.shards]


# ----------------------------------------------------------------------------- overtaken (S3)


def test_a_build_overtaken_mid_build_stops_and_changes_nothing(s3_bucket, source, llama_like):
    """Another writer commits the output while this build writes (here a manifest put there
    between two batches): the build stops at its next publish, and neither deletes nor writes
    anything under the committed output."""
    import boto3

    s3 = boto3.client("s3")
    committed = {}

    def commit_elsewhere(progress) -> None:
        if not committed:
            body = b'{"not": "this build"}\n'
            s3.put_object(Bucket=s3_bucket, Key=f"out/{MANIFEST_NAME}", Body=body)
            committed["manifest"] = body

    config = make_config([source], llama_like, f"s3://{s3_bucket}/out", batch_size=10, **OPTIONS)
    with pytest.raises(commit.Overtaken, match="another writer finished this output"):
        build(config, on_progress=commit_elsewhere)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == [f"out/{MANIFEST_NAME}"]  # the other writer's; this build published nothing
    body = s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
    assert body == committed["manifest"]


def test_negative_control_not_overtaken_the_same_build_finishes(s3_bucket, source, llama_like):
    config = make_config([source], llama_like, f"s3://{s3_bucket}/out", batch_size=10, **OPTIONS)
    result = build(config, on_progress=lambda progress: None)
    assert result.manifest.totals.records_read == 60


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
    from maskprep.output.finished import shard_paths

    with pytest.raises(ConfigError, match=r"s3://bucket/out: a local output directory is needed"):
        shard_paths("s3://bucket/out")
