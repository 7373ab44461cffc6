"""What ``merge`` checks before it joins parts: one version of every input, byte ranges that tile
it, and shards whose bytes are the ones their part recorded (linked or copied)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
from conftest import make_config, write_jsonl

from maskprep import ConfigError, DataError, PartSpec, build, merge, read_manifest
from maskprep.cli import main
from maskprep.distributed.merge import check_inputs
from maskprep.errors import ManifestError
from maskprep.output.manifest import Part
from maskprep.output.names import MANIFEST_NAME
from maskprep.output.shards import sha256_file
from maskprep.sources.parts import FileRange, PlannedFile
from maskprep.storage import operations

A = PlannedFile("a.jsonl", 100, 1_000)
B = PlannedFile("b.jsonl.gz", 40, 2_000)


def _plan(index, ranges, files=(A, B)):
    return (index, f"p{index}", Part(index, 3, tuple(ranges), files))


GOOD = [
    _plan(0, [FileRange("a.jsonl", 0, 30, 1)]),
    _plan(1, [FileRange("a.jsonl", 30, 70, 4)]),
    _plan(2, [FileRange("a.jsonl", 70, 100, 9), FileRange("b.jsonl.gz", 0, 40, 1, whole=True)]),
]


def test_parts_that_tile_their_inputs_pass():
    check_inputs(GOOD)
    # A file listed twice is read twice, each listing tiled on its own.
    twice = (A, A)
    check_inputs(
        [
            _plan(0, [FileRange("a.jsonl", 0, 100, 1), FileRange("a.jsonl", 0, 20, 1)], twice),
            _plan(1, [FileRange("a.jsonl", 20, 100, 3)], twice),
        ]
    )


LAST = [FileRange("a.jsonl", 70, 100, 9), FileRange("b.jsonl.gz", 0, 40, 1, whole=True)]


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (
            {1: [FileRange("a.jsonl", 35, 70, 4)]},
            "a.jsonl: the parts' byte ranges skip: part 1 (p1) starts at byte 35 where part 0 "
            "(p0) ended at byte 30",
        ),
        (
            {1: [FileRange("a.jsonl", 25, 70, 4)]},
            "a.jsonl: the parts' byte ranges overlap: part 1 (p1) starts at byte 25",
        ),
        (
            {2: [FileRange("a.jsonl", 70, 90, 9)]},
            "a.jsonl: bytes 90 to 100 were read by no part after part 2 (p2)",
        ),
        ({2: LAST[:1]}, "b.jsonl.gz: bytes 0 to 40 were read by no part"),
        (
            {2: [*LAST, FileRange("c.txt", 0, 5, 1)]},
            "c.txt: part 2 (p2) read bytes 0 to 5, which belong to no input the parts planned",
        ),
    ],
)
def test_ranges_that_do_not_tile_are_refused_naming_the_input_and_parts(ranges, message):
    plans = [_plan(i, ranges.get(i, list(plan.ranges))) for i, (_, _, plan) in enumerate(GOOD)]
    with pytest.raises(ConfigError) as raised:
        check_inputs(plans)
    assert str(raised.value).startswith(message), str(raised.value)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ((PlannedFile("a.jsonl", 120, 1_000), B), "a.jsonl: changed between the builds of part 0"),
        ((PlannedFile("a.jsonl", 100, 5_000), B), "(modified 1970-01-01T00:00:00.000001Z for"),
        ((A, PlannedFile("c.jsonl", 40, 2_000)), "input 2 is b.jsonl.gz in one and c.jsonl"),
        ((A,), "2 input files in one, 1 in the other"),
    ],
)
def test_parts_that_saw_another_version_of_an_input_are_refused(other, message):
    plans = [GOOD[0], _plan(1, GOOD[1][2].ranges, other), GOOD[2]]
    with pytest.raises(ConfigError) as raised:
        check_inputs(plans)
    assert message in str(raised.value)
    assert "part 0 (p0)" in str(raised.value) and "part 1 (p1)" in str(raised.value)


# ------------------------------------------------------------------------ through real builds


@pytest.fixture
def source(tmp_path, corpus):
    directory = tmp_path / "in"
    directory.mkdir()
    records = [{"text": f"{t} {i}"} for i, t in enumerate(corpus * 4)]
    return write_jsonl(directory / "a.jsonl", records)


def _part(inputs, tokenizer, out, index, count=2, **options):
    config = make_config(
        inputs,
        tokenizer,
        out,
        pad_token="eos",
        max_length=16,
        part=PartSpec(index, count),
        **options,
    )
    return build(config).output


def _parts(inputs, tokenizer, root, count=2, **options):
    return [_part(inputs, tokenizer, root / f"p{i}", i, count, **options) for i in range(count)]


def test_a_directory_input_that_gained_a_file_between_parts_is_refused(
    tmp_path, source, llama_like, runner
):
    directory = source.parent
    first = _part([directory], llama_like, tmp_path / "p0", 0)
    write_jsonl(directory / "b.jsonl", [{"text": "a late arrival"}])
    second = _part([directory], llama_like, tmp_path / "p1", 1)
    result = runner.invoke(main, ["merge", str(first), str(second), "-o", str(tmp_path / "m")])
    assert result.exit_code == 2, result.output
    assert "the inputs differ between the builds of part 0" in result.output
    assert str(first) in result.output and str(second) in result.output
    assert not (tmp_path / "m" / MANIFEST_NAME).exists()


def test_parts_record_every_input_file_as_their_plan_saw_it(tmp_path, source, llama_like):
    parts = _parts([source], llama_like, tmp_path)
    stat = os.stat(source)
    for directory in parts:
        part = read_manifest(directory).part
        assert part is not None
        assert part.files == (PlannedFile(str(source), stat.st_size, stat.st_mtime_ns),)


def test_a_part_manifest_without_its_input_files_is_refused(tmp_path, source, llama_like):
    """``part.files`` is required: a part that does not say what it planned cannot be merged."""
    directory = _parts([source], llama_like, tmp_path)[0]
    data = json.loads((directory / MANIFEST_NAME).read_text())
    del data["part"]["files"]
    (directory / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"part\.files"):
        read_manifest(directory)


# ----------------------------------------------------------------- shards hashed on the way in


@pytest.fixture
def across_filesystems(monkeypatch):
    """Hard links fail as they do across filesystems: merge copies."""

    def no_link(source, target):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))

    monkeypatch.setattr(operations, "hard_link", no_link)


def test_copied_shards_are_hashed_and_equal_to_linked_ones(
    tmp_path, source, llama_like, across_filesystems
):
    parts = _parts([source], llama_like, tmp_path, shard_rows=5)
    result = merge(parts, tmp_path / "m")
    assert result.linked == 0 and result.copied == result.shards > 2
    for shard in result.manifest.shards:
        assert sha256_file(result.output / shard.path) == shard.sha256
    assert not [p.name for p in result.output.iterdir() if p.name.startswith(".tmp-")]


def test_a_copied_shard_that_changed_since_its_part_is_refused_and_nothing_kept(
    tmp_path, source, llama_like, across_filesystems
):
    parts = _parts([source], llama_like, tmp_path, shard_rows=5)
    manifest = json.loads((parts[1] / MANIFEST_NAME).read_text())
    victim = parts[1] / manifest["shards"][-1]["path"]
    other = parts[1] / manifest["shards"][0]["path"]
    shutil.copyfile(other, victim)  # a valid shard, but not the one the part recorded
    with pytest.raises(DataError, match="does not match the sha256 its part's manifest records"):
        merge(parts, tmp_path / "m")
    out = tmp_path / "m"  # the merge made it, and removes it again when it leaves it empty
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left
