"""Shards that carry their contract: every shard's schema metadata says what its manifest says
about its rows, and inspect, verify and the collator read it where the manifest is not there;
a shard whose metadata contradicts its manifest is refused; another tool's shard, which carries
none, is read as before."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from cli_kit import assert_one_line
from conftest import make_config, write_jsonl

import maskprep
from maskprep import DataError, build, read_manifest
from maskprep._version import __version__
from maskprep.cli import main
from maskprep.collate import Collator
from maskprep.contract import COLUMN_CONTRACT, METADATA_KEY, ShardContract, read_contract
from maskprep.reading.shards import open_input
from maskprep.verifying.sampling import sample_rows

PAD = 3  # with_pad: <s> 1, </s> 2, <pad> 3


def _read_table(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def _metadata(path: Path) -> dict:
    return json.loads(_read_table(path).schema.metadata[METADATA_KEY])


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)


def _with_metadata(path: Path, **changes) -> None:
    """Rewrite the shard at ``path`` with its contract changed (rows untouched)."""
    table = _read_table(path)
    data = {**json.loads(table.schema.metadata[METADATA_KEY]), **changes}
    _write(table.replace_schema_metadata({METADATA_KEY: json.dumps(data).encode()}), path)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, with_pad, corpus) -> dict[str, Path]:
    """Real outputs: pack (Parquet), left-padded pad (Arrow), prompt/completion pad."""
    root = tmp_path_factory.mktemp("contract")
    data = write_jsonl(root / "docs.jsonl", [{"text": t} for t in corpus])
    records = [{"prompt": a, "completion": b} for a, b in itertools.pairwise(corpus)]
    pairs = write_jsonl(root / "pairs.jsonl", records)
    made = {
        "pack": make_config([data], with_pad, root / "pack", strategy="pack", max_length=48),
        "pad": make_config([data], with_pad, root / "pad", padding_side="left", format="arrow"),
        "pairs": make_config(
            [pairs],
            with_pad,
            root / "pairs",
            sft=maskprep.SFTConfig(prompt_field="prompt", completion_field="completion"),
            max_length=48,
        ),
    }
    return {name: build(config).output for name, config in made.items()}


def _shard(output: Path) -> Path:
    return output / read_manifest(output).shards[0].path


@pytest.mark.parametrize("name", ["pack", "pad", "pairs"])
def test_every_shard_carries_its_manifest_s_contract(outputs, name) -> None:
    output = outputs[name]
    manifest = read_manifest(output)
    expected = ShardContract.of_manifest(manifest)
    for entry in manifest.shards:
        table = _read_table(output / entry.path)
        assert read_contract(table.schema, entry.path) == expected
    data = _metadata(_shard(output))
    assert data["contract"] == COLUMN_CONTRACT and data["maskprep_version"] == __version__
    assert data["pad_token_id"] == PAD and data["eos_token_id"] == 2 and data["bos_token_id"] == 1
    assert data["vocab_size"] == manifest.tokenizer.vocab_size
    assert data["tokenizer_fingerprint"] == manifest.tokenizer.fingerprint
    facts = {k: data[k] for k in ("strategy", "packed", "padding_side", "add_eos", "records")}
    expected_facts = {
        # Packed plain documents end with EOS by default.
        "pack": ("pack", True, "right", True, "text"),
        "pad": ("pad", False, "left", False, "text"),
        "pairs": ("pad", False, "right", True, "prompt_completion"),
    }[name]
    assert tuple(facts.values()) == expected_facts


@pytest.mark.parametrize("name", ["pack", "pad"])
def test_a_shard_copied_away_still_says_what_it_is(outputs, name, tmp_path, runner) -> None:
    lone = tmp_path / _shard(outputs[name]).name
    shutil.copy(_shard(outputs[name]), lone)
    whole = maskprep.inspect(str(outputs[name]))
    alone = maskprep.inspect(str(lone))
    assert alone.build is None  # no manifest: no build totals
    assert (alone.layout.strategy_source, alone.layout.pad_id_source) == (
        "shard metadata",
        "shard metadata",
    )
    same = ("strategy", "max_length", "padding_side", "pad_id", "eos_id", "buckets")
    assert [getattr(alone.layout, k) for k in same] == [getattr(whole.layout, k) for k in same]
    # Every check runs: nothing is unknown, as with the manifest.
    assert alone.passes(strict=True), alone.failures(strict=True)
    done = runner.invoke(main, ["inspect", str(lone), "--strict", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["summary"]["layout"]["strategy_source"] == "shard metadata"

    facts = sample_rows(str(lone), 4, 1, 0).facts
    assert facts == sample_rows(str(outputs[name]), 4, 1, 0).facts
    assert facts.pad_id == PAD and facts.packed is (name == "pack")


@pytest.mark.parametrize("name", ["pack", "pad"])
def test_the_collator_of_a_shard_alone_is_the_output_s(outputs, name, tmp_path) -> None:
    pytest.importorskip("torch", reason="needs the verify extra (torch)")
    lone = tmp_path / _shard(outputs[name]).name
    shutil.copy(_shard(outputs[name]), lone)
    from_dir = Collator.for_output(outputs[name], causal=True)
    from_shard = Collator.for_output(lone, causal=True)
    assert from_shard == from_dir
    assert (from_shard.pad_id, from_shard.packed) == (PAD, name == "pack")
    assert from_shard.padding_side == (None if name == "pack" else "left")


def test_a_shard_on_stdin_says_what_it_is(outputs, runner) -> None:
    arrow = _shard(outputs["pad"])
    done = runner.invoke(main, ["inspect", "-", "--json"], input=arrow.read_bytes())
    assert done.exit_code == 0, done.output
    layout = json.loads(done.stdout)["summary"]["layout"]
    assert (layout["strategy_source"], layout["padding_side"]) == ("shard metadata", "left")


def test_a_foreign_shard_without_metadata_is_inferred_as_before(outputs, tmp_path) -> None:
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(_read_table(_shard(outputs["pad"])).replace_schema_metadata(None), foreign)
    shards, manifest = open_input(str(foreign), None, whole=False)
    assert shards[0].contract is None and manifest is None
    result = maskprep.inspect(str(foreign))
    assert (result.layout.strategy_source, result.layout.pad_id_source) == (
        "inferred",
        "inferred",
    )
    assert result.layout.pad_id == PAD and result.ok
    assert sample_rows(str(foreign), 4, 0, 0).facts == maskprep.verifying.sampling.DataFacts()
    pytest.importorskip("torch", reason="the collator needs the verify extra (torch)")
    collator = Collator.for_output(foreign, causal=True)
    assert (collator.pad_id, collator.padding_side, collator.packed) == (None, None, None)
    # ... and pads from what the rows show.
    rows = pq.read_table(foreign).slice(0, 3).to_pylist()
    assert collator(rows)["input_ids"].shape[0] == 3


@pytest.fixture
def contradicted(outputs, tmp_path) -> Path:
    """A copy of the pack output whose shard's metadata says pad id 0 (the manifest: 3),
    its manifest unchanged but for the shard's new sha256 (a shard of another build copied in)."""
    out = Path(shutil.copytree(outputs["pack"], tmp_path / "out"))
    _with_metadata(_shard(out), pad_token_id=0)
    return out


def test_inspect_fails_a_shard_whose_metadata_contradicts_the_manifest(contradicted, runner):
    result = maskprep.inspect(str(contradicted), maskprep.InspectOptions(check_hashes=False))
    check = next(c for c in result.checks if c.name == "shards_match_manifest")
    assert check.status == "fail"
    assert "data-00000.parquet: metadata: pad_token_id 0 (manifest 3)" in check.detail
    # The manifest's facts are the ones the rows are held to: they are the output's record.
    assert result.layout.pad_id == PAD and result.layout.pad_id_source == "manifest"
    done = runner.invoke(main, ["inspect", str(contradicted), "--no-hash-check"])
    assert done.exit_code == 1
    assert "FAILED: 1 check(s): shards_match_manifest" in done.stdout


def test_verify_and_the_collator_refuse_it(contradicted, runner, tmp_path) -> None:
    expected = (
        "data-00000.parquet: its metadata: pad_token_id 0 (manifest 3); not the shard this build "
        "wrote (copied in from another output?)"
    )
    with pytest.raises(DataError, match="pad_token_id 0 \\(manifest 3\\)") as raised:
        sample_rows(str(contradicted), 4, 0, 0)
    assert str(raised.value).endswith(expected)
    with pytest.raises(DataError) as raised:
        Collator.for_output(contradicted, causal=True)
    assert str(raised.value).endswith(expected)
    # The data is refused before any model is loaded.
    done = runner.invoke(main, ["verify", str(contradicted), "-m", str(tmp_path / "no-model")])
    assert_one_line(done, 1, "pad_token_id 0 (manifest 3)", "not the shard this build wrote")


def test_shards_of_different_builds_without_a_manifest_are_refused(outputs, tmp_path, runner):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(_shard(outputs["pack"]), mixed / "a.parquet")
    shutil.copy(_shard(outputs["pack"]), mixed / "b.parquet")
    assert maskprep.inspect(str(mixed)).ok  # two shards of one build agree
    _with_metadata(mixed / "b.parquet", max_length=64)
    done = runner.invoke(main, ["inspect", str(mixed)])
    line = assert_one_line(done, 1, "b.parquet", "max_length 64 (", "a.parquet 48)")
    assert line.endswith("shards of different builds; read them apart")
    with pytest.raises(DataError, match="shards of different builds"):
        Collator.for_output(mixed, causal=True)
    with pytest.raises(DataError, match="shards of different builds"):
        sample_rows(str(mixed), 2, 0, 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "its maskprep metadata is not a JSON object"),
        (b'["a list"]', "maskprep metadata: expected an object, got a list"),
        (b'{"contract": 1}', "maskprep metadata.maskprep_version: missing"),
    ],
)
def test_unreadable_metadata_is_a_data_error(outputs, tmp_path, runner, value, message) -> None:
    path = tmp_path / "bad.parquet"
    table = _read_table(_shard(outputs["pad"]))
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: value}), path)
    done = runner.invoke(main, ["inspect", str(path)])
    assert_one_line(done, 1, "bad.parquet", message)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pad_token_id": -1}, "pad_token_id: -1 is not a token id"),
        ({"padding_side": "up"}, "padding_side: 'up' is not left or right"),
        ({"records": "poems"}, "records: 'poems' is not one of text, prompt_completion, chat"),
        ({"packed": True}, "packed: True with strategy 'pad'"),
        ({"contract": 99}, "column contract 99 is newer than this maskprep reads (1)"),
        ({"max_length": 0}, "max_length and vocab_size must be positive"),
        ({"strategy": 7}, "maskprep metadata.strategy: expected a string, got 7"),
    ],
)
def test_metadata_with_values_no_build_writes_is_refused(outputs, tmp_path, changes, message):
    path = tmp_path / "bad.arrow"
    shutil.copy(_shard(outputs["pad"]), path)
    _with_metadata(path, **changes)
    for read in (
        lambda: maskprep.inspect(str(path)),
        lambda: Collator.for_output(path, causal=True),
        lambda: sample_rows(str(path), 2, 0, 0),
    ):
        with pytest.raises(DataError, match=r"bad\.arrow") as raised:
            read()
        assert message in str(raised.value) and "\n" not in str(raised.value)
