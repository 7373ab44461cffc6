"""#14, merge and the manifests it reads: parts built from an input that changed, tampered shard
paths and hashes, manifests that are not what they claim, a disk that fills mid-merge."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import maskprep

from .helpers import (
    MANIFEST,
    assert_clean_failure,
    assert_ok,
    build_args,
    cli,
    edit_manifest,
    lines,
    proc,
    read_json,
    stray_files,
)

pytestmark = pytest.mark.integration

MERGE_OPTIONS = {"--output", "-o", "--overwrite", "--json", "--help", "-h"}


def _only_merge_options(line: str) -> None:
    """A merge message suggests only options merge has."""
    named = set(re.findall(r"--[a-z][a-z-]*", line))
    assert named <= MERGE_OPTIONS, f"suggests {sorted(named - MERGE_OPTIONS)}: {line}"


def _part(source: Path, tokenizer: Path, out: Path, index: int, *extra: str) -> Path:
    args = build_args(source, tokenizer, out, "--num-parts", "2", "--part-index", str(index))
    assert_ok(cli(*args, *extra))
    return out


def _merged_rows(out: Path) -> int:
    return read_json(out / MANIFEST)["totals"]["rows_written"]


# ----------------------------------------------------------------------------- inputs that changed


def test_merge_refuses_parts_of_an_input_that_grew_between_builds(tmp_path, llama_like):
    source = tmp_path / "in.jsonl"
    source.write_text(lines(200))
    part0 = _part(source, llama_like, tmp_path / "p0", 0)
    with open(source, "a") as handle:
        handle.write(lines(100, prefix="late"))
    part1 = _part(source, llama_like, tmp_path / "p1", 1)
    result = cli("merge", part0, part1, "-o", tmp_path / "merged")
    assert_clean_failure(result, (1, 2), mentions=[str(source)])
    assert not (tmp_path / "merged" / MANIFEST).exists()


def test_merge_refuses_parts_of_an_input_rewritten_with_the_same_size(tmp_path, llama_like):
    source = tmp_path / "in.jsonl"
    source.write_text(lines(200))
    part0 = _part(source, llama_like, tmp_path / "p0", 0)
    # Same bytes count, other content, in the first part's range: the ranges still tile.
    source.write_text(lines(200).replace("document 1 ", "DOCUMENT 1 ", 1))
    part1 = _part(source, llama_like, tmp_path / "p1", 1)
    result = cli("merge", part0, part1, "-o", tmp_path / "merged")
    assert_clean_failure(result, (1, 2), mentions=[str(source)])


def _rewrite_keeping_size_and_mtime(source: Path, text: str) -> None:
    """What ``cp -p`` or ``rsync -t`` of an edited copy does: other bytes, same size and
    modification time."""
    before = source.stat()
    assert len(text.encode()) == before.st_size
    source.write_text(text)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("edited_part", [0, 1])
def test_check_input_bytes_refuses_a_rewrite_that_kept_size_and_mtime(
    tmp_path, llama_like, edited_part
):
    source = tmp_path / "in.jsonl"
    source.write_text(lines(200))
    original = lines(200)
    # Edit a record in the range of the part built first (0) or of the one built second (1).
    needle = "document 1 " if edited_part == 0 else "document 190 "
    edited = original.replace(needle, needle.upper(), 1)
    assert edited != original
    first, second = (0, 1) if edited_part == 0 else (1, 0)
    parts = {first: _part(source, llama_like, tmp_path / f"p{first}", first)}
    _rewrite_keeping_size_and_mtime(source, edited)
    parts[second] = _part(source, llama_like, tmp_path / f"p{second}", second)
    # The quick check cannot see it (the documented limit): merge accepts the parts.
    assert_ok(cli("merge", parts[0], parts[1], "-o", tmp_path / "quick"))
    line = assert_clean_failure(
        cli("merge", parts[0], parts[1], "-o", tmp_path / "merged", "--check-input-bytes"),
        2,
        mentions=[str(source), f"part {first}", "rebuild every part"],
    )
    assert "bytes 0 to" in line if first == 0 else "bytes 0 to" not in line
    assert not (tmp_path / "merged" / MANIFEST).exists()


def test_check_input_bytes_passes_an_unchanged_input_of_several_files(tmp_path, llama_like):
    """Negative control, across files and a compressed one (read whole by one part)."""
    import gzip

    first, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    first.write_text(lines(150))
    packed.write_bytes(gzip.compress(lines(40).encode(), mtime=0))
    parts = []
    for index in range(3):
        out = tmp_path / f"p{index}"
        split = ("--num-parts", "3", "--part-index", str(index))
        assert_ok(cli(*build_args([first, packed], llama_like, out, *split)))
        parts.append(out)
    assert_ok(cli("merge", *parts, "-o", tmp_path / "merged", "--check-input-bytes"))
    assert _merged_rows(tmp_path / "merged") == 190
    # ...and the compressed file rewritten (same size, same mtime) is caught too.
    data = bytearray(packed.read_bytes())
    data[-5] ^= 0xFF  # inside the gzip trailer: the part read these bytes, whole
    stat = packed.stat()
    packed.write_bytes(bytes(data))
    os.utime(packed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert_clean_failure(
        cli("merge", *parts, "-o", tmp_path / "again", "--check-input-bytes"),
        2,
        mentions=[str(packed)],
    )


def test_check_input_bytes_names_an_input_that_is_gone(tmp_path, llama_like):
    source = tmp_path / "in.jsonl"
    source.write_text(lines(100))
    parts = [_part(source, llama_like, tmp_path / f"p{i}", i) for i in range(2)]
    source.unlink()
    assert_clean_failure(
        cli("merge", *parts, "-o", tmp_path / "merged", "--check-input-bytes"),
        2,
        mentions=[str(source)],
    )


def test_merge_of_parts_of_an_unchanged_input_equals_one_build(tmp_path, llama_like):
    """Negative control: parts of an unchanged input merge into the single build's rows."""
    source = tmp_path / "in.jsonl"
    source.write_text(lines(300))
    parts = [_part(source, llama_like, tmp_path / f"p{i}", i) for i in range(2)]
    assert_ok(cli("merge", *parts, "-o", tmp_path / "merged"))
    assert_ok(cli(*build_args(source, llama_like, tmp_path / "whole")))
    assert _merged_rows(tmp_path / "merged") == _merged_rows(tmp_path / "whole") == 300


# ----------------------------------------------------------------------------- tampered manifests


@pytest.fixture
def victim(tmp_path, finished) -> Path:
    """A file outside every output that no manifest may bring in: a valid shard (a copy of the
    finished build's first one), so that only the path can give it away."""
    path = tmp_path / "secret" / "victim.parquet"
    path.parent.mkdir()
    shutil.copy(finished / "data-00000.parquet", path)
    return path


@pytest.fixture
def tampered(parts, tmp_path) -> list[Path]:
    """Private copies of the two parts."""
    return [Path(shutil.copytree(p, tmp_path / p.name)) for p in parts]


def _point_first_shard_at(part: Path, target: str) -> None:
    def change(manifest: dict) -> None:
        manifest["shards"][0]["path"] = target

    edit_manifest(part, change)


def _shard_paths(victim: Path, part: Path) -> dict[str, str]:
    return {
        "absolute": str(victim),
        "dotdot": os.path.relpath(victim, part),
    }


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_merge_refuses_shard_paths_outside_the_part(tmp_path, tampered, victim, kind):
    path = _shard_paths(victim, tampered[1])[kind]
    _point_first_shard_at(tampered[1], path)
    out = tmp_path / "merged"
    result = cli("merge", *tampered, "-o", out)
    assert os.stat(victim).st_nlink == 1, "the file outside was linked into the output"
    assert_clean_failure(result, (1, 2), mentions=[path])
    assert not (out / MANIFEST).exists()


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_inspect_refuses_shard_paths_outside_the_output(finished_copy, victim, kind):
    path = _shard_paths(victim, finished_copy)[kind]
    _point_first_shard_at(finished_copy, path)
    assert_clean_failure(cli("inspect", finished_copy), (1, 2), mentions=[path])


def test_load_dataset_refuses_shard_paths_outside_the_output(finished_copy, tmp_path):
    outside = tmp_path / "outside.parquet"
    shutil.copy(finished_copy / "data-00000.parquet", outside)
    _point_first_shard_at(finished_copy, "../outside.parquet")
    with pytest.raises(maskprep.MaskprepError, match=r"\.\./outside\.parquet"):
        maskprep.load_dataset(finished_copy)


def test_verify_refuses_shard_paths_outside_the_output(finished_copy, tmp_path):
    outside = tmp_path / "outside.parquet"
    shutil.copy(finished_copy / "data-00000.parquet", outside)
    _point_first_shard_at(finished_copy, "../outside.parquet")
    # The model does not exist: the shard path must be refused before it is needed.
    result = cli("verify", finished_copy, "-m", tmp_path / "no-model", "--device", "cpu")
    assert_clean_failure(result, (1, 2), mentions=["../outside.parquet"])


def test_merge_refuses_a_shard_whose_bytes_differ_from_its_sha256(tmp_path, tampered):
    import pyarrow.parquet as pq

    shard = tampered[1] / read_json(tampered[1] / MANIFEST)["shards"][0]["path"]
    pq.write_table(pq.read_table(shard), shard, compression="gzip")  # same rows, other bytes
    result = cli("merge", *tampered, "-o", tmp_path / "merged")
    assert_clean_failure(result, (1, 2), mentions=[shard.name])
    assert not (tmp_path / "merged" / MANIFEST).exists()


# ----------------------------------------------------------------------------- broken manifests

BROKEN = {
    "list": lambda path: path.write_text("[1, 2]"),
    "not_utf8": lambda path: path.write_bytes(b'\xff\xfe{"format": 1}'),
    "rows_many": lambda path: path.write_text(
        json.dumps(
            {**read_json(path), "shards": [{**read_json(path)["shards"][0], "rows": "many"}]}
        )
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_inspect_of_a_malformed_manifest_is_one_line(finished_copy, kind):
    BROKEN[kind](finished_copy / MANIFEST)
    assert_clean_failure(cli("inspect", finished_copy), 1, mentions=[MANIFEST])


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_merge_of_a_malformed_part_manifest_is_one_line(tmp_path, tampered, kind):
    BROKEN[kind](tampered[1] / MANIFEST)
    result = cli("merge", *tampered, "-o", tmp_path / "merged")
    assert_clean_failure(result, (1, 2), mentions=[MANIFEST])
    assert not (tmp_path / "merged" / MANIFEST).exists()


@pytest.mark.parametrize("kind", ["list", "not_utf8"])
def test_read_manifest_raises_a_maskprep_error_for_a_malformed_manifest(finished_copy, kind):
    BROKEN[kind](finished_copy / MANIFEST)
    with pytest.raises(maskprep.DataError, match=MANIFEST):
        maskprep.read_manifest(finished_copy)


# ----------------------------------------------------------------------------- merge's own messages


def test_merge_into_an_unfinished_looking_output_suggests_only_merge_options(tmp_path, parts):
    out = tmp_path / "merged"
    out.mkdir()
    shutil.copy(parts[0] / "data-00000.parquet", out / "data-00000.parquet")
    line = assert_clean_failure(cli("merge", *parts, "-o", out), 2)
    _only_merge_options(line)


def test_merge_into_a_non_empty_directory_suggests_only_merge_options(tmp_path, parts):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = assert_clean_failure(cli("merge", *parts, "-o", out), 2)
    _only_merge_options(line)


# ----------------------------------------------------------------------------- disk full mid-merge


def _other_filesystem(near: Path) -> Path | None:
    """A writable directory on another filesystem than ``near`` (merge copies across them)."""
    for candidate in ("/dev/shm", os.environ.get("TMPDIR", ""), "/var/tmp", "/run"):
        usable = candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK)
        if usable and os.stat(candidate).st_dev != os.stat(near).st_dev:
            return Path(candidate)
    return None


@pytest.fixture
def parts_elsewhere(tmp_path, llama_like):
    """Two parts on another filesystem than ``tmp_path``, part 1's shard much larger than part
    0's."""
    base = _other_filesystem(tmp_path)
    if base is None:
        pytest.skip("no second filesystem to merge across (merge hard-links within one)")
    root = Path(tempfile.mkdtemp(prefix="maskprep-merge-", dir=base))
    try:
        source = root / "in.jsonl"
        # Half the bytes in 3 long records (part 0), half in 600 short ones (part 1).
        long = [json.dumps({"text": f"{i} " + "word " * 400}) for i in range(3)]
        short = [json.dumps({"text": f"s {i}"}) for i in range(600)]
        source.write_text("\n".join(long + short) + "\n")
        made = [_part(source, llama_like, root / f"p{i}", i) for i in range(2)]
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killing signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_during_merge_leaves_no_complete_looking_shard(tmp_path, parts_elsewhere):
    sizes = [
        (p / read_json(p / MANIFEST)["shards"][0]["path"]).stat().st_size for p in parts_elsewhere
    ]
    assert sizes[1] > sizes[0] + 64, sizes  # room for the first copy only
    out = tmp_path / "merged"
    limit = _file_size_limit(sizes[0] + 32)
    result = proc("merge", *parts_elsewhere, "-o", out, preexec=limit, timeout=120)
    line = assert_clean_failure(result, (1, 2))
    _only_merge_options(line)
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert not [n for n in left if n.startswith("data-")], left
    assert stray_files(out) == []
    assert MANIFEST not in left


def test_merge_across_filesystems_copies(tmp_path, parts_elsewhere):
    """Negative control for the disk-full test: without a limit the copy-merge works."""
    out = tmp_path / "merged"
    result = proc("merge", *parts_elsewhere, "-o", out, "--json", timeout=120)
    assert_ok(result)
    assert json.loads(result.stdout)["copied"] == 2
