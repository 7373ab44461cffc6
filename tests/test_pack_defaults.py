"""Defaults that protect packs (issue 21): packed documents end with EOS unless told otherwise,
and tokenizers without an EOS token get their own frame or a clear refusal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_kit import assert_one_line, assert_ran
from conftest import make_config, write_jsonl

from maskprep import ConfigError, SFTConfig, build, read_manifest
from maskprep.cli import main
from maskprep.contract import METADATA_KEY

EOS = 2  # llama_like and with_pad
SEP = 102  # MiniLM's [SEP], the end of its frame


def _documents(output: Path) -> list[list[int]]:
    """Every packed document of the output, by its row's seq_lens."""
    docs = []
    for path in sorted(output.glob("data-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            start = 0
            for size in row["seq_lens"]:
                docs.append(row["input_ids"][start : start + size])
                start += size
    return docs


def _rows(output: Path) -> list[dict]:
    return pq.read_table(sorted(output.glob("data-*.parquet"))).to_pylist()


@pytest.fixture
def data(tmp_path, corpus) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus * 6])


@pytest.mark.parametrize("pad", [[], ["--pad-token", "eos"]], ids=["pad3", "pad=eos"])
def test_a_pack_build_ends_every_document_with_eos_by_default(
    runner, data, tmp_path, with_pad, llama_like, pad
) -> None:
    tokenizer = llama_like if pad else with_pad
    out = tmp_path / "out"
    args = ["build", str(data), "-t", str(tokenizer), "-o", str(out), "--max-length", "64"]
    done = runner.invoke(main, [*args, "--strategy", "pack", "-q", *pad])
    assert_ran(done)
    docs = _documents(out)
    assert len(docs) == read_manifest(out).totals.shape.documents_written == 48
    assert sum(doc[-1] == EOS for doc in docs) == len(docs)
    # Each EOS is trained, pad == EOS or not.
    for row in _rows(out):
        start = 0
        for size in row["seq_lens"]:
            assert row["labels"][start + size - 1] == EOS
            start += size
    manifest = read_manifest(out)
    assert manifest.config.raw["tokenizer"]["add_eos"] is True  # what was done is recorded
    shard = pq.read_schema(out / manifest.shards[0].path)
    assert json.loads(shard.metadata[METADATA_KEY])["add_eos"] is True

    # Opting out gives the old packs: documents run into each other.
    done = runner.invoke(
        main,
        [
            *args[:4],
            "-o",
            str(tmp_path / "off"),
            *args[6:],
            "--strategy",
            "pack",
            "-q",
            *pad,
            "--no-add-eos",
        ],
    )
    assert_ran(done)
    off = _documents(tmp_path / "off")
    assert len(off) == len(docs) and sum(doc[-1] == EOS for doc in off) == 0
    assert read_manifest(tmp_path / "off").config.raw["tokenizer"]["add_eos"] is False


def test_other_strategies_keep_their_default(data, tmp_path, with_pad) -> None:
    output = build(make_config([data], with_pad, tmp_path / "pad", max_length=64)).output
    rows = _rows(output)
    assert not any(r["input_ids"][r["length"] - 1] == EOS for r in rows)
    assert read_manifest(output).config.raw["tokenizer"]["add_eos"] is None


def test_the_library_resolves_the_default_without_changing_what_was_given(tmp_path, with_pad):
    config = make_config(["x.jsonl"], with_pad, tmp_path / "o", strategy="pack")
    assert config.tokenizer.add_eos is None  # as given
    assert config.resolved_tokenizer.add_eos is True  # as built
    assert config.to_manifest()["tokenizer"]["add_eos"] is True
    # A config derived from it is resolved afresh: chat records (whose template ends every
    # turn) are no pack of plain documents.
    chat = dataclasses.replace(config, sft=SFTConfig(messages_field="messages"))
    assert chat.resolved_tokenizer.add_eos is None
    off = make_config(["x.jsonl"], with_pad, tmp_path / "o", strategy="pack", add_eos=False)
    assert off.resolved_tokenizer.add_eos is False


def test_the_tokenizer_cache_keeps_pad_and_pack_apart(data, tmp_path, with_pad, runner) -> None:
    """A pad build caches the tokenizer first; the pack build after it must not reuse an entry
    that appends no EOS."""
    cache = tmp_path / "cache"
    common = ["-t", str(with_pad), "--max-length", "64", "-q", "--tokenizer-cache", str(cache)]
    for strategy in ("pad", "pack", "pack"):
        out = tmp_path / f"out-{strategy}"
        done = runner.invoke(
            main,
            ["build", str(data), *common, "--strategy", strategy, "-o", str(out)]
            + (["--overwrite"] if out.exists() else []),
        )
        assert_ran(done)
    docs = _documents(tmp_path / "out-pack")
    assert docs and all(doc[-1] == EOS for doc in docs)


def test_a_tokenizer_without_eos_packs_with_its_own_frame(data, tmp_path, minilm, runner) -> None:
    """MiniLM has no EOS, but [SEP] ends every document it frames: that keeps packed documents
    apart, and nothing is appended (asked for or by default)."""
    for extra in ([], ["--add-eos"]):
        out = tmp_path / f"out{len(extra)}"
        args = ["build", str(data), "-t", str(minilm), "-o", str(out), "--max-length", "64"]
        assert_ran(runner.invoke(main, [*args, "--strategy", "pack", "-q", *extra]))
        docs = _documents(out)
        assert docs and all(doc[-1] == SEP and doc.count(SEP) == 1 for doc in docs)
        metadata = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[METADATA_KEY])
        assert (metadata["add_eos"], metadata["eos_token_id"]) == (False, None)
    # Padded rows have no documents to keep apart: --add-eos there asks for what is not there.
    done = runner.invoke(
        main,
        [
            "build",
            str(data),
            "-t",
            str(minilm),
            "-o",
            str(tmp_path / "p"),
            "--max-length",
            "64",
            "--add-eos",
            "-q",
        ],
    )
    assert_one_line(done, 2, f"tokenizer '{minilm}' has no EOS token to add", stream="stderr")


def test_a_tokenizer_without_eos_or_frame_is_refused_for_packs(data, tmp_path, minilm, runner):
    args = ["build", str(data), "-t", str(minilm), "-o", str(tmp_path / "out")]
    args += ["--max-length", "64", "--strategy", "pack", "--no-add-special-tokens", "-q"]
    done = runner.invoke(main, args)
    line = assert_one_line(
        done, 2, "has no EOS token, and its special tokens end no document", stream="stderr"
    )
    assert line.endswith("--no-add-eos packs them so anyway")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    config = make_config(
        [data], minilm, tmp_path / "lib", strategy="pack", add_special_tokens=False
    )
    with pytest.raises(ConfigError, match=r"tokenizer\.add_eos=False packs them so anyway$"):
        build(config)
    # Turned off on purpose, the documents are packed with nothing between them.
    assert_ran(runner.invoke(main, [*args, "--no-add-eos"]))
    assert read_manifest(tmp_path / "out").config.raw["tokenizer"]["add_eos"] is False


# ------------------------------------------------------------------ best-fit decreasing default


def test_packs_are_best_fit_decreasing_by_default(tmp_path, with_pad, runner) -> None:
    """Documents of 20 to 60 tokens into rows of 64: greedy leaves most rows a third empty,
    best fit pairs long and short ones."""
    words = "padding never leaks into attention while labels of minus one hundred are ignored"
    texts = [" ".join(words.split()[: 3 + (i * 7) % 12] * 2) for i in range(120)]
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in texts])
    common = ["build", str(data), "-t", str(with_pad), "--max-length", "64", "--json"]
    made = {}
    for name, extra in (
        ("default", []),
        ("bfd", ["--pack-algorithm", "bfd"]),
        ("greedy", ["--pack-algorithm", "greedy"]),
    ):
        out = tmp_path / name
        done = runner.invoke(main, [*common, "--strategy", "pack", "-o", str(out), *extra])
        assert_ran(done)
        made[name] = json.loads(done.stdout)["fill"]
        assert read_manifest(out).config.raw["shape"]["pack_algorithm"] == (
            "greedy" if name == "greedy" else "bfd"
        )
    assert made["default"] == made["bfd"]
    assert (tmp_path / "default/data-00000.parquet").read_bytes() == (
        tmp_path / "bfd/data-00000.parquet"
    ).read_bytes()
    assert made["bfd"]["rows"] < made["greedy"]["rows"]
    assert made["bfd"]["fill"] > made["greedy"]["fill"]


def test_other_strategies_record_greedy_and_refuse_bfd(tmp_path, with_pad, data, runner) -> None:
    from maskprep import ShapeConfig

    assert ShapeConfig(64, "pack").resolved_pack_algorithm == "bfd"
    assert ShapeConfig(64, "pack", pack_algorithm="greedy").resolved_pack_algorithm == "greedy"
    assert ShapeConfig(64).resolved_pack_algorithm == "greedy"  # what pad manifests record
    # The default is resolved where it is used, so a config derived from a pack's is sound.
    assert dataclasses.replace(ShapeConfig(64, "pack"), strategy="pad").strategy == "pad"
    output = build(make_config([data], with_pad, tmp_path / "pad", max_length=64)).output
    assert read_manifest(output).config.raw["shape"]["pack_algorithm"] == "greedy"
    args = ["build", str(data), "-t", str(with_pad), "--max-length", "64", "-q"]
    done = runner.invoke(main, [*args, "-o", str(tmp_path / "g"), "--pack-algorithm", "greedy"])
    assert_ran(done)  # as before: greedy is no packing
    done = runner.invoke(main, [*args, "-o", str(tmp_path / "b"), "--pack-algorithm", "bfd"])
    assert_one_line(
        done,
        2,
        "pack_algorithm and pack_window only apply to strategy 'pack', not 'pad'",
        stream="stderr",
    )
