"""inspect in bounded memory (#14): what it keeps of the rows gives exactly what keeping every
row gave, whatever the batches, and the new checks catch what they are for (with negative
controls). The black-box attacks are in tests/hardening/test_inspect.py."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

import maskprep
from maskprep import columns
from maskprep.inspecting.checks import FlaggedRows, RowsByValue
from maskprep.inspecting.driver import check_table
from maskprep.inspecting.layout import LayoutHints
from maskprep.inspecting.options import InspectOptions
from maskprep.inspecting.results import percentiles

counts_of = st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(counts=counts_of, offset=st.integers(min_value=0, max_value=10**6))
def test_percentiles_from_counts_are_numpys(counts, offset):
    counts = np.asarray(counts, np.int64)
    if not counts.sum():
        counts[0] = 1
    values = np.arange(len(counts), dtype=np.int64) * 7 + offset
    data = np.repeat(values, counts)
    q = [50, 90, 99, 0, 100, 33.3]
    assert percentiles(values, counts, q) == [float(x) for x in np.percentile(data, q)]


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=500)),
        max_size=60,
        unique_by=lambda p: p[1],
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=5),
)
def test_rows_by_value_match_a_naive_count_whatever_the_batches(pairs, cuts):
    keys = np.asarray([k for k, _ in pairs], np.int64)
    rows = np.asarray([r for _, r in pairs], np.int64)
    tally = RowsByValue(listed=3)
    bounds = sorted({0, len(pairs), *[c for c in cuts if c <= len(pairs)]})
    for lo, hi in reversed(list(itertools.pairwise(bounds))):  # any order of batches
        tally.add(keys[lo:hi], rows[lo:hi])
    for key in set(keys.tolist()):
        expected = sorted(rows[keys == key].tolist())
        found = tally.of(key)
        assert (found.count, list(found.first())) == (len(expected), expected[:3])


def test_flagged_rows_keep_the_smallest_rows_over_batches():
    found = FlaggedRows(listed=2)
    found.add(np.array([False, True, True]), np.array([10, 11, 12]))
    found.add(np.array([True, False]), np.array([3, 4]))
    found.add(np.array([True]), np.array([20]))
    assert (found.count, found.first()) == (4, (3, 11))


padded_rows = st.lists(
    st.tuples(
        st.integers(0, 6),  # real tokens
        st.lists(st.sampled_from([0, 3, 9]), max_size=5),  # the ids the padding holds
        st.booleans(),  # left padded
        st.sampled_from([1, 1, 2]),  # the mask value of the first real token
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(rows=padded_rows, given_pad=st.booleans())
def test_padding_and_mask_verdicts_match_a_naive_count(rows, given_pad):
    """The pad ids a row's padding holds (read from its padded positions alone), the pad id
    inferred from them, and the mask's sum (taken from its count of ones where every value is
    0 or 1) give what a row-by-row count gives."""
    table = []
    for real, pad_ids, left, first in rows:
        ids, mask = [5] * real, [first] + [1] * (real - 1) if real else []
        if left:
            ids, mask = pad_ids + ids, [0] * len(pad_ids) + mask
        else:
            ids, mask = ids + pad_ids, mask + [0] * len(pad_ids)
        labels = [-100] * len(ids)
        table.append({"input_ids": ids, "attention_mask": mask, "labels": labels, "length": 0})
    padding = [
        [t for t, m in zip(r["input_ids"], r["attention_mask"], strict=True) if not m]
        for r in table
    ]
    uniform = [p[0] for p in padding if p and len(set(p)) == 1]
    if given_pad:
        pad, hints = 0, LayoutHints(pad_id=0)
    else:
        pad = min(uniform, key=lambda v: (-uniform.count(v), v)) if uniform else None
        hints = LayoutHints()
    options = InspectOptions(listed=len(table))
    for length_of in (sum, lambda mask: sum(1 for m in mask if m)):
        for row in table:
            row["length"] = length_of(row["attention_mask"])
        found = {
            r.name: r
            for r in check_table(
                pa.Table.from_pylist(table, schema=columns.schema()), hints, options
            )
        }
        holds = found["padding_holds_pad_id"]
        if pad is None:
            assert holds.status == "skip"
        else:
            wrong = [i for i, p in enumerate(padding) if any(t != pad for t in p)]
            assert (holds.count, list(holds.rows)) == (len(wrong), wrong)
            assert f"pad id {pad} ({'given' if given_pad else 'inferred'})" in holds.detail
        not_binary = [i for i, r in enumerate(table) if any(m > 1 for m in r["attention_mask"])]
        binary = found["mask_binary"]
        assert (binary.count, list(binary.rows)) == (len(not_binary), not_binary)
        # length is the mask's sum, or its count of ones: they differ where a mask holds a 2.
        length = found["length_matches_mask"]
        expected = [] if length_of is sum else not_binary
        assert (length.count, list(length.rows)) == (len(expected), expected)


# ----------------------------------------------------------------------------- whole inspections


def _same(a, b) -> None:
    """Two inspections report the same, timings aside."""
    assert dataclasses.replace(a, elapsed_s=0) == dataclasses.replace(b, elapsed_s=0)


@pytest.fixture(scope="module")
def builds(tmp_path_factory, llama_like, corpus):
    """A bucketed and a packed build of varied lengths."""
    tmp = tmp_path_factory.mktemp("tally")
    texts = [" ".join(corpus[: 1 + i % len(corpus)]) for i in range(60)]
    source = write_jsonl(tmp / "in.jsonl", [{"text": t} for t in texts])
    made = {}
    for strategy in ("bucket", "pack", "pad"):
        config = make_config(
            [source], llama_like, tmp / strategy, pad_token="eos", strategy=strategy, max_length=64
        )
        made[strategy] = maskprep.build(config).output
    return made


@pytest.mark.parametrize("strategy", ["bucket", "pack", "pad"])
def test_batches_of_three_rows_report_what_one_batch_does(builds, strategy):
    whole = maskprep.inspect(str(builds[strategy]))
    assert whole.passes(strict=True), whole.failures(strict=True)
    _same(whole, maskprep.inspect(str(builds[strategy]), InspectOptions(batch_rows=3)))


def test_broken_rows_are_listed_alike_in_any_batching(tmp_path):
    """Rows flagged by layout-dependent checks (width, padding side, pad id), misaligned lists and
    value checks, spread over batches: counts and first rows do not depend on the batching."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(80):
        width = int(rng.choice([4, 8, 8, 8]))
        real = int(rng.integers(1, width + 1))
        pad = int(rng.choice([2, 2, 2, 7]))
        ids = [int(x) for x in rng.integers(3, 50, size=real)] + [pad] * (width - real)
        mask = [1] * real + [0] * (width - real)
        if i % 9 == 0:
            ids, mask = ids[::-1], mask[::-1]  # left padded among right padded rows
        labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
        if i % 13 == 0:
            labels = labels[:-1]  # lists that do not line up
        if i % 11 == 0:
            ids[0] = -4  # an id no vocabulary has
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": labels, "length": real})
    path = tmp_path / "broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=columns.schema()), path)
    options = InspectOptions(strategy="pad", max_pad_fraction=0.3, min_label_fraction=0.9)
    whole = maskprep.inspect(str(path), options)
    assert {c.name for c in whole.failures()} >= {
        "list_lengths",
        "padding_contiguous",
        "padding_holds_pad_id",
        "row_width",
        "ids_in_vocabulary",
    }
    for size in (1, 7, 30):
        _same(whole, maskprep.inspect(str(path), dataclasses.replace(options, batch_rows=size)))
    # Listing no rows counts them all the same (it indexed the last of no kept rows, and crashed).
    counted = maskprep.inspect(str(path), dataclasses.replace(options, listed=0, batch_rows=7))
    assert [(c.name, c.status, c.count) for c in counted.checks] == [
        (c.name, c.status, c.count) for c in whole.checks
    ]
    assert all(c.rows == () for c in counted.checks)
    assert any(c.count for c in counted.checks)


# ----------------------------------------------------------------------------- the new checks

BOS, EOS, PAD = 1, 2, 3


def _shard(tmp_path, rows: list[list[int]], *, trained_eos: bool = True, name: str = "s.parquet"):
    """Full rows (all-ones masks) of ``rows``; labels are the ids except where masked by value."""
    table = [
        {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "labels": [t if trained_eos or t != EOS else -100 for t in ids],
            "length": len(ids),
        }
        for ids in rows
    ]
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(table, schema=columns.schema()), path)
    return str(path)


def _status(result, name: str) -> str:
    return next(c.status for c in result.checks if c.name == name)


def test_padding_attended_needs_two_pad_ids_where_the_pad_may_be_eos(tmp_path):
    """pad == EOS: a full row ending in one EOS is a document's end, in two it is padding."""
    one = _shard(tmp_path, [[BOS, 5, 6, EOS]] * 3, name="one.parquet")
    two = _shard(tmp_path, [[BOS, 5, EOS, EOS]] * 3, name="two.parquet")
    told = InspectOptions(pad_id=EOS, eos_id=EOS)
    assert _status(maskprep.inspect(one, told), "padding_attended") == "pass"
    assert _status(maskprep.inspect(two, told), "padding_attended") == "fail"
    # With a pad id other than EOS, one trailing pad id is already padding.
    pad = _shard(tmp_path, [[BOS, 5, 6, PAD]] * 3, name="pad.parquet")
    other = InspectOptions(pad_id=PAD, eos_id=EOS)
    assert _status(maskprep.inspect(pad, other), "padding_attended") == "fail"
    assert _status(maskprep.inspect(one, other), "padding_attended") == "pass"


def test_left_padding_attended_is_seen_at_the_start(tmp_path):
    rows = [[PAD, PAD, BOS, 5, EOS]] * 2
    shard = _shard(tmp_path, rows)
    result = maskprep.inspect(shard, InspectOptions(pad_id=PAD, eos_id=EOS))
    assert _status(result, "padding_attended") == "fail"


def test_vocabulary_size_from_the_option_or_the_tokenizer(tmp_path, llama_like):
    shard = _shard(tmp_path, [[BOS, 5, 299, EOS], [BOS, 300, EOS, 9]])
    assert _status(
        maskprep.inspect(shard, InspectOptions(vocab_size=301)), "ids_in_vocabulary"
    ) == ("pass")
    small = maskprep.inspect(shard, InspectOptions(vocab_size=300))
    check = next(c for c in small.checks if c.name == "ids_in_vocabulary")
    assert (check.status, check.count, check.rows) == ("fail", 1, (1,))
    # llama_like has 300 ids: -t supplies the size where nothing else does.
    assert (
        _status(
            maskprep.inspect(shard, InspectOptions(tokenizer=str(llama_like))), "ids_in_vocabulary"
        )
        == "fail"
    )
    unknown = next(c for c in maskprep.inspect(shard).checks if c.name == "ids_in_vocabulary")
    assert (unknown.status, unknown.unknown) == ("skip", "vocabulary size")


def test_trap_inferred_from_a_given_pad_id_without_an_eos_id(tmp_path):
    """Full rows leave no padding to infer the pad id from: given one, the trap is still seen;
    its negative control trains every EOS."""
    rows = [[BOS, 5, 6, EOS, 7, 8, EOS], [BOS, 9, EOS, 10, 11, 12, EOS]]
    trap = _shard(tmp_path, rows, trained_eos=False, name="trap.parquet")
    fine = _shard(tmp_path, rows, trained_eos=True, name="fine.parquet")
    told = InspectOptions(pad_id=EOS)
    caught = next(c for c in maskprep.inspect(trap, told).checks if c.name == "eos_masked_by_value")
    assert (caught.status, caught.rows) == ("fail", (0, 1))
    assert _status(maskprep.inspect(fine, told), "eos_masked_by_value") == "pass"
    assert _status(maskprep.inspect(trap), "eos_masked_by_value") == "skip"  # no pad id at all


def test_a_tokenizer_without_eos_is_known_not_unknown(tmp_path, minilm, corpus):
    """A BERT-like tokenizer has no EOS: the manifest says so (and so does a shard alone, in its
    metadata), the EOS checks do not apply and --strict passes; the same rows without either
    leave the EOS id unknown (not run)."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    out = maskprep.build(make_config([source], minilm, tmp_path / "out")).output
    shard = next(out.glob("data-*.parquet"))
    for path in (out, shard):
        result = maskprep.inspect(str(path))
        never = next(c for c in result.checks if c.name == "eos_never_trained")
        assert (never.status, never.unknown) == ("skip", None)
        assert result.passes(strict=True), result.failures(strict=True)
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata(None), tmp_path / "foreign.parquet")
    foreign = maskprep.inspect(str(tmp_path / "foreign.parquet"))
    never = next(c for c in foreign.checks if c.name == "eos_never_trained")
    assert never.unknown == "EOS id"
