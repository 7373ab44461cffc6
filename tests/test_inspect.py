"""maskprep inspect: statistics, every invariant check (each planted and caught), JSON, decoding."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import make_config, run_maskprep, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

import maskprep
from maskprep import column_values as lists
from maskprep import columns
from maskprep.cli import main
from maskprep.cli.inspect import decoded_row_text, inspect_json
from maskprep.columns import IGNORE_INDEX
from maskprep.inspecting import driver
from maskprep.inspecting.checks import CHECKS, SHARDS_MATCH_MANIFEST, CheckResult
from maskprep.inspecting.layout import LayoutHints
from maskprep.inspecting.options import InspectOptions
from maskprep.inspecting.results import decode_row
from maskprep.inspecting.stats import ColumnStats
from maskprep.output.manifest import read_manifest
from maskprep.output.names import MANIFEST_NAME
from maskprep.output.shards import sha256_file

EOS = 2  # llama_like: <s> 1, </s> 2; padded with EOS in these builds (the pad == eos case)
INVARIANTS = [spec.name for spec in CHECKS if spec.kind == "invariant"]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def built(tmp_path_factory, llama_like, corpus) -> Path:
    """A pad build with pad == eos and EOS appended: 8 rows of 32, some truncated."""
    tmp = tmp_path_factory.mktemp("built")
    source = write_jsonl(tmp / "in.jsonl", [{"text": t} for t in corpus])
    config = make_config([source], llama_like, tmp / "out", pad_token="eos", add_eos=True)
    return maskprep.build(config).output


@pytest.fixture
def out(built, tmp_path) -> Path:
    """A private copy of the build output, free to corrupt."""
    return Path(shutil.copytree(built, tmp_path / "out"))


def shard(out: Path, index: int = 0) -> Path:
    return out / read_manifest(out).as_dict()["shards"][index]["path"]


def rewrite(
    path: Path,
    change: Callable[[list[dict]], None],
    schema: pa.Schema | None = None,
    *,
    update_manifest: bool = True,
):
    """Read a shard's rows as dicts, let ``change`` edit them in place, write the shard back.

    The manifest beside it is updated to match (as a build with that defect would have written
    it), unless ``update_manifest`` is False (a shard edited after the build).
    """
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        with pa.memory_map(str(path)) as source:
            table = ipc.open_file(source).read_all()
    rows = table.to_pylist()
    change(rows)
    new = pa.Table.from_pylist(rows, schema=schema or table.schema)
    if path.suffix == ".parquet":
        pq.write_table(new, path)
    else:
        with ipc.new_file(str(path), new.schema) as writer:
            writer.write_table(new)
    manifest_path = path.parent / MANIFEST_NAME
    if update_manifest and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for entry in manifest["shards"]:
            if entry["path"] == path.name:
                entry.update(
                    sha256=sha256_file(path),
                    rows=len(rows),
                    positions=sum(len(r["attention_mask"]) for r in rows),
                    real_tokens=sum(sum(1 for m in r["attention_mask"] if m) for r in rows),
                    label_tokens=sum(
                        sum(1 for label in r["labels"] if label != IGNORE_INDEX) for r in rows
                    ),
                )
        totals = manifest["totals"]
        for total, key in TOTALS_OF_SHARDS:
            totals[total] = sum(entry[key] for entry in manifest["shards"])
        totals["pad_tokens"] = totals["positions"] - totals["real_tokens"]
        manifest_path.write_text(json.dumps(manifest))


#: Totals a build sums over its shards: (totals key, shard key).
TOTALS_OF_SHARDS = (
    ("rows_written", "rows"),
    ("positions", "positions"),
    ("real_tokens", "real_tokens"),
    ("label_tokens", "label_tokens"),
)


def failing(result) -> dict[str, tuple[int, tuple[int, ...]]]:
    return {c.name: (c.count, c.rows) for c in result.checks if c.status == "fail"}


def check(result, name: str) -> CheckResult:
    return next(c for c in result.checks if c.name == name)


def real_positions(row: dict) -> list[int]:
    return [i for i, m in enumerate(row["attention_mask"]) if m]


def padded_positions(row: dict) -> list[int]:
    return [i for i, m in enumerate(row["attention_mask"]) if not m]


def packed_table(docs: list[list[int]], layout: list[list[int]], width: int, pad: int = 0):
    """Packed rows built by hand as DESIGN.md describes them: documents ``layout[r]`` placed in
    row ``r``, ``position_ids`` restarting per document, the first label of each document -100,
    the tail padded."""
    rows = []
    for doc_numbers in layout:
        ids, labels, positions, seq_lens = [], [], [], []
        for number in doc_numbers:
            doc = docs[number]
            ids += doc
            labels += [IGNORE_INDEX, *doc[1:]]
            positions += list(range(len(doc)))
            seq_lens.append(len(doc))
        real = len(ids)
        tail = width - real
        rows.append(
            {
                "input_ids": ids + [pad] * tail,
                "attention_mask": [1] * real + [0] * tail,
                "labels": labels + [IGNORE_INDEX] * tail,
                "length": real,
                "position_ids": positions + [0] * tail,
                "seq_lens": seq_lens,
            }
        )
    return pa.Table.from_pylist(rows, schema=columns.schema(packed=True))


DOCS = [[1, 10, 11, 12, 2], [1, 20, 21, 2], [1, 30, 2], [1, 40, 41, 42, 43, 2], [1, 50, 2]]
PACK_LAYOUT = [[0, 1], [2, 3], [4], [1, 2, 4]]


@pytest.fixture
def packed(tmp_path) -> Path:
    path = tmp_path / "packed.parquet"
    pq.write_table(packed_table(DOCS, PACK_LAYOUT, width=12), path)
    return path


# ----------------------------------------------------------------------------- passing data


def test_build_output_passes_and_matches_the_manifest(built):
    result = maskprep.inspect(str(built))
    assert result.passes(strict=True), failing(result)
    assert {c.name for c in result.checks if c.status == "skip"} == {
        "seq_lens_sum",
        "position_ids_restart",
        "document_start_label",
        "pad_fraction",
        "label_fraction",
        "pad_attended_at_edge",  # pad == EOS here: a real EOS ends the run
    }
    totals = read_manifest(built).as_dict()["totals"]
    s = result.stats
    assert (s.rows, s.positions, s.real_tokens, s.label_tokens) == (
        totals["rows_written"],
        totals["positions"],
        totals["real_tokens"],
        totals["label_tokens"],
    )
    assert s.pad_tokens == totals["pad_tokens"]
    assert s.pad_fraction == pytest.approx(1 - totals["fill"], abs=1e-6)
    assert result.layout.strategy == "pad" and result.layout.strategy_source == "manifest"
    assert (result.layout.pad_id, result.layout.eos_id, result.layout.max_length) == (EOS, EOS, 32)
    assert result.build is not None
    assert result.build.documents_read == totals["records_read"]
    assert result.build.documents_truncated == totals["documents_truncated"]
    assert result.build.tokens_lost == totals["tokens_truncated"] + totals["tokens_dropped"]
    assert result.build.tokenizer["eos_token_id"] == EOS
    eos = check(result, "eos_never_trained")
    assert eos.status == "pass" and "trained" in eos.detail
    assert sum(b.rows for b in s.histogram) == s.rows
    table = pq.read_table(shard(built))
    lengths = np.asarray(table.column("length"))
    assert (s.lengths.min, s.lengths.max) == (lengths.min(), lengths.max())
    assert s.lengths.p50 == np.percentile(lengths, 50)


BUILDS = {
    "pad left, arrow, 3 rows a shard": {"padding_side": "left", "format": "arrow", "shard_rows": 3},
    "pad, split windows": {"overflow": "split", "stride": 2, "max_length": 12},
    "bucket": {"strategy": "bucket", "buckets": (8, 16, 32)},
    "pack greedy": {"strategy": "pack", "max_length": 96, "pack_algorithm": "greedy"},
    "pack bfd": {"strategy": "pack", "max_length": 96},
    "none": {"strategy": "none"},
}


def build_with(tmp_path, tokenizer, records, **options) -> Path:
    """Build ``records``; shape options beyond make_config's go straight into ShapeConfig."""
    shape = {k: options.pop(k) for k in ("buckets", "pack_algorithm", "sft") if k in options}
    source = write_jsonl(tmp_path / "in.jsonl", records)
    config = make_config([source], tokenizer, tmp_path / "out", **options)
    sft = shape.pop("sft", None)
    if shape:
        config = dataclasses.replace(config, shape=dataclasses.replace(config.shape, **shape))
    if sft is not None:
        config = dataclasses.replace(config, sft=sft)
    return maskprep.build(config).output


@pytest.mark.parametrize("options", BUILDS.values(), ids=BUILDS.keys())
def test_builds_of_every_strategy_pass(tmp_path, with_pad, corpus, options):
    output = build_with(tmp_path, with_pad, [{"text": t} for t in corpus], add_eos=True, **options)
    result = maskprep.inspect(str(output))
    assert result.passes(strict=True), failing(result)
    manifest = read_manifest(output)
    strategy = manifest.config.strategy
    assert (result.layout.strategy, result.layout.strategy_source) == (strategy, "manifest")
    assert result.layout.pad_id == 3 and result.layout.eos_id == EOS
    assert result.stats.rows == manifest.totals.rows_written
    assert result.stats.real_tokens == manifest.totals.real_tokens
    assert result.stats.label_tokens == manifest.totals.label_tokens
    if strategy == "pack":
        assert result.stats.documents == manifest.totals.shape.documents_written
        assert result.stats.documents_per_row.max > 1
        assert check(result, "position_ids_restart").status == "pass"
    if strategy == "bucket":
        assert result.layout.buckets == (8, 16, 32)
        assert sum(b.rows for b in result.stats.buckets) == result.stats.rows
        assert len(result.stats.buckets) > 1


def test_sft_build_passes_and_decodes_the_prompt_as_untrained(tmp_path, with_pad):
    records = [
        {"prompt": "The quick brown fox", "completion": " jumps over the lazy dog."},
        {"prompt": "Padding must never", "completion": " leak into attention."},
    ]
    sft = maskprep.SFTConfig(prompt_field="prompt", completion_field="completion")
    output = build_with(tmp_path, with_pad, records, sft=sft, add_eos=True, max_length=48)
    result = maskprep.inspect(str(output), InspectOptions(show_rows=1))
    assert result.passes(strict=True), failing(result)
    assert 0 < result.stats.label_fraction < 1
    (row,) = result.decoded
    assert [(s.role, s.text) for s in row.segments[:2]] == [
        ("prompt", "<s>The quick brown fox"),
        ("trained", " jumps over the lazy dog.</s>"),
    ]


def test_packed_rows_pass(packed):
    result = maskprep.inspect(str(packed), InspectOptions(eos_id=EOS))
    assert result.ok, failing(result)
    assert result.layout.strategy == "pack" and result.layout.strategy_source == "inferred"
    assert result.stats.documents == 8
    assert result.stats.documents_per_row.max == 3
    for name in ("seq_lens_sum", "position_ids_restart", "document_start_label"):
        assert check(result, name).status == "pass"


def test_bucketed_rows_pass_and_report_per_bucket(tmp_path):
    rows = []
    for length, width in [(3, 8), (8, 8), (9, 16), (16, 16), (17, 32), (30, 32), (5, 8)]:
        ids = list(range(10, 10 + length))
        rows.append(
            {
                "input_ids": ids + [0] * (width - length),
                "attention_mask": [1] * length + [0] * (width - length),
                "labels": ids + [IGNORE_INDEX] * (width - length),
                "length": length,
            }
        )
    path = tmp_path / "bucket.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=columns.schema()), path)
    result = maskprep.inspect(str(path))
    assert result.ok, failing(result)
    assert result.layout.strategy == "bucket" and result.layout.buckets == (8, 16, 32)
    assert [(b.width, b.rows) for b in result.stats.buckets] == [(8, 3), (16, 2), (32, 2)]
    assert result.stats.buckets[0].fill == pytest.approx((3 + 8 + 5) / 24)
    assert all(sum(h.rows for h in b.histogram) == b.rows for b in result.stats.buckets)

    # A row padded to 32 while 16 would hold it is not the smallest bucket that fits.
    def widen(rows):
        rows[2]["input_ids"] += [0] * 16
        rows[2]["attention_mask"] += [0] * 16
        rows[2]["labels"] += [IGNORE_INDEX] * 16

    rewrite(path, widen)
    result = maskprep.inspect(str(path))
    assert failing(result) == {"row_width": (1, (2,))}
    # Given buckets that have no 16, the same row is fine and the 16-wide row is not.
    given = maskprep.inspect(str(path), InspectOptions(strategy="bucket", buckets=(8, 32)))
    assert failing(given) == {"row_width": (1, (3,))}


def test_strategy_none_rows(tmp_path):
    rows = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids, "length": len(ids)}
        for ids in ([5, 6, 7], [5, 6], [5, 6, 7, 8, 9])
    ]
    path = tmp_path / "none.arrow"
    with ipc.new_file(str(path), columns.schema()) as writer:
        writer.write_table(pa.Table.from_pylist(rows, schema=columns.schema()))
    result = maskprep.inspect(str(path))
    assert result.ok and result.layout.strategy == "none"
    assert result.stats.pad_tokens == 0

    def pad_one(rows):
        rows[1]["input_ids"].append(0)
        rows[1]["attention_mask"].append(0)
        rows[1]["labels"].append(IGNORE_INDEX)

    rewrite(path, pad_one)
    result = maskprep.inspect(str(path), InspectOptions(strategy="none"))
    assert failing(result) == {"row_width": (1, (1,))}


# ----------------------------------------------------------------------------- planted defects


def _labels_on_pads(rows):
    for r in (1, 4):
        pad = padded_positions(rows[r])[0]
        rows[r]["labels"][pad] = rows[r]["input_ids"][pad]


def _non_binary_mask(rows):
    rows[3]["attention_mask"][0] = 2


def _list_length_mismatch(rows):
    rows[2]["labels"] = rows[2]["labels"][:-1]


def _length_column(rows):
    rows[5]["length"] += 1
    rows[6]["length"] -= 3


def _label_not_input(rows):
    position = real_positions(rows[7])[3]
    rows[7]["labels"][position] = rows[7]["input_ids"][position] + 1


def _hole_in_mask(rows):
    # Row 0: a real token in the middle becomes padding, labels and length kept consistent.
    position = real_positions(rows[0])[4]
    rows[0]["attention_mask"][position] = 0
    rows[0]["labels"][position] = IGNORE_INDEX
    rows[0]["input_ids"][position] = EOS
    rows[0]["length"] -= 1


def _wrong_pad_id(rows):
    for r in (1, 6):
        rows[r]["input_ids"][padded_positions(rows[r])[-1]] = 17


def _widened_row(rows):
    rows[4]["input_ids"].append(EOS)
    rows[4]["attention_mask"].append(0)
    rows[4]["labels"].append(IGNORE_INDEX)


def _no_labels(rows):
    rows[6]["labels"] = [IGNORE_INDEX] * len(rows[6]["labels"])


PLANTED = [
    ("labels on padding", _labels_on_pads, {"labels_on_padding": (2, (1, 4))}),
    # A mask value of 2 also makes sum(attention_mask) differ from length: both are violated.
    (
        "non-binary mask",
        _non_binary_mask,
        {"mask_binary": (1, (3,)), "length_matches_mask": (1, (3,))},
    ),
    ("list length mismatch", _list_length_mismatch, {"list_lengths": (1, (2,))}),
    ("length column", _length_column, {"length_matches_mask": (2, (5, 6))}),
    ("label is not the input id", _label_not_input, {"labels_match_inputs": (1, (7,))}),
    ("padding in the middle", _hole_in_mask, {"padding_contiguous": (1, (0,))}),
    ("padding holds another id", _wrong_pad_id, {"padding_holds_pad_id": (2, (1, 6))}),
    ("row wider than max_length", _widened_row, {"row_width": (1, (4,))}),
]


@pytest.mark.parametrize(("what", "plant", "expected"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_defect_fails_the_right_check(out, what, plant, expected):
    rewrite(shard(out), plant)
    result = maskprep.inspect(str(out))
    assert failing(result) == expected
    assert not result.ok


def test_planted_defect_found_without_a_manifest(out, tmp_path):
    """The same defects in a lone shard that carries no metadata (another tool's): the pad id
    and width are inferred from the data."""
    path = tmp_path / "lone.parquet"
    shutil.copy(shard(out), path)
    rewrite(path, _wrong_pad_id, columns.schema())
    result = maskprep.inspect(str(path))
    assert result.build is None and result.layout.pad_id_source == "inferred"
    assert failing(result) == {"padding_holds_pad_id": (2, (1, 6))}
    # The same shard as maskprep wrote it says its pad id itself: nothing is inferred.
    shutil.copy(shard(out), path)
    rewrite(path, _wrong_pad_id)
    result = maskprep.inspect(str(path))
    assert result.layout.pad_id_source == "shard metadata"
    assert failing(result) == {"padding_holds_pad_id": (2, (1, 6))}


def test_eos_masked_by_value_fails_and_warns(out):
    """``labels[input_ids == pad_id] = -100`` with pad == eos: every real EOS loses its label."""
    eos_rows = []

    def mask_by_value(rows):
        for number, row in enumerate(rows):
            row["labels"] = [
                IGNORE_INDEX if t == EOS else lab
                for t, lab in zip(row["input_ids"], row["labels"], strict=True)
            ]
            if any(row["input_ids"][p] == EOS for p in real_positions(row)):
                eos_rows.append(number)

    rewrite(shard(out), mask_by_value)
    assert eos_rows, "the build should end documents with EOS"
    result = maskprep.inspect(str(out))
    assert failing(result) == {"eos_masked_by_value": (len(eos_rows), tuple(eos_rows[:5]))}
    warned = check(result, "eos_never_trained")
    assert (warned.status, warned.count, warned.rows) == (
        "warn",
        len(eos_rows),
        tuple(eos_rows[:5]),
    )
    assert "trained 0 times" in warned.detail


def test_untrained_eos_after_an_untrained_prompt_is_not_flagged(tmp_path):
    """An EOS inside an untrained prompt is a choice, not value masking."""
    ids = [1, 30, 31, 2, 40, 41, 2]
    labels = [IGNORE_INDEX] * 4 + [40, 41, 2]
    row = {"input_ids": ids, "attention_mask": [1] * 7, "labels": labels, "length": 7}
    table = pa.Table.from_pylist([row], schema=columns.schema())
    results = {r.name: r for r in driver.check_table(table, LayoutHints(eos_id=EOS))}
    assert results["eos_masked_by_value"].status == "pass"
    assert results["eos_never_trained"].status == "pass"


def test_eos_checks_without_an_eos_id(packed):
    """Without an EOS id, eos_never_trained cannot run (skipped for lack of it) and
    eos_masked_by_value looks for the pad == EOS trap from the pad id instead (#14)."""
    result = maskprep.inspect(str(packed))
    never = check(result, "eos_never_trained")
    assert (never.status, never.detail, never.unknown) == ("skip", "EOS id unknown", "EOS id")
    masked = check(result, "eos_masked_by_value")
    assert masked.status == "pass" and "pad id 0 (inferred)" in masked.detail


def _boundary_label(rows):
    # Row 1 holds documents 2 and 3; train the first token of document 3 on document 2's end.
    start = len(DOCS[2])
    rows[1]["labels"][start] = rows[1]["input_ids"][start]


def _positions_continue(rows):
    # Row 3 counts straight through its three documents instead of restarting.
    real = rows[3]["length"]
    rows[3]["position_ids"][:real] = list(range(real))


def _seq_lens_sum(rows):
    rows[0]["seq_lens"][1] += 1
    rows[2]["seq_lens"] = [-1, 4]


PACK_PLANTED = [
    ("first label of a document trained", _boundary_label, {"document_start_label": (1, (1,))}),
    ("position ids do not restart", _positions_continue, {"position_ids_restart": (1, (3,))}),
    ("seq_lens do not sum to length", _seq_lens_sum, {"seq_lens_sum": (2, (0, 2))}),
]


@pytest.mark.parametrize(
    ("what", "plant", "expected"), PACK_PLANTED, ids=[p[0] for p in PACK_PLANTED]
)
def test_planted_pack_defect_fails_the_right_check(packed, what, plant, expected):
    rewrite(packed, plant)
    assert failing(maskprep.inspect(str(packed), InspectOptions(eos_id=EOS))) == expected


def test_left_padded_pack_rows_are_placed_by_their_real_run(tmp_path):
    table = packed_table(DOCS, PACK_LAYOUT, width=12)
    rows = table.to_pylist()
    for row in rows:
        tail = 12 - row["length"]
        for name in ("input_ids", "attention_mask", "labels", "position_ids"):
            row[name] = row[name][row["length"] :] + row[name][: row["length"]]
        assert tail >= 0
    rows[3]["labels"][12 - rows[3]["length"]] = 1  # first token of row 3's first document
    left = pa.Table.from_pylist(rows, schema=table.schema)
    failed = {r.name: r.rows for r in driver.check_table(left) if r.status == "fail"}
    assert failed == {"document_start_label": (3,)}


def test_warnings_pass_unless_strict(out, runner):
    rewrite(shard(out), _no_labels)
    result = maskprep.inspect(str(out))
    warned = check(result, "rows_without_labels")
    assert (warned.status, warned.count, warned.rows) == ("warn", 1, (6,))
    assert result.ok and not result.passes(strict=True)
    assert runner.invoke(main, ["inspect", str(out)]).exit_code == 0
    assert runner.invoke(main, ["inspect", str(out), "--strict"]).exit_code == 1


def test_fraction_warnings(built):
    table = pq.read_table(shard(built))
    widths = np.asarray([len(r) for r in table.column("input_ids").to_pylist()])
    lengths = np.asarray(table.column("length"))
    padded_rows = tuple(int(i) for i in np.flatnonzero((widths - lengths) / widths > 0.05))
    result = maskprep.inspect(str(built), InspectOptions(max_pad_fraction=0.05))
    pad = check(result, "pad_fraction")
    assert (pad.status, pad.count, pad.rows) == ("warn", len(padded_rows), padded_rows[:5])
    relaxed = maskprep.inspect(str(built), InspectOptions(max_pad_fraction=0.9))
    assert check(relaxed, "pad_fraction").status == "pass"
    # Every real token is trained here: a minimum of 100 % holds, and nothing can exceed it.
    full = maskprep.inspect(str(built), InspectOptions(min_label_fraction=1.0))
    assert check(full, "label_fraction").status == "pass"


def test_label_fraction_warns_for_mostly_prompt_rows():
    rows = []
    for trained in (1, 1, 6):
        ids = [5] * 8
        labels = [IGNORE_INDEX] * (8 - trained) + [5] * trained
        rows.append({"input_ids": ids, "attention_mask": [1] * 8, "labels": labels, "length": 8})
    table = pa.Table.from_pylist(rows, schema=columns.schema())
    results = {
        r.name: r for r in driver.check_table(table, options=InspectOptions(min_label_fraction=0.5))
    }
    assert (results["label_fraction"].status, results["label_fraction"].rows) == ("warn", (0, 1))


def test_defects_across_shards_and_batches_keep_global_row_numbers(tmp_path, with_pad, corpus):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    config = make_config([source], with_pad, tmp_path / "out", shard_rows=3, format="arrow")
    output = maskprep.build(config).output
    rewrite(shard(output, 2), _labels_on_pads_first_row)
    for batch_rows in (1, 2, 1000):
        result = maskprep.inspect(str(output), InspectOptions(batch_rows=batch_rows))
        assert failing(result) == {"labels_on_padding": (1, (6,))}


def _labels_on_pads_first_row(rows):
    pad = padded_positions(rows[0])[0]
    rows[0]["labels"][pad] = rows[0]["input_ids"][pad]


def test_sample_inspects_a_seeded_subset(out):
    rewrite(shard(out), lambda rows: [_no_labels_all(row) for row in rows])
    first = maskprep.inspect(str(out), InspectOptions(sample=3, seed=7))
    again = maskprep.inspect(str(out), InspectOptions(sample=3, seed=7))
    assert first.sampled and first.stats.rows == 3 and first.rows_total == 8
    warned = check(first, "rows_without_labels")
    assert warned.count == 3 and warned.rows == check(again, "rows_without_labels").rows
    assert list(warned.rows) == sorted(warned.rows) and max(warned.rows) < 8
    other = maskprep.inspect(str(out), InspectOptions(sample=3, seed=8))
    assert check(other, "rows_without_labels").count == 3


def _no_labels_all(row):
    row["labels"] = [IGNORE_INDEX] * len(row["labels"])


# ----------------------------------------------------------------------------- inputs


def test_foreign_shard_without_manifest(tmp_path):
    """A shard another tool wrote: int64 lists, an extra text column, no manifest."""
    rows = []
    for ids in ([101, 7, 8, 102], [101, 9, 102], [101, 7, 7, 7, 7, 102]):
        pad = 6 - len(ids)
        rows.append(
            {
                "text": "x",
                "input_ids": ids + [0] * pad,
                "attention_mask": [1] * len(ids) + [0] * pad,
                "labels": ids + [IGNORE_INDEX] * pad,
                "length": len(ids),
            }
        )
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # every integer is int64 here
    result = maskprep.inspect(str(path), InspectOptions(eos_id=102))
    assert result.passes(), failing(result)
    # --strict wants every check run: without a manifest, nothing told the vocabulary size or
    # the pad id (inferring it cannot tell an all-ones row's padding), so two checks were not.
    lacking = {c.name: c.unknown for c in result.failures(strict=True)}
    assert lacking == {"ids_in_vocabulary": "vocabulary size", "padding_attended": "pad id"}
    told = maskprep.inspect(str(path), InspectOptions(eos_id=102, pad_id=0, vocab_size=103))
    assert told.passes(strict=True), failing(told)
    assert result.build is None
    assert (result.layout.strategy, result.layout.pad_id, result.layout.max_length) == ("pad", 0, 6)
    assert check(result, "eos_never_trained").status == "pass"


def test_missing_column_is_a_data_error(tmp_path, runner):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]}), path)
    outcome = runner.invoke(main, ["inspect", str(path)])
    assert outcome.exit_code == 1
    # length is not required: inspect computes it from attention_mask (#14)
    assert f"{path}: missing column(s) labels" in outcome.output
    assert "length" not in outcome.output.split("; ")[0]


def test_unfinished_output_and_missing_path(tmp_path, runner):
    (tmp_path / "half").mkdir()
    outcome = runner.invoke(main, ["inspect", str(tmp_path / "half")])
    assert (
        outcome.exit_code == 1 and f"no {MANIFEST_NAME}; the build did not finish" in outcome.output
    )
    outcome = runner.invoke(main, ["inspect", str(tmp_path / "nothing.parquet")])
    assert outcome.exit_code == 2 and "no such file or directory" in outcome.output


@pytest.mark.integration  # a subprocess
def test_stdin_arrow_stream(built):
    table = pq.read_table(shard(built))
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    done = run_maskprep(
        "inspect", "-", "--json", "--eos-id", str(EOS), stdin=sink.getvalue().to_pybytes()
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["summary"]["source"] == "-"
    assert report["summary"]["rows"] == table.num_rows

    rows = table.to_pylist()
    _labels_on_pads(rows)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(pa.Table.from_pylist(rows, schema=table.schema))
    done = run_maskprep("inspect", "-", stdin=sink.getvalue().to_pybytes())
    assert done.returncode == 1
    assert "FAILED: 1 check(s): labels_on_padding" in done.stdout.decode()


# ----------------------------------------------------------------------------- CLI and JSON


def test_json_schema_is_stable(out, runner):
    rewrite(shard(out), _labels_on_pads)
    outcome = runner.invoke(main, ["inspect", str(out), "--json"])
    assert outcome.exit_code == 1
    report = json.loads(outcome.output)
    assert set(report) == {"ok", "strict", "summary", "checks", "rows", "elapsed_s"}
    assert report["ok"] is False and report["rows"] == []
    assert set(report["summary"]) == {
        "source",
        "shards",
        "rows_total",
        "sampled",
        "layout",
        "rows",
        "positions",
        "real_tokens",
        "pad_tokens",
        "pad_fraction",
        "label_tokens",
        "label_fraction",
        "lengths",
        "histogram",
        "documents",
        "documents_per_row",
        "buckets",
        "build",
    }
    assert set(report["summary"]["layout"]) == {
        "strategy",
        "strategy_source",
        "max_length",
        "buckets",
        "padding_side",
        "pad_id",
        "pad_id_source",
        "eos_id",
    }
    assert set(report["summary"]["lengths"]) == {"min", "mean", "p50", "p90", "p99", "max"}
    assert [c["name"] for c in report["checks"]] == [spec.name for spec in CHECKS]
    for item in report["checks"]:
        # "unknown" (#14): the fact a skipped check lacked, null when it ran or does not apply
        assert set(item) == {
            "name",
            "kind",
            "invariant",
            "reference",
            "status",
            "count",
            "rows",
            "detail",
            "unknown",
        }
        assert item["status"] in {"pass", "fail", "warn", "skip"}
        assert item["unknown"] is None or item["status"] == "skip"
    bad = next(c for c in report["checks"] if c["name"] == "labels_on_padding")
    assert (bad["status"], bad["count"], bad["rows"]) == ("fail", 2, [1, 4])


def test_exit_codes_and_usage_errors(built, runner):
    assert runner.invoke(main, ["inspect", str(built)]).exit_code == 0
    for args in (["--sample", "0"], ["--buckets", "8,x"], ["--max-pad-fraction", "2"]):
        assert runner.invoke(main, ["inspect", str(built), *args]).exit_code == 2
    outcome = runner.invoke(main, ["inspect", str(built), "--row", "99"])
    assert outcome.exit_code == 2
    assert "row 99 is out of range: the data has 8 rows" in outcome.output


def test_plain_report_lists_failures(out, runner):
    rewrite(shard(out), _labels_on_pads)
    outcome = runner.invoke(main, ["inspect", str(out)])
    assert outcome.exit_code == 1
    line = next(x for x in outcome.output.splitlines() if "labels_on_padding" in x and "FAIL" in x)
    assert "1, 4" in line
    assert "FAILED: 1 check(s): labels_on_padding" in outcome.output
    assert "\x1b[" not in outcome.output  # no colour codes when not a terminal


# ----------------------------------------------------------------------------- decoded view


def test_decoded_view_plain(built, runner, corpus):
    outcome = runner.invoke(main, ["inspect", str(built), "--rows", "2", "--row", "4"])
    assert outcome.exit_code == 0, outcome.output
    lines = [x for x in outcome.output.splitlines() if x.startswith("row ")]
    assert [x.split(" ")[1] for x in lines] == ["0", "1", "4"]
    assert lines[0] == f"row 0 (31/32 real): <s>{corpus[0]}</s>[pad×1]"
    assert lines[2].startswith("row 4 (6/32 real): <s>short</s>[pad×26]")


def test_decoded_roles_and_pack_boundaries(llama_like, packed):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_like)
    ids = tokenizer("hello there", add_special_tokens=False)["input_ids"]
    prompt = [1, *ids]
    row = {
        "input_ids": [*prompt, *ids, 2, 2, 2],
        "attention_mask": [1] * (len(prompt) + len(ids) + 1) + [0, 0],
        "labels": [IGNORE_INDEX] * len(prompt) + [*ids, 2, IGNORE_INDEX, IGNORE_INDEX],
    }
    decoded = decode_row(row, 9, tokenizer)
    assert [(s.role, s.text) for s in decoded.segments] == [
        ("prompt", "<s>hello there"),
        ("trained", "hello there</s>"),
        ("padding", ""),
    ]
    plain = decoded_row_text(decoded, color=False)
    real = len(prompt) + len(ids) + 1
    assert (
        plain.plain == f"row 9 ({real}/{real + 2} real): {{<s>hello there}}hello there</s>[pad×2]"
    )
    coloured = decoded_row_text(decoded, color=True)
    assert "{" not in coloured.plain
    assert {str(span.style) for span in coloured.spans} >= {"green", "cyan", "dim"}

    result = maskprep.inspect(
        str(packed), InspectOptions(tokenizer=str(llama_like), row_indices=(3,))
    )
    (shown,) = result.decoded
    assert [s.document for s in shown.segments if s.role != "padding"] == [0, 0, 1, 1, 2, 2]
    assert decoded_row_text(shown, color=False).plain.count(" ║ ") == 2


def test_decoding_without_a_tokenizer_is_a_usage_error(packed, runner):
    outcome = runner.invoke(main, ["inspect", str(packed), "--rows", "1"])
    assert outcome.exit_code == 2
    assert "decoding rows needs a tokenizer" in outcome.output


def test_json_rows_carry_segments(built):
    result = maskprep.inspect(str(built), InspectOptions(show_rows=1))
    (row,) = inspect_json(result)["rows"]
    assert row["index"] == 0
    assert [s["role"] for s in row["segments"]] == ["trained", "padding"]


# ----------------------------------------------------------------------------- vector helpers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-3, 3), max_size=5), max_size=8))
def test_segment_helpers_match_a_loop(rows):
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    flat = np.asarray([v for r in rows for v in r], np.int64)
    assert lists.segment_sum(flat, offsets).tolist() == [sum(r) for r in rows]
    assert lists.segment_any(flat > 1, offsets).tolist() == [any(v > 1 for v in r) for r in rows]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 6), st.data())
def test_segment_sum_on_equal_widths(width, n, data):
    values = np.asarray(
        data.draw(st.lists(st.integers(-3, 3), min_size=n * width, max_size=n * width)), np.int64
    )
    offsets = np.arange(n + 1, dtype=np.int64) * width
    rows = values.reshape(n, width)
    assert lists.segment_sum(values, offsets).tolist() == rows.sum(axis=1).tolist()
    assert lists.segment_sum(values > 0, offsets).tolist() == (rows > 0).sum(axis=1).tolist()


def test_planted_defects_in_a_real_pack_build(tmp_path, with_pad, corpus):
    output = build_with(
        tmp_path, with_pad, [{"text": t} for t in corpus], strategy="pack", max_length=96
    )

    def break_rows(rows):
        first_len = rows[0]["seq_lens"][0]
        rows[0]["labels"][first_len] = rows[0]["input_ids"][first_len]  # second document's start
        real = rows[1]["length"]
        rows[1]["position_ids"][:real] = list(range(real))  # no restart at document two

    rewrite(shard(output), break_rows)
    result = maskprep.inspect(str(output))
    assert failing(result) == {
        "document_start_label": (1, (0,)),
        "position_ids_restart": (1, (1,)),
    }


def test_cli_options_reach_the_library(built, packed, llama_like, runner):
    def report(*args):
        outcome = runner.invoke(main, ["inspect", *args, "--json"])
        return outcome.exit_code, json.loads(outcome.output)

    code, data = report(str(built), "--pad-id", "5")
    bad = next(c for c in data["checks"] if c["name"] == "padding_holds_pad_id")
    assert code == 1 and bad["status"] == "fail" and data["summary"]["layout"]["pad_id"] == 5
    code, data = report(str(built), "--max-pad-fraction", "0.01", "--strict")
    assert code == 1 and data["ok"] is False and data["strict"] is True
    code, data = report(str(built), "--min-label-fraction", "0.5")
    assert code == 0 and data["checks"][-1]["status"] == "pass"
    code, data = report(str(built), "--strategy", "bucket", "--buckets", "8,16,32")
    assert data["summary"]["layout"]["strategy"] == "bucket"
    assert data["summary"]["layout"]["strategy_source"] == "option"
    code, data = report(str(packed), "--tokenizer", str(llama_like), "--row", "1")
    assert code == 0 and data["summary"]["layout"]["eos_id"] == EOS
    assert [row["index"] for row in data["rows"]] == [1]
    code, data = report(str(built), "--sample", "2", "--seed", "3")
    assert data["summary"]["rows"] == 2 and data["summary"]["sampled"] is True


# ----------------------------------------------------------------------------- shards vs manifest


@pytest.fixture
def sharded(tmp_path, llama_like, corpus) -> Path:
    """A pad build of 8 rows in shards of 3 rows: 3, 3 and 2."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    config = make_config([source], llama_like, tmp_path / "sharded", pad_token="eos", shard_rows=3)
    return maskprep.build(config).output


def test_fresh_build_matches_its_manifest(sharded):
    result = maskprep.inspect(str(sharded))
    found = check(result, SHARDS_MATCH_MANIFEST)
    assert found.status == "pass"
    assert "3 shard(s) match the manifest (sha256, rows, tokens)" in found.detail


def test_shard_rewritten_after_the_build_fails(sharded, runner):
    # Same rows, other bytes: only the sha256 tells.
    rewrite(shard(sharded, 1), lambda rows: None, update_manifest=False)
    result = maskprep.inspect(str(sharded))
    found = check(result, SHARDS_MATCH_MANIFEST)
    assert (found.status, found.count, found.rows) == ("fail", 3, (3,))
    assert found.detail.startswith("1 of 3 shard(s) differ from the manifest: data-00001")
    assert "sha256" in found.detail
    assert failing(result) == {SHARDS_MATCH_MANIFEST: (3, (3,))}
    assert runner.invoke(main, ["inspect", str(sharded)]).exit_code == 1
    outcome = runner.invoke(main, ["inspect", str(sharded), "--no-hash-check"])
    assert outcome.exit_code == 0, outcome.output
    skipped = check(
        maskprep.inspect(str(sharded), InspectOptions(check_hashes=False)),
        SHARDS_MATCH_MANIFEST,
    )
    assert skipped.status == "pass" and "sha256 not checked" in skipped.detail
    sampled = check(maskprep.inspect(str(sharded), InspectOptions(sample=4)), SHARDS_MATCH_MANIFEST)
    assert sampled.status == "pass" and "sha256 not checked" in sampled.detail


def test_shard_cut_short_or_edited_names_what_differs(sharded):
    rewrite(shard(sharded, 2), lambda rows: rows.pop(), update_manifest=False)

    def untrain_first_real_token(rows):
        rows[0]["labels"][real_positions(rows[0])[0]] = IGNORE_INDEX

    rewrite(shard(sharded, 0), untrain_first_real_token, update_manifest=False)
    found = check(maskprep.inspect(str(sharded)), SHARDS_MATCH_MANIFEST)
    assert (found.status, found.count, found.rows) == ("fail", 4, (0, 6))
    assert "data-00000.parquet: sha256, label tokens" in found.detail
    assert "data-00002.parquet: sha256, rows 1 (manifest 2), positions" in found.detail
    # A sample cannot count tokens per shard, but still checks the files and their rows.
    sampled = check(
        maskprep.inspect(str(sharded), InspectOptions(sample=2, check_hashes=False)),
        SHARDS_MATCH_MANIFEST,
    )
    assert sampled.status == "fail" and "label tokens" not in sampled.detail
    assert "rows 1 (manifest 2)" in sampled.detail


def test_swapped_shards_fail(sharded):
    first, second = shard(sharded, 0), shard(sharded, 1)
    parked = first.with_name("parked")
    first.rename(parked)
    second.rename(first)
    parked.rename(second)
    found = check(maskprep.inspect(str(sharded)), SHARDS_MATCH_MANIFEST)
    assert found.status == "fail" and found.rows == (0, 3)


def test_single_shard_has_no_manifest_to_match(sharded):
    found = check(maskprep.inspect(str(shard(sharded, 0))), SHARDS_MATCH_MANIFEST)
    assert (found.status, found.detail) == ("skip", "no manifest")


def test_an_error_stops_the_hashing(sharded, monkeypatch):
    seen = {}

    def hash_until_stopped(paths, stop):
        seen["stopped"] = stop.wait(timeout=30)
        return {}

    monkeypatch.setattr(driver, "hash_files", hash_until_stopped)
    broken = shard(sharded, 1)
    pq.write_table(pq.read_table(broken).drop_columns(["labels"]), broken)
    with pytest.raises(maskprep.DataError, match="missing column"):
        maskprep.inspect(str(sharded))
    assert seen["stopped"] is True, "the hashing thread should be told to stop at once"


def test_stream_shard_in_a_build_directory(tmp_path, with_pad, corpus):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    config = make_config([source], with_pad, tmp_path / "out", format="arrow", shard_rows=3)
    out = maskprep.build(config).output
    first = shard(out, 0)
    with pa.memory_map(str(first)) as source_file:
        rows = ipc.open_file(source_file).read_all().to_pylist()
    table = pa.Table.from_pylist(rows, schema=columns.schema())
    with ipc.new_stream(str(first), table.schema) as writer:  # same rows, stream format
        writer.write_table(table)
    found = check(maskprep.inspect(str(out)), SHARDS_MATCH_MANIFEST)
    assert (found.status, found.rows) == ("fail", (0,))
    assert found.detail.endswith("data-00000.arrow: sha256")


def _stream_bytes(table: pa.Table, batch_rows: int) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def test_stdin_is_streamed_not_read_whole(built, llama_like, monkeypatch):
    import io

    table = pa.concat_tables([pq.read_table(shard(built))] * 50)  # 400 rows, 200 batches
    data = _stream_bytes(table, batch_rows=2)
    stdin = io.BytesIO(data)
    read_when_analysed = []
    add = ColumnStats.add

    def spying(*args, **kwargs):
        read_when_analysed.append(stdin.tell())
        return add(*args, **kwargs)

    monkeypatch.setattr(ColumnStats, "add", spying)
    result = maskprep.inspect("-", InspectOptions(eos_id=EOS, batch_rows=2), stdin=stdin)
    assert result.ok and result.rows_total == 400 and result.stats.rows == 400
    assert read_when_analysed[0] < len(data) // 10, "the first batch should be analysed early"
    with pytest.raises(maskprep.ConfigError, match="row 400 is out of range: the data has 400"):
        options = InspectOptions(row_indices=(400,), tokenizer=str(llama_like))
        maskprep.inspect("-", options, stdin=io.BytesIO(data))
    options = InspectOptions(row_indices=(399,), tokenizer=str(llama_like))
    last = maskprep.inspect("-", options, stdin=io.BytesIO(data))
    assert [row.index for row in last.decoded] == [399]
    sampled = maskprep.inspect("-", InspectOptions(eos_id=EOS, sample=10), stdin=io.BytesIO(data))
    assert sampled.rows_total == 400 and sampled.stats.rows == 10


def test_sample_decodes_only_the_row_groups_it_needs(tmp_path, llama_like, corpus, monkeypatch):
    texts = [f"{t} ({i})" for i, t in enumerate(corpus * 25)]  # 200 documents
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    config = make_config([source], llama_like, tmp_path / "out", pad_token="eos", batch_size=10)
    out = maskprep.build(config).output
    assert pq.ParquetFile(shard(out)).metadata.num_row_groups == 20
    groups_read = []
    iter_batches = pq.ParquetFile.iter_batches

    def counting(self, *args, row_groups=None, **kwargs):
        groups_read.extend(row_groups or range(self.metadata.num_row_groups))
        return iter_batches(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    options = InspectOptions(sample=3, seed=7, row_indices=(199,), tokenizer=str(llama_like))
    sampled = maskprep.inspect(str(out), options)
    chosen = np.sort(np.random.default_rng(7).choice(200, size=3, replace=False))
    assert sorted(set(groups_read)) == sorted({*(chosen // 10).tolist(), 19})
    assert [row.index for row in sampled.decoded] == [199]
    # The same statistics as inspecting exactly those rows.
    rows = pq.read_table(shard(out)).take(chosen)
    alone = tmp_path / "alone.parquet"
    pq.write_table(rows, alone)
    reference = maskprep.inspect(str(alone), InspectOptions(eos_id=EOS))
    assert sampled.stats.rows == 3
    for field in ("positions", "real_tokens", "pad_tokens", "label_tokens"):
        assert getattr(sampled.stats, field) == getattr(reference.stats, field), field
