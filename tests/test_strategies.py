"""Strategies bucket, pack and none: lossless rows, invariants, bucket choice, packing quality."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st
from row_invariants import check_rows, read_rows, smallest_bucket
from transformers import AutoTokenizer

from maskprep import IGNORE_INDEX, ConfigError, ShapeConfig, build
from maskprep.cli import main
from maskprep.config import resolve_buckets
from maskprep.output.names import MANIFEST_NAME
from maskprep.shaping.rows import PackShaper, best_fit_decreasing
from maskprep.tokenizing.encoder import EncodedDoc

PAD = 3  # <pad> of the with_pad tokenizer
EOS = 2
BUCKETS = (8, 16, 32, 64)
STRATEGY_OPTIONS = {
    "pad": {"strategy": "pad"},
    "bucket": {"strategy": "bucket", "buckets": BUCKETS},
    "pack-greedy": {"strategy": "pack", "pack_algorithm": "greedy"},
    "pack-bfd": {"strategy": "pack", "pack_algorithm": "bfd", "pack_window": 7},
    "none": {"strategy": "none"},
}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """40 documents of 3 to 55 tokens (with_pad tokenizer), in a fixed pseudo-random order."""
    words = " ".join(dict.fromkeys(CORPUS)).split()
    rng = random.Random(7)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(40)]


@pytest.fixture(scope="module")
def data(texts, tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("in") / "docs.jsonl", [{"text": t} for t in texts])


def _build(data, tokenizer, out, max_length=64, **options):
    shape = {
        k: options.pop(k) for k in ("buckets", "pack_algorithm", "pack_window") if k in options
    }
    config = make_config([data], tokenizer, out, max_length=max_length, **options)
    if shape:
        config = _with_shape(config, **shape)
    return build(config)


def _with_shape(config, **shape):
    import dataclasses

    fields = {**dataclasses.asdict(config.shape), **shape}
    return dataclasses.replace(config, shape=ShapeConfig(**fields))


def _documents(rows, strategy):
    """Split rows back into documents: (ids, labels) of each, in row order."""
    docs = []
    for row in rows:
        ids = np.asarray(row["input_ids"])
        labels = np.asarray(row["labels"])
        real = np.asarray(row["attention_mask"]) == 1
        ids, labels = ids[real], labels[real]
        bounds = np.cumsum(row["seq_lens"])[:-1] if strategy == "pack" else []
        docs.extend(zip(np.split(ids, bounds), np.split(labels, bounds), strict=True))
    return [(a.tolist(), b.tolist()) for a, b in docs]


# --- no token lost, duplicated or reordered ------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGY_OPTIONS))
def test_every_document_comes_back_as_its_own_tokenization(name, data, texts, with_pad, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(with_pad)
    options = STRATEGY_OPTIONS[name]
    # Packed documents end with EOS by default: where one ends, the next starts.
    eos = [EOS] if options["strategy"] == "pack" else []
    expected = [tokenizer(t)["input_ids"] + eos for t in texts]
    # overflow "error": every document must arrive whole, or the build fails.
    _build(data, with_pad, tmp_path / "out", overflow="error", **options)
    docs = _documents(read_rows(tmp_path / "out"), options["strategy"])
    got = [ids for ids, _ in docs]
    if name == "pack-bfd":
        # bfd regroups documents across rows; each must still be whole and present exactly once.
        assert sorted(got) == sorted(expected)
        assert got != expected  # the window really regrouped something
    else:
        assert got == expected
    for ids, labels in docs:
        first_trained = IGNORE_INDEX if options["strategy"] == "pack" else ids[0]
        assert labels == [first_trained, *ids[1:]]


def test_pack_rows_hold_several_documents_and_are_full_length(data, with_pad, tmp_path):
    result = _build(data, with_pad, tmp_path / "out", strategy="pack")
    rows = read_rows(tmp_path / "out")
    assert all(len(r["input_ids"]) == 64 for r in rows)
    assert result.totals.rows_written == len(rows) < 40
    assert sum(len(r["seq_lens"]) for r in rows) == 40


def test_none_rows_are_exactly_their_documents(data, texts, with_pad, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(with_pad)
    result = _build(data, with_pad, tmp_path / "out", strategy="none")
    rows = read_rows(tmp_path / "out")
    assert [len(r["input_ids"]) for r in rows] == [len(tokenizer(t)["input_ids"]) for t in texts]
    assert result.totals.pad_tokens == 0
    assert result.manifest.as_dict()["totals"]["fill"] == 1.0


# --- invariants on every row of every strategy ---------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGY_OPTIONS))
@pytest.mark.parametrize(
    ("overflow", "padding_side"), [("truncate", "right"), ("split", "left"), ("drop", "left")]
)
def test_invariants_hold_on_every_row(name, overflow, padding_side, data, with_pad, tmp_path):
    options = dict(STRATEGY_OPTIONS[name])
    strategy = options["strategy"]
    if strategy == "pack":
        padding_side = "right"
    if strategy == "bucket":
        options["buckets"] = (8, 16, 24)
    # max_length 32 leaves some documents too long, so every overflow policy is exercised.
    result = _build(
        data, with_pad, tmp_path / "out", max_length=32, overflow=overflow,
        padding_side=padding_side, **options,
    )  # fmt: skip
    rows = read_rows(tmp_path / "out")
    assert len(rows) == result.totals.rows_written > 0
    buckets = (8, 16, 24, 32) if strategy == "bucket" else None
    violations = check_rows(rows, strategy, PAD, padding_side, max_length=32, buckets=buckets)
    assert violations == []
    totals = result.manifest.as_dict()["totals"]
    assert totals["documents_written"] + totals["documents_dropped"] == totals["records_read"]
    if overflow == "drop":
        assert totals["documents_dropped"] > 0
    if overflow == "split":
        assert totals["rows_from_splits"] > totals["documents_split"] > 0


def test_pad_equal_to_eos_keeps_every_real_eos_trained_in_packs(data, texts, llama_like, tmp_path):
    _build(data, llama_like, tmp_path / "out", strategy="pack", pad_token="eos", add_eos=True)
    rows = read_rows(tmp_path / "out")
    assert check_rows(rows, "pack", EOS, max_length=64) == []
    docs = _documents(rows, "pack")
    assert len(docs) == len(texts)
    for ids, labels in docs:
        assert ids[-1] == EOS and labels[-1] == EOS
    tails = [np.asarray(r["labels"])[np.asarray(r["attention_mask"]) == 0] for r in rows]
    assert all((tail == IGNORE_INDEX).all() for tail in tails)


# --- the checker itself catches planted defects -------------------------------------------------


@pytest.fixture(scope="module")
def packed_rows(data, with_pad, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("packed") / "out"
    _build(data, with_pad, out, strategy="pack")
    return read_rows(out)


def _plant(rows, index, column, position, value):
    """A copy of ``rows`` with one value changed (``position`` None for a scalar column)."""
    rows = [dict(r) for r in rows]
    if position is None:
        rows[index][column] = value
        return rows
    planted = list(rows[index][column])
    planted[position] = value
    rows[index][column] = planted
    return rows


def test_checker_catches_each_planted_pack_defect(packed_rows):
    assert check_rows(packed_rows, "pack", PAD, max_length=64) == []
    row = packed_rows[0]
    real = row["length"]
    second_doc = row["seq_lens"][0]
    cases = [
        (_plant(packed_rows, 0, "attention_mask", real - 1, 2), 0, [1]),
        (_plant(packed_rows, 0, "length", None, real + 1), 0, [1, 4]),
        (_plant(packed_rows, 0, "labels", real, 5), 0, [2]),
        (_plant(packed_rows, 0, "labels", 1, 7 if row["input_ids"][1] != 7 else 8), 0, [2]),
        (_plant(packed_rows, 0, "input_ids", 63, 0), 0, [4]),
        (_plant(packed_rows, 0, "position_ids", second_doc, 5), 0, [4]),
        (_plant(packed_rows, 0, "labels", second_doc, row["input_ids"][second_doc]), 0, [4]),
        (_plant(packed_rows, 1, "seq_lens", 0, packed_rows[1]["seq_lens"][0] + 1), 1, [4]),
    ]
    assert real < 64 and len(row["seq_lens"]) > 1
    for rows, where, invariants in cases:
        found = check_rows(rows, "pack", PAD, max_length=64)
        assert [v.invariant for v in found] == invariants, found
        assert {v.row for v in found} == {where}


def test_checker_catches_planted_bucket_and_pad_defects():
    good = {"input_ids": [5, 6, 7, PAD], "attention_mask": [1, 1, 1, 0], "labels": [5, 6, 7, -100]}
    good["length"] = 3
    assert check_rows([good], "bucket", PAD, buckets=(4, 8)) == []
    assert check_rows([good], "pad", PAD, max_length=4) == []
    # The same row is not minimal when a 3-token bucket exists.
    assert [v.invariant for v in check_rows([good], "bucket", PAD, buckets=(3, 4, 8))] == [3]
    left_run = {**good, "attention_mask": [0, 1, 1, 1], "input_ids": [PAD, 5, 6, 7]}
    left_run["labels"] = [-100, 5, 6, 7]
    assert [v.invariant for v in check_rows([left_run], "pad", PAD)] == [3]
    assert check_rows([left_run], "pad", PAD, padding_side="left") == []
    gap = {**good, "attention_mask": [1, 0, 1, 1], "input_ids": [5, PAD, 7, 8]}
    gap["labels"] = [5, -100, 7, 8]
    assert [v.invariant for v in check_rows([gap], "pad", PAD)] == [3]
    wrong_length = {**good, "length": 4}
    assert [v.invariant for v in check_rows([wrong_length], "pad", PAD)] == [1]
    assert [v.what for v in check_rows([good], "none", PAD)] == ["unpadded row holds padding"]
    assert check_rows([{**good, "input_ids": [5, 6, 7, 0]}], "pad", PAD)[0].what == (
        "padded position does not hold the pad id"
    )


# --- bucket choice ------------------------------------------------------------------------------


def test_each_row_uses_the_smallest_bucket_that_holds_it(data, texts, with_pad, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(with_pad)
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    result = _build(data, with_pad, tmp_path / "out", strategy="bucket", buckets=(16, 8, 40))
    rows = read_rows(tmp_path / "out")
    widths = [len(r["input_ids"]) for r in rows]
    assert widths == [smallest_bucket(n, (8, 16, 40, 64)) for n in lengths]
    assert set(widths) == {8, 16, 40, 64}
    fill = result.manifest.as_dict()["fill"]
    assert [b["length"] for b in fill["buckets"]] == [8, 16, 40, 64]
    for bucket in fill["buckets"]:
        mine = [n for n, w in zip(lengths, widths, strict=True) if w == bucket["length"]]
        assert bucket["rows"] == len(mine)
        assert bucket["real_tokens"] == sum(mine)
        assert bucket["positions"] == len(mine) * bucket["length"]
    assert sum(b["rows"] for b in fill["buckets"]) == result.totals.rows_written
    assert result.manifest.as_dict()["config"]["shape"]["buckets"] == [8, 16, 40, 64]


def test_bucket_rows_follow_the_padding_side(data, with_pad, tmp_path):
    _build(data, with_pad, tmp_path / "out", strategy="bucket", padding_side="left")
    rows = read_rows(tmp_path / "out")
    assert any(r["attention_mask"][0] == 0 for r in rows)
    assert check_rows(rows, "bucket", PAD, "left", buckets=(64,)) == []


def test_default_buckets_are_powers_of_two_from_64_up_to_max_length():
    assert resolve_buckets(None, 512) == (64, 128, 256, 512)
    assert resolve_buckets(None, 300) == (64, 128, 256, 300)
    assert resolve_buckets(None, 40) == (40,)
    assert ShapeConfig(max_length=200, strategy="bucket").buckets == (64, 128, 200)
    assert ShapeConfig(max_length=200, strategy="bucket", buckets=(100, 50, 50)).buckets == (
        50,
        100,
        200,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"strategy": "bucket", "buckets": (64, 300)},
            "bucket 300 must be between 1 and max_length",
        ),
        ({"strategy": "bucket", "buckets": (0,)}, "bucket 0 must be between 1 and max_length"),
        ({"strategy": "pad", "buckets": (64,)}, "buckets only apply to strategy 'bucket'"),
        ({"strategy": "pack", "pack_algorithm": "ffd"}, "pack_algorithm must be one of"),
        ({"strategy": "pack", "pack_window": 0}, "pack_window must be at least 1"),
        ({"strategy": "pad", "pack_algorithm": "bfd"}, "only apply to strategy 'pack', not 'pad'"),
        ({"strategy": "none", "pack_window": 10}, "only apply to strategy 'pack', not 'none'"),
    ],
)
def test_shape_config_rejects_bad_strategy_options(options, message):
    with pytest.raises(ConfigError, match=message):
        ShapeConfig(max_length=256, **options)


# --- packing algorithms --------------------------------------------------------------------------


def _docs(lengths):
    return [
        EncodedDoc(np.arange(n, dtype=np.int32) + 1000 * i, np.ones(n, bool), 0, 0, f"x:{i}")
        for i, n in enumerate(lengths)
    ]


def _pack(lengths, capacity, algorithm, window=1000, batch=None):
    """Rows of a PackShaper as lists of (document number, length); checks documents are whole."""
    shaper = PackShaper(
        ShapeConfig(capacity, "pack", pack_algorithm=algorithm, pack_window=window), pad_id=0
    )
    docs = _docs(lengths)
    batch = batch or max(len(docs), 1)
    batches = [b for i in range(0, len(docs), batch) for b in shaper.shape(docs[i : i + batch])]
    batches += list(shaper.finish())
    rows = []
    for rb in batches:
        seq = rb.extra["seq_lens"].to_pylist()
        ids = np.split(rb.input_ids, rb.offsets[1:-1])
        for row_ids, lens in zip(ids, seq, strict=True):
            starts = np.cumsum(lens) - lens
            row = []
            for start, n in zip(starts, lens, strict=True):
                doc = row_ids[start : start + n]
                assert (doc == doc[0] + np.arange(n)).all()  # whole and in order
                row.append((int(doc[0]) // 1000, n))
            rows.append(row)
    return rows


def test_greedy_keeps_input_order_and_closes_a_row_when_the_next_document_does_not_fit():
    rows = _pack([6, 4, 4, 11, 4, 4, 5], 14, "greedy")
    assert [[n for _, n in row] for row in rows] == [[6, 4, 4], [11], [4, 4, 5]]


def test_bfd_fills_rows_better_than_greedy():
    assert len(_pack([8, 8, 3, 3], 11, "greedy")) == 3
    rows = _pack([8, 8, 3, 3], 11, "bfd")
    # Within a row, documents keep their input order.
    assert [[doc for doc, _ in row] for row in rows] == [[0, 2], [1, 3]]


def test_bfd_falls_back_to_greedy_where_best_fit_would_use_more_rows():
    # Pure best-fit decreasing needs 4 rows here ([11], [6, 5], [4, 4, 4], [4]); input order, 3.
    assert len(best_fit_decreasing([6, 4, 4, 11, 4, 4, 5], 14)) == 4
    assert len(_pack([6, 4, 4, 11, 4, 4, 5], 14, "bfd")) == 3


def test_best_fit_decreasing_picks_the_tightest_row_and_breaks_ties_by_input_order():
    # After 9 and 8 the rooms are 1 and 2: the 2 takes the row of room 2, the 1 the row of 9.
    assert best_fit_decreasing([9, 8, 2, 1], 10) == [[0, 3], [1, 2]]
    assert best_fit_decreasing([5, 5, 5, 5], 10) == [[0, 1], [2, 3]]
    assert best_fit_decreasing([], 10) == []


lengths_lists = st.lists(st.integers(min_value=1, max_value=32), min_size=0, max_size=60)


@settings(max_examples=150, deadline=None)
@given(lengths=lengths_lists, window=st.integers(1, 70), batch=st.integers(1, 25))
def test_bfd_never_uses_more_rows_than_greedy_and_is_deterministic(lengths, window, batch):
    greedy = _pack(lengths, 32, "greedy", batch=batch)
    bfd = _pack(lengths, 32, "bfd", window=window, batch=batch)
    assert len(bfd) <= len(greedy)
    # Same input, any batching: the same rows.
    assert _pack(lengths, 32, "bfd", window=window, batch=max(len(lengths), 1)) == bfd
    assert _pack(lengths, 32, "greedy") == greedy
    # Every document exactly once, whole, never past the row's end.
    for rows in (greedy, bfd):
        placed = sorted(doc for row in rows for doc in row)
        assert placed == list(enumerate(lengths))
        assert all(sum(n for _, n in row) <= 32 for row in rows)


@settings(max_examples=100, deadline=None)
@given(lengths=lengths_lists, window=st.integers(1, 70))
def test_bfd_only_regroups_within_a_window(lengths, window):
    bfd = [doc for row in _pack(lengths, 32, "bfd", window=window) for doc, _ in row]
    greedy = _pack(lengths, 32, "greedy")
    # A window closes at the end of the greedy row that brings it to `window` documents; bfd
    # reorders documents inside a window, never across its ends.
    start = count = 0
    order = [doc for row in greedy for doc, _ in row]
    for row in greedy:
        count += len(row)
        end = start + count
        if count >= window or end == len(order):
            assert sorted(bfd[start:end]) == order[start:end]
            start, count = end, 0


@settings(max_examples=100, deadline=None)
@given(lengths=lengths_lists, window=st.integers(1, 70), batch=st.integers(1, 25))
def test_bfd_rows_follow_their_first_document_and_keep_input_order_inside(lengths, window, batch):
    """The row order docs/contract.md promises for bfd packs."""
    rows = [
        [doc for doc, _ in row] for row in _pack(lengths, 32, "bfd", window=window, batch=batch)
    ]
    assert all(row == sorted(row) for row in rows)
    firsts = [row[0] for row in rows]
    assert firsts == sorted(firsts)


# --- agreement with transformers' DataCollatorWithFlattening ------------------------------------


def test_pack_positions_and_labels_match_data_collator_with_flattening(data, with_pad, tmp_path):
    from transformers import DataCollatorWithFlattening

    _build(data, with_pad, tmp_path / "out", strategy="pack", pack_algorithm="bfd", pack_window=9)
    collator = DataCollatorWithFlattening(return_tensors="np")
    for row in read_rows(tmp_path / "out"):
        ids = np.asarray(row["input_ids"])
        bounds = np.cumsum(row["seq_lens"])[:-1]
        features = [{"input_ids": d.tolist()} for d in np.split(ids[: row["length"]], bounds)]
        flat = collator(features)
        assert set(flat) == {"input_ids", "labels", "position_ids"}
        real = slice(0, row["length"])
        assert flat["input_ids"][0].tolist() == row["input_ids"][real]
        assert flat["position_ids"][0].tolist() == row["position_ids"][real]
        assert flat["labels"][0].tolist() == row["labels"][real]


def test_pack_respects_each_documents_trained_mask_like_the_flattening_collator():
    from transformers import DataCollatorWithFlattening

    rng = np.random.default_rng(0)
    docs = []
    for i, n in enumerate([5, 9, 3, 12, 7, 4]):
        ids = rng.integers(10, 200, n).astype(np.int32)
        trained = np.arange(n) >= n // 2  # a prompt half that is not trained
        docs.append(EncodedDoc(ids, trained, 0, 0, f"x:{i}"))
    # greedy keeps the input order, which this walk through the documents follows.
    shaper = PackShaper(ShapeConfig(16, "pack", pack_algorithm="greedy"), pad_id=0)
    batches = [*shaper.shape(docs), *shaper.finish()]
    collator = DataCollatorWithFlattening(return_tensors="np")
    doc_iter = iter(docs)
    rows = 0
    for rb in batches:
        for r, lens in enumerate(rb.extra["seq_lens"].to_pylist()):
            mine = [next(doc_iter) for _ in lens]
            features = [
                {"input_ids": d.ids.tolist(), "labels": np.where(d.trained, d.ids, -100).tolist()}
                for d in mine
            ]
            flat = collator(features)
            row = slice(r * 16, r * 16 + sum(lens))
            assert rb.labels[row].tolist() == flat["labels"][0].tolist()
            assert (
                rb.extra["position_ids"][r].as_py()[: sum(lens)] == flat["position_ids"][0].tolist()
            )
            rows += 1
    assert rows == 3


# --- determinism, manifest, CLI ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bucket", "pack-bfd", "none"])
def test_two_builds_are_byte_identical(name, data, with_pad, tmp_path):
    options = {**STRATEGY_OPTIONS[name], "overflow": "split", "shard_rows": 7}
    if name == "bucket":
        options["buckets"] = (8, 16)
    for out in ("a", "b"):
        _build(data, with_pad, tmp_path / out, max_length=32, **options)
    assert len(list((tmp_path / "a").glob("data-*"))) > 1
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for file in names:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_pack_rows_do_not_depend_on_the_encoding_batch_size(data, with_pad, tmp_path):
    options = STRATEGY_OPTIONS["pack-bfd"]
    _build(data, with_pad, tmp_path / "a", batch_size=3, **options)
    _build(data, with_pad, tmp_path / "b", batch_size=1000, **options)
    assert read_rows(tmp_path / "a") == read_rows(tmp_path / "b")


def test_manifest_reports_pack_fill(data, with_pad, tmp_path):
    result = _build(data, with_pad, tmp_path / "out", **STRATEGY_OPTIONS["pack-bfd"])
    rows = read_rows(tmp_path / "out")
    fill = result.manifest.as_dict()["fill"]
    real = sum(r["length"] for r in rows)
    assert fill["strategy"] == "pack"
    assert fill["rows"] == len(rows)
    assert fill["documents"] == 40
    assert fill["real_tokens"] == real == result.totals.real_tokens
    assert fill["positions"] == 64 * len(rows)
    assert fill["fill"] == round(real / (64 * len(rows)), 6)
    assert fill["documents_per_row"] == round(40 / len(rows), 6)
    assert "buckets" not in fill
    shape = result.manifest.as_dict()["config"]["shape"]
    assert (shape["pack_algorithm"], shape["pack_window"]) == ("bfd", 7)


def test_cli_builds_each_strategy_and_prints_fill(data, with_pad, tmp_path, runner):
    args = ["build", str(data), "-t", str(with_pad), "--max-length", "64", "--json"]
    result = runner.invoke(
        main, [*args, "-o", str(tmp_path / "b"), "--strategy", "bucket", "--buckets", "16, 32"]
    )
    assert result.exit_code == 0, result.output
    fill = json.loads(result.stdout)["fill"]
    assert [b["length"] for b in fill["buckets"]] == [16, 32, 64]
    result = runner.invoke(
        main,
        [*args, "-o", str(tmp_path / "p"), "--strategy", "pack", "--pack-algorithm", "bfd",
         "--pack-window", "5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "p" / MANIFEST_NAME).read_text())
    assert manifest["config"]["shape"]["pack_window"] == 5
    assert manifest["fill"]["documents_per_row"] > 1
    table = runner.invoke(main, [*args[:-1], "-o", str(tmp_path / "t"), "--strategy", "bucket"])
    assert table.exit_code == 0
    assert "bucket 64" in table.stdout and "strategy" in table.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--buckets", "64,abc"], "cannot read '64,abc' as bucket lengths"),
        (
            ["--strategy", "bucket", "--buckets", "128"],
            "bucket 128 must be between 1 and max_length 64",
        ),
        (["--buckets", "32"], "buckets only apply to strategy 'bucket', not 'pad'"),
        (
            ["--pack-algorithm", "bfd"],
            "pack_algorithm and pack_window only apply to strategy 'pack'",
        ),
        (
            ["--strategy", "pack", "--padding-side", "left"],
            "packed rows are always padded on the right",
        ),
        (["--strategy", "pack", "--pack-window", "0"], "Invalid value for '--pack-window'"),
    ],
)
def test_cli_rejects_bad_strategy_options(extra, message, data, with_pad, tmp_path, runner):
    args = [
        "build",
        str(data),
        "-t",
        str(with_pad),
        "--max-length",
        "64",
        "-o",
        str(tmp_path / "o"),
    ]
    result = runner.invoke(main, [*args, *extra])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "o").exists()
