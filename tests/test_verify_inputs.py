"""verify takes what inspect takes: a shard file, a directory of shards without a manifest, Arrow
IPC (stream or file) on stdin; what the rows show is inferred, the rest are options. Each input
is judged: clean data passes, a planted defect fails."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from rowkit import one_torch_thread, pack_rows, pad_rows, random_docs, tiny_config

from maskprep import VerifyOptions, columns, verify
from maskprep.cli import main
from maskprep.columns import IGNORE_INDEX

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

PAD = 3
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
FAST = ["--from-config", "--attn-implementation", "eager"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for kind in ("gpt2", "bert", "llama"):
        tiny_config(kind).save_pretrained(root / kind)
    return {kind: root / kind for kind in ("gpt2", "bert", "llama")}


def _verify(runner, path: str, model: Path, *args: str, stdin: bytes | None = None):
    return runner.invoke(main, ["verify", path, "-m", str(model), *FAST, *args], input=stdin)


def _json(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def _check(report: dict, probe: str) -> dict:
    return next(c for c in report["checks"] if c["probe"] == probe)


def _labels_on_padding(table: pa.Table, row: int) -> pa.Table:
    rows = table.to_pylist()
    pairs = zip(rows[row]["input_ids"], rows[row]["attention_mask"], strict=True)
    rows[row]["labels"] = [t for t, _ in pairs]
    return pa.Table.from_pylist(rows, schema=table.schema)


def _foreign(table: pa.Table, *drop: str) -> pa.Table:
    """Rows as another tool writes them: int64 lists, no ``length``, maybe fewer columns."""
    kept = [n for n in table.schema.names if n not in (columns.LENGTH, *drop)]
    return pa.table({n: pa.array(table.column(n).to_pylist(), pa.list_(pa.int64())) for n in kept})


def test_a_foreign_parquet_shard_is_judged(runner, tmp_path, models) -> None:
    """The hidden check: clean → exit 0; labels on padding → exit 1, naming the row."""
    clean = _foreign(pad_rows(random_docs(1, 6), 12, PAD, "right"))
    pq.write_table(clean, tmp_path / "clean.parquet")
    report = _json(_verify(runner, str(tmp_path / "clean.parquet"), models["gpt2"], "--json"))
    assert report["ok"] is True and report["rows"] == [0, 1, 2, 3, 4, 5]
    assert _check(report, "labels_gradient")["status"] == "pass"
    pq.write_table(_labels_on_padding(clean, 4), tmp_path / "leaky.parquet")
    result = _verify(runner, str(tmp_path / "leaky.parquet"), models["gpt2"], "--json")
    assert result.exit_code == 1, result.output
    gradient = _check(json.loads(result.stdout), "labels_gradient")
    assert gradient["status"] == "LEAK" and gradient["worst_row"] == 4
    assert gradient["fix"] == "labels"


def test_a_shard_of_ids_and_mask_only_runs_the_attention_probes(runner, tmp_path, models):
    """No labels, no length: the label probes are skipped (saying why), the others run and still
    catch a leak (left padding fed to GPT-2 without position_ids)."""
    table = _foreign(pad_rows(random_docs(2, 4), 12, PAD, "left"), columns.LABELS)
    assert table.schema.names == ["input_ids", "attention_mask"]
    pq.write_table(table, tmp_path / "ids.parquet")
    report = _json(_verify(runner, str(tmp_path / "ids.parquet"), models["gpt2"], "--json"))
    assert report["ok"] is True
    for probe in ("labels_loss", "labels_gradient"):
        check = _check(report, probe)
        assert check["status"] == "skipped" and check["note"] == "the rows have no labels column"
    assert _check(report, "pad_invariance")["status"] == "pass"
    result = _verify(runner, str(tmp_path / "ids.parquet"), models["gpt2"], "--no-pad-position-ids")
    assert result.exit_code == 1 and "unpadded_reference" in result.stdout


def test_a_directory_of_shards_without_a_manifest(runner, tmp_path, models) -> None:
    """Shards another tool wrote (a Parquet file and an Arrow IPC file) read in name order, rows
    numbered across them; files dataset readers skip (``_``, ``.``) and other files ignored."""
    table = pad_rows(random_docs(3, 6), 12, PAD, "right")
    leaky = _labels_on_padding(table, 4)
    data = tmp_path / "foreign"
    data.mkdir()
    pq.write_table(leaky.slice(0, 3), data / "part-0.parquet")
    with ipc.new_file(data / "part-1.arrow", leaky.schema) as writer:
        writer.write_table(leaky.slice(3, 3))
    (data / "README.md").write_text("not a shard")
    (data / "_metadata.parquet").write_bytes(b"not read")
    (data / ".hidden.arrow").write_bytes(b"not read")
    result = _verify(runner, str(data), models["llama"], "--rows", "6", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == [0, 1, 2, 3, 4, 5]
    assert _check(report, "labels_gradient")["worst_row"] == 4
    # inspect reads the same directory with the same reader, and finds the same row.
    inspected = runner.invoke(main, ["inspect", str(data), "--json"])
    assert inspected.exit_code == 1, inspected.output
    failed = [c for c in json.loads(inspected.stdout)["checks"] if c["status"] == "fail"]
    assert [(c["name"], c["rows"]) for c in failed] == [("labels_on_padding", [4])]


def _ipc(table: pa.Table, kind: str) -> bytes:
    sink = pa.BufferOutputStream()
    opener = ipc.new_file if kind == "file" else ipc.new_stream
    with opener(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("kind", ["stream", "file"])
def test_stdin_arrow_ipc_stream_or_file(runner, models, kind) -> None:
    table = pad_rows(random_docs(4, 4), 12, PAD, "right")
    data = _ipc(table, kind)
    result = _verify(runner, "-", models["gpt2"], "--json", stdin=data)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [0, 1, 2, 3]
    leaky = _verify(runner, "-", models["gpt2"], stdin=_ipc(_labels_on_padding(table, 2), kind))
    assert leaky.exit_code == 1 and "labels_gradient" in leaky.stdout
    inspected = runner.invoke(main, ["inspect", "-", "--json"], input=data)
    assert inspected.exit_code == 0, inspected.output


def test_stdin_that_is_not_arrow_is_one_line(runner, models) -> None:
    result = _verify(runner, "-", models["gpt2"], stdin=b"input_ids,attention_mask\n1,1\n")
    assert result.exit_code == 1
    assert result.output.startswith("Error: <stdin>: not an Arrow IPC stream or file")
    assert "Traceback" not in result.output


def test_cat_an_arrow_shard_into_inspect(tmp_path, with_pad, corpus) -> None:
    """``cat data-00000.arrow | maskprep inspect -``: an IPC file on a real pipe."""
    from conftest import make_config, run_maskprep, write_jsonl

    from maskprep import build

    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus])
    build(make_config([data], with_pad, tmp_path / "out", max_length=24, format="arrow"))
    (shard,) = sorted((tmp_path / "out").glob("data-*.arrow"))
    assert shard.read_bytes()[:6] == b"ARROW1"
    done = run_maskprep("inspect", "-", "--json", stdin=shard.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["summary"]["rows"] == len(corpus)


def test_row_facts_are_inferred_and_options_override_them(runner, tmp_path, models) -> None:
    """No manifest: the pad id (7) and padding side (left) come from the rows' padding; options
    that contradict the rows are refused in one line."""
    table = pad_rows(random_docs(5, 4), 12, 7, "left")
    pq.write_table(table, tmp_path / "left.parquet")
    path = str(tmp_path / "left.parquet")
    report = _json(_verify(runner, path, models["gpt2"], "--json"))
    assert report["ok"] is True and report["packed"] is False
    result = _verify(runner, path, models["gpt2"], "--padding-side", "right")
    assert result.exit_code == 1
    assert "row 0 is padded on the left, but padding_side is 'right'" in result.output
    result = _verify(runner, path, models["gpt2"], "--pad-id", "5")
    assert result.exit_code == 1
    assert "the rows are padded with id 7, but pad_id is 5" in result.output


def test_packs_that_lost_seq_lens_are_recognised(runner, tmp_path, models) -> None:
    table = pack_rows([random_docs(6, 3), random_docs(7, 2)], 30, PAD)
    pq.write_table(table.drop_columns([columns.SEQ_LENS]), tmp_path / "packs.parquet")
    path = str(tmp_path / "packs.parquet")
    report = _json(_verify(runner, path, models["llama"], "--json"))
    assert report["packed"] is True and report["ok"] is True
    assert _check(report, "cross_document")["status"] == "pass"
    result = _verify(runner, path, models["llama"], "--no-packed")
    assert result.exit_code == 1
    assert "rows carry position_ids or seq_lens, but the collator was set up" in result.output
    mask2d = _verify(runner, path, models["llama"], "--pack-forms", "mask2d")
    assert mask2d.exit_code == 1 and "fix to try: maskprep verify ... --pack-forms" in mask2d.stdout


def test_rows_of_mixed_widths_need_a_pad_id(runner, tmp_path, models) -> None:
    docs = random_docs(8, 4)
    rows = [
        {"input_ids": d, "attention_mask": [1] * len(d), "labels": [IGNORE_INDEX, *d[1:]]}
        for d in docs
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ragged.parquet")
    path = str(tmp_path / "ragged.parquet")
    result = _verify(runner, path, models["gpt2"])
    assert result.exit_code == 1
    assert "rows of unequal length must be padded, and no pad id is known" in result.output
    assert _verify(runner, path, models["gpt2"], "--pad-id", str(PAD)).exit_code == 0


def test_an_empty_shard_is_a_data_error(runner, tmp_path, models) -> None:
    pq.write_table(columns.schema().empty_table(), tmp_path / "empty.parquet")
    result = _verify(runner, str(tmp_path / "empty.parquet"), models["gpt2"])
    assert result.exit_code == 1
    assert result.output.strip().endswith("empty.parquet: the data holds no rows")


def test_a_mask_of_ones_over_trailing_pads_is_padding_attended(runner, tmp_path, models):
    """The probes take the mask's word for what is real; with the pad id known, a mask that is 1
    over a run of trailing pad ids is padding the model attends (the classic leak)."""
    table = pad_rows(random_docs(9, 4), 12, PAD, "right")
    rows = table.to_pylist()
    rows[2]["attention_mask"] = [1] * 12
    rows[2]["length"] = 12
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "ones.parquet")
    path = str(tmp_path / "ones.parquet")
    result = _verify(runner, path, models["bert"], "--pad-id", str(PAD), "--json")
    assert result.exit_code == 1, result.output
    check = _check(json.loads(result.stdout), "padding_attended")
    assert (check["status"], check["worst_row"], check["leaking"]) == ("LEAK", 2, 1)
    assert "the model attends to padding" in check["note"]
    # The other rows' padding (mask 0) shows the pad id too.
    assert _verify(runner, path, models["bert"]).exit_code == 1
    # Negative control: the same rows with their mask right.
    pq.write_table(table, tmp_path / "right.parquet")
    report = _json(_verify(runner, str(tmp_path / "right.parquet"), models["bert"], "--json"))
    assert _check(report, "padding_attended")["status"] == "pass" and report["ok"]


def test_the_longest_rows_are_sampled_too(tmp_path) -> None:
    """30 packs; row 17 holds the longest document. A sample of 2 random rows adds it."""
    docs = [random_docs(i, 2, high=300) for i in range(30)]
    docs[17] = [list(range(10, 40)), [5, 6, 7]]
    table = pack_rows(docs, 40, PAD)
    pq.write_table(table, tmp_path / "packs.parquet")
    from maskprep.verifying.sampling import sample_rows

    sample = sample_rows(str(tmp_path / "packs.parquet"), rows=2, longest=1, seed=0)
    assert sample.longest == (17,) and 17 in sample.row_ids and len(sample.row_ids) == 3
    assert (sample.reach, sample.reach_row) == (30, 17)
    without = sample_rows(str(tmp_path / "packs.parquet"), rows=2, longest=0, seed=0)
    assert 17 not in without.row_ids and without.reach == 30  # the scan still sees every row
    took = sample.table.to_pylist()[sample.row_ids.index(17)]
    assert took["seq_lens"] == [30, 3]


def test_verify_library_reads_a_shard_file(tmp_path) -> None:
    from test_verify import _model

    table = pad_rows(random_docs(10, 3), 12, PAD, "right")
    pq.write_table(table, tmp_path / "rows.parquet")
    options = VerifyOptions(attn_implementations=("eager",), rows=3, longest=0)
    result = verify(tmp_path / "rows.parquet", _model("gpt2"), options)
    assert result.ok and result.rows == (0, 1, 2) and result.source.endswith("rows.parquet")


def test_shard_paths_of_a_manifest_stay_inside_the_output(runner, tmp_path, models) -> None:
    """A manifest naming ``../outside.parquet`` is refused by the reader inspect and verify
    share (through the manifest reader's rule), in one line, before any model is needed."""
    from rowkit import write_output

    from maskprep.output.names import MANIFEST_NAME

    table = pad_rows(random_docs(11, 2), 12, PAD, "right")
    output = write_output(tmp_path / "out", table, PAD, "right")
    pq.write_table(table, tmp_path / "outside.parquet")
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    for bad in ("../outside.parquet", str(tmp_path / "outside.parquet"), "sub/data.parquet"):
        manifest["shards"][0]["path"] = bad
        (output / MANIFEST_NAME).write_text(json.dumps(manifest))
        for command in (["verify", str(output), "-m", str(tmp_path / "no-model")],
                        ["inspect", str(output)]):  # fmt: skip
            result = runner.invoke(main, command)
            assert result.exit_code == 1, result.output
            assert result.output.startswith(f"Error: {output / MANIFEST_NAME}: shards[0].path: ")
            assert repr(bad) in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("rows", [None, 8])
def test_shards_with_different_columns_are_refused_naming_both(tmp_path, rows) -> None:
    """Sampled rows and every row alike: a shard without the labels the first one has is named
    beside it, in one line."""
    from maskprep.errors import DataError
    from maskprep.verifying.sampling import sample_rows

    table = pad_rows(random_docs(4, 3), 12, PAD, "right")
    pq.write_table(table, tmp_path / "a.parquet")
    pq.write_table(table.drop_columns([columns.LABELS]), tmp_path / "b.parquet")
    expected = (
        r"shards with different columns: \S*a\.parquet has input_ids,attention_mask,labels,length, "
        r"\S*b\.parquet has input_ids,attention_mask,length$"
    )
    with pytest.raises(DataError, match=expected):
        sample = sample_rows(str(tmp_path), rows=rows, longest=0, seed=0)
        list(sample.chunks(2))
    # Negative control: two shards with the same columns are read.
    pq.write_table(table, tmp_path / "b.parquet")
    sample = sample_rows(str(tmp_path), rows=rows, longest=0, seed=0)
    assert sum(t.num_rows for t, _ in sample.chunks(2)) == 2 * table.num_rows
