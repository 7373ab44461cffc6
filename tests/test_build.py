"""maskprep build with strategy pad: rows against an independent reference, counts, and I/O."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import importlib.util
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import make_config, run_maskprep, transformers_only, write_jsonl
from row_invariants import check_rows
from transformers import AutoTokenizer

from maskprep import ConfigError, DataError, build, read_manifest
from maskprep.cli import main
from maskprep.columns import IGNORE_INDEX
from maskprep.config import RejectLimit
from maskprep.output.names import MANIFEST_NAME, REJECTS_NAME

pytestmark = pytest.mark.integration


def read_rows(output):
    return pq.read_table(sorted(output.glob("data-*.parquet"))).to_pylist()


def reference_row(tokenizer, text, max_length, side):
    """What a careful user gets by hand from the tokenizer itself."""
    enc = tokenizer(
        text, max_length=max_length, truncation=True, padding="max_length", padding_side=side
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    if side == "left":
        # Left padded, the first real token would be predicted from a pad: it is not a target.
        labels[mask.index(1)] = IGNORE_INDEX
    return ids, mask, labels


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("which", ["minilm", "llama_like"])
def test_rows_match_the_tokenizer_reference(tmp_path, corpus, request, which, side):
    tok_dir = request.getfixturevalue(which)
    pad = "eos" if which == "llama_like" else None
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    out = tmp_path / "out"
    config = make_config(
        [src], tok_dir, out, max_length=12, padding_side=side, pad_token=pad, batch_size=3
    )
    result = build(config)

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if pad == "eos":
        tokenizer.pad_token = tokenizer.eos_token
    rows = read_rows(out)
    assert len(rows) == len(corpus)
    for text, row in zip(corpus, rows, strict=True):
        ids, mask, labels = reference_row(tokenizer, text, 12, side)
        assert row["input_ids"] == ids
        assert row["attention_mask"] == mask
        assert row["labels"] == labels
        assert row["length"] == sum(mask)
    assert check_rows(rows, "pad", tokenizer.pad_token_id, side, max_length=12) == []
    assert result.totals.records_read == len(corpus)


def test_pad_equal_to_eos_keeps_every_real_eos_trained(tmp_path, llama_like, corpus):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    out = tmp_path / "out"
    build(make_config([src], llama_like, out, max_length=64, pad_token="eos", add_eos=True))
    eos = AutoTokenizer.from_pretrained(llama_like).eos_token_id
    for row in read_rows(out):
        ids, mask, labels = map(np.array, (row["input_ids"], row["attention_mask"], row["labels"]))
        last_real = row["length"] - 1
        assert ids[last_real] == eos, "EOS appended to every document"
        assert labels[last_real] == eos, "the real EOS is trained although pad == eos"
        assert (ids[mask == 0] == eos).all()  # padding holds the very same id ...
        assert (labels[mask == 0] == IGNORE_INDEX).all()  # ... and only padding is ignored
        assert (labels[mask == 1] == ids[mask == 1]).all()


def test_add_eos_is_not_doubled(tmp_path, llama_like):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "ends already</s>"}, {"text": "plain"}])
    out = tmp_path / "out"
    build(make_config([src], llama_like, out, max_length=32, pad_token="eos", add_eos=True))
    rows = read_rows(out)
    for row in rows:
        ids = row["input_ids"][: row["length"]]
        assert ids[-1] == 2 and ids[-2] != 2


def test_missing_pad_token_is_a_usage_error(tmp_path, llama_like, runner):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    result = runner.invoke(
        main, ["build", str(src), "-t", str(llama_like), "--max-length", "8", "-o", "o"]
    )
    assert result.exit_code == 2
    assert "has no pad token" in result.output
    assert "--pad-token eos" in result.output and "--pad-token TOKEN" in result.output


def test_pad_token_must_exist_in_the_vocabulary(tmp_path, llama_like):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        build(make_config([src], llama_like, tmp_path / "o", pad_token="<nope>"))


def overflow_reference(tokenizer, text, max_length, stride):
    enc = tokenizer(
        text,
        max_length=max_length,
        truncation=True,
        return_overflowing_tokens=True,
        stride=stride,
    )
    return enc["input_ids"]


LONG = [
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
    "short one",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi",
]


@pytest.mark.parametrize("stride", [0, 2])
def test_split_windows_match_the_tokenizer_overflow(tmp_path, minilm, stride):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in LONG])
    out = tmp_path / "out"
    result = build(make_config([src], minilm, out, max_length=8, overflow="split", stride=stride))
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    expected = [w for text in LONG for w in overflow_reference(tokenizer, text, 8, stride)]
    got = [row["input_ids"][: row["length"]] for row in read_rows(out)]
    assert got == expected
    shape = result.totals.shape
    assert shape.documents_split == 2
    assert shape.rows_from_splits == len(expected) - 1
    assert result.totals.rows_written == len(expected)
    assert result.manifest.as_dict()["totals"]["documents_split"] == 2


def test_truncate_and_drop_count_documents_and_tokens(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in LONG])
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    lengths = [len(tokenizer(t)["input_ids"]) for t in LONG]
    over = [n for n in lengths if n > 8]

    truncated = build(make_config([src], minilm, tmp_path / "t", max_length=8))
    totals = truncated.manifest.as_dict()["totals"]
    assert totals["documents_truncated"] == len(over) == 2
    assert totals["tokens_truncated"] == sum(n - 8 for n in over)
    assert totals["rows_written"] == 3

    dropped = build(make_config([src], minilm, tmp_path / "d", max_length=8, overflow="drop"))
    totals = dropped.manifest.as_dict()["totals"]
    assert totals["documents_dropped"] == 2
    assert totals["tokens_dropped"] == sum(over)
    assert totals["rows_written"] == 1
    assert totals["records_read"] == totals["documents_written"] + totals["documents_dropped"]


def test_overflow_error_names_the_record(tmp_path, minilm, runner):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in LONG])
    out = tmp_path / "out"
    args = ["build", str(src), "-t", str(minilm), "--max-length", "8", "-o", str(out)]
    result = runner.invoke(main, [*args, "--overflow", "error"])
    assert result.exit_code == 1
    assert f"{src}:1: document is 16 tokens, longer than max_length 8" in result.output
    assert not out.exists()


def test_no_room_for_text_is_a_usage_error(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    with pytest.raises(ConfigError, match="leaves no room for text"):
        build(make_config([src], minilm, tmp_path / "o", max_length=2))


# --- inputs -------------------------------------------------------------------------------------


def test_text_input_skips_and_counts_blank_lines(tmp_path, minilm):
    src = tmp_path / "notes.txt"
    src.write_text("first line\n\n   \nsecond line\r\nthird\n", encoding="utf-8")
    result = build(make_config([src], minilm, tmp_path / "o"))
    totals = result.manifest.as_dict()["totals"]
    assert totals["records_read"] == 3
    assert totals["blank_lines"] == 2
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    rows = read_rows(tmp_path / "o")
    assert rows[1]["input_ids"][: rows[1]["length"]] == tokenizer("second line")["input_ids"]


def test_dotted_text_field(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", [{"meta": {"body": "nested text"}}])
    build(make_config([src], minilm, tmp_path / "o", text_field="meta.body"))
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    row = read_rows(tmp_path / "o")[0]
    assert row["input_ids"][: row["length"]] == tokenizer("nested text")["input_ids"]


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".jsonl.gz", gzip.compress),
        (".jsonl.bz2", bz2.compress),
        (".jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_compressed_inputs_read_like_plain_ones(tmp_path, minilm, corpus, suffix, compress):
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"text": t} for t in corpus])
    packed = tmp_path / f"packed{suffix}"
    packed.write_bytes(compress(plain.read_bytes()))
    build(make_config([plain], minilm, tmp_path / "a"))
    result = build(make_config([packed], minilm, tmp_path / "b"))
    assert read_rows(tmp_path / "a") == read_rows(tmp_path / "b")
    assert result.manifest.as_dict()["inputs"][0]["size"] == packed.stat().st_size


def test_directories_and_globs_expand_in_sorted_order(tmp_path, minilm):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "b.txt").write_text("bravo\n")
    (data / "a.jsonl").write_text(json.dumps({"text": "alpha"}) + "\n")
    (data / "sub" / "c.txt").write_text("charlie\n")
    (data / "ignored.csv").write_text("x\n")
    result = build(make_config([data], minilm, tmp_path / "o1"))
    paths = [i["path"] for i in result.manifest.as_dict()["inputs"]]
    assert [p.split("/")[-1] for p in paths] == ["a.jsonl", "b.txt", "c.txt"]
    result = build(make_config([str(data / "*.txt")], minilm, tmp_path / "o2"))
    assert [i["path"].split("/")[-1] for i in result.manifest.as_dict()["inputs"]] == ["b.txt"]


def test_missing_input_is_a_usage_error(tmp_path, minilm, runner):
    args = ["build", str(tmp_path / "nope.jsonl"), "-t", str(minilm), "--max-length", "8"]
    result = runner.invoke(main, [*args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "nope.jsonl: no such file or directory" in result.output


def test_stdin_pipeline_in_a_real_subprocess(tmp_path, minilm, corpus):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    build(make_config([src], minilm, tmp_path / "ref"))
    data = gzip.compress(src.read_bytes())
    proc = run_maskprep(
        "build", "-", "-t", str(minilm), "--max-length", "32", "-o", str(tmp_path / "o"),
        "--json", stdin=data,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True and summary["totals"]["records_read"] == len(corpus)
    assert read_rows(tmp_path / "o") == read_rows(tmp_path / "ref")
    manifest = json.loads((tmp_path / "o" / MANIFEST_NAME).read_text())
    assert manifest["inputs"][0]["path"] == "<stdin>"
    assert manifest["inputs"][0]["format"] == "jsonl"


def test_stdin_text_is_sniffed_or_forced(tmp_path, minilm):
    proc = run_maskprep(
        "build", "-", "-t", str(minilm), "--max-length", "16", "-o", str(tmp_path / "o"),
        "--quiet", stdin=b"{not json at all\nsecond line\n", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "<stdin>:1: invalid JSON" in proc.stderr.decode()
    proc = run_maskprep(
        "build", "-", "-t", str(minilm), "--max-length", "16", "-o", str(tmp_path / "o"),
        "--quiet", "--input-format", "text", stdin=b"{not json at all\nsecond line\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(read_rows(tmp_path / "o")) == 2


# --- bad records --------------------------------------------------------------------------------

BAD = [
    ({"text": "fine"}, None),
    ('{"text": "unterminated', "invalid JSON: Unterminated string starting at (column 10)"),
    ({"body": "no text field"}, "missing field 'text'"),
    ({"text": 42}, "field 'text' is number, expected string"),
    ('["a", "list"]', "expected a JSON object, got array"),
    (b'{"text": "caf\xe9"}', "invalid UTF-8 at byte 13"),
    ({"text": "   "}, "field 'text' is empty"),
    ({"text": "also fine"}, None),
]


def write_bad(path):
    with open(path, "wb") as handle:
        for record, _ in BAD:
            if isinstance(record, bytes):
                handle.write(record)
            elif isinstance(record, str):
                handle.write(record.encode())
            else:
                handle.write(json.dumps(record).encode())
            handle.write(b"\n")
    return path


@pytest.mark.parametrize("line", [i + 1 for i, (_, reason) in enumerate(BAD) if reason])
def test_each_bad_record_fails_with_file_and_line(tmp_path, minilm, runner, line):
    src = tmp_path / "in.jsonl"
    records = [BAD[0], BAD[line - 1]]
    with open(src, "wb") as handle:
        for record, _ in records:
            raw = (
                record
                if isinstance(record, bytes)
                else (record.encode() if isinstance(record, str) else json.dumps(record).encode())
            )
            handle.write(raw + b"\n")
    out = tmp_path / "out"
    args = ["build", str(src), "-t", str(minilm), "--max-length", "16", "-o", str(out)]
    result = runner.invoke(main, [*args, "--batch-size", "1", "-q"])
    assert result.exit_code == 1
    reason = BAD[line - 1][1]
    assert result.output.strip() == f"Error: {src}:2: {reason}"
    assert not out.exists(), "a failed build leaves nothing that looks complete"


def test_skip_policy_writes_rejects_and_accounts_for_every_record(tmp_path, minilm):
    src = write_bad(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    result = build(make_config([src], minilm, out, on_bad_record="skip"))
    rejects = [json.loads(line) for line in (out / REJECTS_NAME).read_text().splitlines()]
    expected = [(i + 1, reason) for i, (_, reason) in enumerate(BAD) if reason]
    assert [(r["line"], r["reason"]) for r in rejects] == expected
    assert all(r["file"] == str(src) for r in rejects)
    assert rejects[0]["raw"] == '{"text": "unterminated'
    assert rejects[4]["raw"] == '{"text": "caf\\xe9"}'
    totals = result.manifest.as_dict()["totals"]
    assert totals["records_read"] == len(BAD)
    assert totals["records_rejected"] == len(expected)
    assert totals["documents_written"] == 2
    assert totals["records_read"] == (
        totals["documents_written"] + totals["records_rejected"] + totals["documents_dropped"]
    )


def test_failure_after_shards_were_written_keeps_them_for_a_resume(tmp_path, minilm):
    """A build that fails writes no manifest (nothing looks finished) and keeps its complete
    shards, as a killed one does: once the input is fixed, a resume reuses them."""
    records = [{"text": f"document {i}"} for i in range(10)] + ['{"broken']
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    config = make_config([src], minilm, out, shard_rows=2, batch_size=2)
    with pytest.raises(DataError, match=r"in.jsonl:11: invalid JSON"):
        build(config)
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith(".resume-"))
    assert MANIFEST_NAME not in left and left, left
    assert all(name.startswith("data-") for name in left), left
    write_jsonl(src, records[:-1])
    resume = dataclasses.replace(config, output=dataclasses.replace(config.output, resume=True))
    resumed = build(resume)
    assert resumed.reused_shards == len(left)
    clean = build(make_config([src], minilm, tmp_path / "clean", shard_rows=2, batch_size=2))
    assert [s.sha256 for s in resumed.manifest.shards] == [s.sha256 for s in clean.manifest.shards]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_input_is_a_data_error(tmp_path, minilm, content):
    src = tmp_path / "empty.txt"
    src.write_bytes(content)
    with pytest.raises(DataError, match=r"empty\.txt: no documents in the input"):
        build(make_config([src], minilm, tmp_path / "o"))


def test_corrupt_compressed_input_is_a_data_error(tmp_path, minilm):
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])
    with pytest.raises(DataError, match=r"in.jsonl.gz:\d+: cannot read input"):
        build(make_config([src], minilm, tmp_path / "o"))


# --- output -------------------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_output(tmp_path, minilm, corpus):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus * 5])
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        build(make_config([src], minilm, out, shard_rows=7, batch_size=4))
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir())
    assert len([n for n in names if n.startswith("data-")]) == 6
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_output_loads_with_datasets_and_pyarrow(tmp_path, minilm, corpus):
    datasets = pytest.importorskip("datasets", reason="needs the datasets extra")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    out = tmp_path / "out"
    build(make_config([src], minilm, out, shard_rows=3))
    files = sorted(str(p) for p in out.glob("data-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == len(corpus)
    assert ds.column_names == ["input_ids", "attention_mask", "labels", "length"]
    table = pq.read_table(files)
    assert str(table.schema.field("attention_mask").type) == "list<element: int8>"
    import maskprep

    assert maskprep.load_dataset(out)[0] == ds[0]


def test_arrow_format_holds_the_same_rows(tmp_path, minilm, corpus):
    import pyarrow as pa

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    build(make_config([src], minilm, tmp_path / "p"))
    build(make_config([src], minilm, tmp_path / "a", format="arrow"))
    with pa.memory_map(str(tmp_path / "a" / "data-00000.arrow")) as source:
        arrow_rows = pa.ipc.open_file(source).read_all().to_pylist()
    assert arrow_rows == read_rows(tmp_path / "p")
    if importlib.util.find_spec("datasets") is not None:  # the datasets extra
        import maskprep

        assert maskprep.load_dataset(tmp_path / "a").num_rows == len(corpus)


def test_shards_roll_by_size(tmp_path, minilm, corpus):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus * 4])
    out = tmp_path / "out"
    # A 32-wide row is 32*(4+1+4) bytes of values plus offsets: about 300 bytes.
    result = build(make_config([src], minilm, out, shard_size=3000))
    rows = [s["rows"] for s in result.manifest.as_dict()["shards"]]
    assert len(rows) > 2 and sum(rows) == len(corpus) * 4
    assert max(rows) <= 10


def test_manifest_describes_the_build(tmp_path, minilm, corpus):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    out = tmp_path / "out"
    result = build(make_config([src], minilm, out, shard_rows=4))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest == result.manifest.as_dict()
    assert read_manifest(out) == result.manifest  # the typed manifest reads back as written
    import hashlib

    for shard in manifest["shards"]:
        path = out / shard["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        table = pq.read_table(path)
        assert shard["rows"] == table.num_rows
        assert shard["real_tokens"] == sum(table.column("length").to_pylist())
    tok = manifest["tokenizer"]
    assert tok["pad_token_id"] == 0 and tok["prefix_ids"] == [101] and tok["suffix_ids"] == [102]
    assert set(tok["files"]) >= {"tokenizer.json", "vocab.txt"} and len(tok["fingerprint"]) == 64
    src_info = manifest["inputs"][0]
    assert src_info["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    totals = manifest["totals"]
    assert totals["positions"] == totals["real_tokens"] + totals["pad_tokens"]
    assert totals["label_tokens"] == totals["real_tokens"]


def test_non_empty_output_is_refused_unless_overwrite(tmp_path, minilm, runner):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    out = tmp_path / "out"
    args = ["build", str(src), "-t", str(minilm), "--max-length", "8", "-o", str(out), "-q"]
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, args)
    assert again.exit_code == 2 and "output directory is not empty" in again.output
    # The way out, as the command line spells it.
    assert "overwrite it (--overwrite) to replace its contents" in again.output
    assert runner.invoke(main, [*args, "--overwrite"]).exit_code == 0
    (out / "notes.md").write_text("mine")
    refused = runner.invoke(main, [*args, "--overwrite"])
    assert refused.exit_code == 2 and "files maskprep did not write (notes.md)" in refused.output
    assert (out / "notes.md").exists()


@pytest.mark.parametrize("cache", ["uncached", "cached"])
def test_summary_table_and_json(tmp_path, minilm, runner, monkeypatch, cache):
    """Both ways a CLI build loads its tokenizer: the session turns the tokenizer cache on for
    every test (conftest), while the CLI's default is no cache. The tokenizer loads through
    transformers, so that the cache is used when it is on."""
    tokenizer = transformers_only(minilm, tmp_path / "minilm")
    if cache == "cached":
        monkeypatch.setenv("MASKPREP_TOKENIZER_CACHE", str(tmp_path / "cache"))
    else:
        monkeypatch.delenv("MASKPREP_TOKENIZER_CACHE")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "hello world"}])
    args = ["build", str(src), "-t", str(tokenizer), "--max-length", "8"]
    table = runner.invoke(main, [*args, "-o", str(tmp_path / "a")])
    assert table.exit_code == 0, table.output
    assert "records read" in table.output and "fill (real / positions)" in table.output
    as_json = runner.invoke(main, [*args, "-o", str(tmp_path / "b"), "--json"])
    summary = json.loads(as_json.stdout)
    assert summary["totals"]["real_tokens"] == 4 and summary["totals"]["pad_tokens"] == 4
    # The second build is a cache hit only with the cache on; the bytes are the same either way.
    assert summary["tokenizer_cached"] is (cache == "cached")
    assert (tmp_path / "cache").is_dir() is (cache == "cached")
    shard = "data-00000.parquet"
    assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_no_add_special_tokens(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "hello world"}])
    build(make_config([src], minilm, tmp_path / "o", add_special_tokens=False))
    row = read_rows(tmp_path / "o")[0]
    assert row["input_ids"][: row["length"]] == [7592, 2088]


def test_progress_is_reported_per_batch_and_rendered_as_plain_lines(tmp_path, minilm, corpus):
    import io

    from maskprep.cli.build import ProgressReporter

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in corpus])
    seen = []
    build(make_config([src], minilm, tmp_path / "o", batch_size=2), on_progress=seen.append)
    records = [p.records for p in seen]
    assert records == sorted(records) and records[-1] == len(corpus)
    assert len(seen) >= len(corpus) // 2
    assert seen[-1].bytes_read == seen[-1].bytes_total == src.stat().st_size

    stream = io.StringIO()  # not a terminal: plain lines, at most one per interval
    with ProgressReporter(quiet=False, stream=stream, interval=3600) as reporter:
        for progress in seen:
            reporter.update(progress)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskprep: ") and "tok/s" in lines[0]
    assert ProgressReporter(quiet=True, stream=stream).callback is None


def test_shard_size_option_reads_units_and_refuses_nonsense(tmp_path, minilm, runner):
    from maskprep.config import parse_size

    assert parse_size("512") == 512 and parse_size("64K") == 65536
    assert parse_size("1.5M") == 1572864 and parse_size("2GiB") == 2 << 30
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    args = ["build", str(src), "-t", str(minilm), "--max-length", "8", "-o", str(tmp_path / "o")]
    result = runner.invoke(main, [*args, "--shard-size", "lots"])
    assert result.exit_code == 2 and "cannot read 'lots' as a size" in result.output


def test_interrupted_skip_build_keeps_its_shards_but_no_rejects_and_resumes(tmp_path, minilm):
    records = [{"text": f"document number {i}"} for i in range(12)]
    src = write_jsonl(tmp_path / "in.jsonl", [*records[:3], '{"broken', *records[3:]])
    out = tmp_path / "out"
    options = dict(on_bad_record="skip", shard_rows=2, batch_size=4)
    calls = []

    def interrupt(progress):
        calls.append(progress)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(make_config([src], minilm, out, **options), on_progress=interrupt)
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith(".resume-"))
    # Complete shards stay for a resume, as after a kill; no rejects, temporaries or manifest.
    assert left and all(n.startswith("data-") for n in left), left
    resumed = build(make_config([src], minilm, out, resume=True, **options))
    assert resumed.reused_shards == len(left)
    assert json.loads((out / REJECTS_NAME).read_text())["line"] == 4
    build(make_config([src], minilm, tmp_path / "whole", **options))
    assert (out / MANIFEST_NAME).read_bytes() == (tmp_path / "whole" / MANIFEST_NAME).read_bytes()


def test_a_failed_skip_build_leaves_only_the_rejects_that_explain_it(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", ['{"broken', {"body": "no text field"}])
    with pytest.raises(DataError, match=r"no document could be used \(2 rejected"):
        build(make_config([src], minilm, tmp_path / "out", on_bad_record="skip"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [REJECTS_NAME]
    assert len((tmp_path / "out" / REJECTS_NAME).read_text().splitlines()) == 2
    # Failing for another reason, the build leaves no rejects file (nor anything else).
    src = write_jsonl(tmp_path / "long.jsonl", ['{"broken', {"text": LONG[0]}])
    config = make_config(
        [src], minilm, tmp_path / "other", on_bad_record="skip", max_length=8, overflow="error"
    )
    with pytest.raises(DataError, match="longer than max_length"):
        build(config)
    assert not (tmp_path / "other").exists()


def test_every_document_dropped_is_a_data_error_that_says_why(tmp_path, minilm):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": LONG[0]}, {"text": LONG[2]}])
    with pytest.raises(DataError, match=r"no document could be used \(0 rejected, 2 dropped"):
        build(make_config([src], minilm, tmp_path / "o", max_length=8, overflow="drop"))
    assert not (tmp_path / "o").exists()


def test_rejects_stay_one_line_per_record_whatever_the_text(tmp_path, minilm):
    src = tmp_path / "in.jsonl"
    src.write_bytes('{"text": "ok"}\n{"text": "\u0085\u2028\u2029"}\n{"nope": 1}\n'.encode())
    out = tmp_path / "out"
    build(make_config([src], minilm, out, on_bad_record="skip"))
    lines = (out / REJECTS_NAME).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in lines] == [2, 3]
    assert json.loads(lines[0])["raw"] == '{"text": "\u0085\u2028\u2029"}'


def test_arrow_helpers_refuse_what_they_would_corrupt():
    import numpy as np
    import pyarrow as pa

    from maskprep import columns

    offsets = np.array([0, 2**31 + 5], dtype=np.int64)
    with pytest.raises(OverflowError):
        columns.list_array(offsets, np.zeros(3, np.int32), np.int32)
    with pytest.raises(OverflowError):
        columns.from_numpy(np.array([1.5]), np.int32)
    sliced = columns.list_array(np.array([0, 2, 5]), np.arange(5), np.int32).flatten().slice(1, 3)
    assert columns.to_numpy(sliced, np.int32).tolist() == [1, 2, 3]
    assert columns.to_numpy(sliced.slice(0, 0), np.int32).tolist() == []
    with pytest.raises(TypeError):
        columns.to_numpy(pa.array([1, 2], pa.int64()), np.int32)


@pytest.mark.parametrize("limit", [RejectLimit(count=1), RejectLimit(percent=10.0)])
def test_past_max_rejects_the_build_fails_as_its_docstring_says(tmp_path, llama_like, limit):
    """pipeline.build's docstring: RejectsPastLimit (a DataError), no manifest, the rejects
    file published to say why, the complete shards kept (as by every build that stops)."""
    from maskprep.pipeline import RejectsPastLimit

    lines = [{"text": f"good {i}"} for i in range(8)] + ["{broken", "{also broken"]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    config = make_config([src], llama_like, tmp_path / "out", pad_token="eos", shard_rows=2)
    config = dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, on_bad_record="skip", max_rejects=limit),
    )
    with pytest.raises(RejectsPastLimit) as raised:
        build(config)
    assert isinstance(raised.value, DataError)
    left = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".resume-"))
    assert "_rejects.jsonl" in left and "_maskprep.json" not in left
    assert all(name.startswith("data-") or name == "_rejects.jsonl" for name in left), left
    assert len((tmp_path / "out" / "_rejects.jsonl").read_text().splitlines()) == 2
