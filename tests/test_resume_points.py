"""A resume costs the work that remains (issue #24): each shard's resume point says where in the
input it ends, so a resumed build reads the input before it only to hash it, never tokenizes it
again, and still writes an output byte-identical to an undisturbed build's."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from conftest import make_config, write_jsonl

import maskprep.pipeline as pipeline
from maskprep import build
from maskprep.errors import OutputError

CASES = {
    "pad": {},
    "bucket-split": {"strategy": "bucket", "overflow": "split"},
    "pack": {"strategy": "pack"},
    "pack-bfd": {"strategy": "pack", "pack_algorithm": "bfd", "pack_window": 7},
    "none": {"strategy": "none"},
}


def _source(path):
    """240 JSONL lines, some of them broken (rejected under skip)."""
    lines: list[object] = []
    for i in range(240):
        broken = i % 17 == 5
        lines.append("{broken json" if broken else {"text": f"record {i} " + "word " * (i % 23)})
    return write_jsonl(path, lines)


def _config(source, tokenizer, out, case: str, **extra):
    options = {k: v for k, v in CASES[case].items() if not k.startswith("pack_")}
    config = make_config(
        [source], tokenizer, out, pad_token="eos", shard_rows=12, batch_size=10,
        on_bad_record="skip", **options, **extra,
    )  # fmt: skip
    if "pack_algorithm" in CASES[case]:
        shape = dataclasses.replace(
            config.shape,
            pack_algorithm=CASES[case]["pack_algorithm"],
            pack_window=CASES[case]["pack_window"],
        )
        config = dataclasses.replace(config, shape=shape)
    return config


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _killed_after(out, source, tokenizer, case: str, kept: int) -> None:
    """``out`` as a build killed right after publishing its shard ``kept - 1`` (and that shard's
    resume point) leaves it: no manifest, no rejects file, no later shard or point. Made by a
    real build interrupted just before its commit, then cut back."""

    def interrupted(self, manifest):
        raise KeyboardInterrupt

    real = pipeline.OutputSession.commit
    pipeline.OutputSession.commit = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            build(_config(source, tokenizer, out, case))
    finally:
        pipeline.OutputSession.commit = real
    for path in out.iterdir():
        name = path.name.removeprefix(".resume-")
        late = name.startswith("data-") and int(name[5:10]) >= kept
        if late or name.startswith("_rejects"):
            path.unlink()


@pytest.fixture
def counted(monkeypatch):
    """How many records the build encodes (the work a resume must not redo)."""
    seen = {"records": 0}
    real = pipeline.encode_stream

    def counting(batches, tokenizing, shape):
        for batch, docs, rejected in real(batches, tokenizing, shape):
            seen["records"] += len(batch.records)
            yield batch, docs, rejected

    monkeypatch.setattr(pipeline, "encode_stream", counting)
    return seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_resume_encodes_only_what_remains_and_is_byte_identical(
    tmp_path, llama_like, counted, case
):
    source = _source(tmp_path / "in.jsonl")
    clean = build(_config(source, llama_like, tmp_path / "clean", case))
    reference = _files(tmp_path / "clean")
    assert [n for n in reference if n.startswith(".")] == []  # scratch went with the commit
    everything = counted["records"]
    shards = len(clean.manifest.shards)
    assert shards >= 4, shards
    # Killed two thirds of the way; then after the last shard (the manifest not yet made).
    for kept in (2 * shards // 3, shards):
        out = tmp_path / f"out-{kept}"
        _killed_after(out, source, llama_like, case, kept)
        counted["records"] = 0
        resumed = build(_config(source, llama_like, out, case, resume=True))
        assert resumed.reused_shards == kept
        assert _files(out) == reference  # shards, rejects and manifest, byte for byte
        assert counted["records"] < everything, (case, kept, counted, everything)
        if kept == shards:
            # At most the batch the last shard ended in, and the one after it.
            assert counted["records"] <= 20, (case, counted)


def test_an_input_changed_before_the_resume_point_is_never_taken_up(tmp_path, llama_like):
    """Negative control: the resume point's input bytes are checked. An edit before it makes the
    resume replay the input, which then finds the shards stale, as it always did."""
    source = _source(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    _killed_after(out, source, llama_like, "pad", 3)
    text = source.read_text()
    source.write_text(text.replace("record 3 ", "record 3!", 1))  # same size, other bytes
    with pytest.raises(OutputError, match="differs from the shard this build writes"):
        build(_config(source, llama_like, out, "pad", resume=True))


def test_a_changed_shard_stops_the_resume_points_at_it(tmp_path, llama_like, counted):
    """A point whose shard's recorded sha256 is not the shard's is not taken up, nor any after
    it: the build resumes from the last point before it (and the replay checks the rest)."""
    source = _source(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    _killed_after(out, source, llama_like, "pad", 3)
    points = sorted(p for p in os.listdir(out) if p.startswith(".resume-"))
    assert len(points) == 3
    data = json.loads((out / points[1]).read_bytes())
    data["shard"]["sha256"] = "0" * 64
    (out / points[1]).write_text(json.dumps(data))
    counted["records"] = 0
    resumed = build(_config(source, llama_like, out, "pad", resume=True))
    assert resumed.reused_shards == 3  # shard 0 taken up, shards 1 and 2 replayed and kept
    from_first = counted["records"]
    # Negative control: with the point intact, the resume starts at the third point.
    out2 = tmp_path / "out2"
    _killed_after(out2, source, llama_like, "pad", 3)
    counted["records"] = 0
    build(_config(source, llama_like, out2, "pad", resume=True))
    assert counted["records"] < from_first
