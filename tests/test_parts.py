"""Array jobs: ``--num-parts N --part-index I`` parts and ``maskprep merge``."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest
from cli_kit import build_args
from conftest import make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from maskprep import ConfigError, PartSpec, SourceConfig, build, inspect, merge
from maskprep.cli import main
from maskprep.output.finished import shard_paths
from maskprep.output.names import MANIFEST_NAME
from maskprep.sources.parts import plan_part
from maskprep.sources.records import Record, SourceReader


def _items(inputs, part=None, **source):
    reader = SourceReader(SourceConfig(inputs=tuple(map(str, inputs)), **source), part=part)
    items = [(i.source, i.line, i.text if isinstance(i, Record) else i.raw) for i in reader]
    return items, sum(s.blank_lines for s in reader.stats)


def _assert_parts_cover(inputs, count, **source):
    whole, blanks = _items(inputs, **source)
    joined, joined_blanks = [], 0
    for index in range(count):
        items, part_blanks = _items(inputs, PartSpec(index, count), **source)
        joined += items
        joined_blanks += part_blanks
    assert joined == whole
    assert joined_blanks == blanks


@settings(max_examples=60, deadline=None)
@given(
    files=st.lists(
        st.lists(st.text(alphabet="ab é\n", max_size=12), max_size=8), min_size=1, max_size=3
    ),
    trailing_newline=st.booleans(),
    count=st.integers(min_value=1, max_value=9),
)
def test_parts_hold_every_line_once_in_order(tmp_path_factory, files, trailing_newline, count):
    directory = tmp_path_factory.mktemp("parts")
    paths = []
    for n, lines in enumerate(files):
        path = directory / f"f{n}.txt"
        text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    _assert_parts_cover(paths, count)


def test_parts_keep_line_numbers_and_sniff_from_the_file_head(tmp_path):
    src = tmp_path / "data"  # no extension: the format is sniffed
    write_jsonl(src, [{"text": f"doc {i}"} for i in range(20)] + ["not json"])
    for count in (1, 2, 3, 7):
        _assert_parts_cover([src], count)
    items, _ = _items([src], PartSpec(2, 3))
    assert items[0][1] > 1  # a later part starts at its real line number
    assert items[-1] == (str(src), 21, "not json")


def test_compressed_files_go_whole_to_one_part(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("".join(f"line {i}\n" for i in range(30)))
    packed = tmp_path / "b.txt.gz"
    packed.write_bytes(gzip.compress("".join(f"gz {i}\n" for i in range(30)).encode()))
    _assert_parts_cover([plain, packed], 4)
    owners = [
        i
        for i in range(4)
        if any(r.whole for r in plan_part([str(plain), str(packed)], PartSpec(i, 4)))
    ]
    assert len(owners) == 1


def test_a_file_listed_twice_is_read_twice_in_parts(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("".join(f"line {i}\n" for i in range(7)))
    for count in (1, 2, 3, 5):
        _assert_parts_cover([src, src], count)
    assert len(_items([src, src])[0]) == 14


def test_more_parts_than_lines_gives_empty_parts(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("one\ntwo\n")
    assert sum(1 for i in range(10) if plan_part([str(src)], PartSpec(i, 10))) == 2
    _assert_parts_cover([src], 10)


def test_part_spec_checks():
    with pytest.raises(ConfigError, match=r"outside 0\.\.2"):
        PartSpec(3, 3)
    with pytest.raises(ConfigError, match="at least 1"):
        PartSpec(0, 0)


@pytest.fixture
def two_files(tmp_path, corpus):
    texts = [f"{t} number {i}" for i, t in enumerate(corpus * 6)]
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in texts[:30]] + [""])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in texts[30:]])
    return [a, b]


def _rows(directory):
    return pq.read_table(shard_paths(directory)).to_pylist()


def _build_parts(inputs, tokenizer, root, count, **options):
    dirs = []
    for index in range(count):
        out = root / f"part-{index}"
        build(make_config(inputs, tokenizer, out, part=PartSpec(index, count), **options))
        dirs.append(out)
    return dirs


@pytest.mark.parametrize("strategy", ["pad", "bucket", "none"])
def test_three_parts_merged_equal_a_single_build(tmp_path, two_files, llama_like, strategy):
    options = dict(
        pad_token="eos", strategy=strategy, shard_rows=7, max_length=12, overflow="split"
    )
    single = build(make_config(two_files, llama_like, tmp_path / "single", **options))
    dirs = _build_parts(two_files, llama_like, tmp_path, 3, **options)
    result = merge(list(reversed(dirs)), tmp_path / "merged")  # any order
    assert _rows(tmp_path / "merged") == _rows(tmp_path / "single")
    merged = result.manifest
    assert merged.totals == single.manifest.totals
    assert merged.fill == single.manifest.fill
    assert merged.config == single.manifest.config
    assert merged.tokenizer == single.manifest.tokenizer
    assert merged.merged_from is not None
    assert [p.index for p in merged.merged_from] == [0, 1, 2]
    # Linked, not copied: the merged shard is the part's file.
    assert result.copied == 0 and result.linked == result.shards
    first_part_shard = (
        dirs[0] / json.loads((dirs[0] / MANIFEST_NAME).read_text())["shards"][0]["path"]
    )
    assert (tmp_path / "merged" / "data-00000.parquet").samefile(first_part_shard)


def test_packed_parts_pack_per_part(tmp_path, two_files, llama_like):
    options = dict(pad_token="eos", strategy="pack", max_length=24)
    single = build(make_config(two_files, llama_like, tmp_path / "single", **options))
    dirs = _build_parts(two_files, llama_like, tmp_path, 3, **options)
    merged = merge(dirs, tmp_path / "merged").manifest.as_dict()
    for key in ("records_read", "documents_written", "real_tokens", "label_tokens"):
        assert merged["totals"][key] == single.manifest.as_dict()["totals"][key], key
    # Each part packs its own documents: at most one more row per part boundary.
    rows, single_rows = (
        merged["totals"]["rows_written"],
        single.manifest.as_dict()["totals"]["rows_written"],
    )
    assert single_rows <= rows <= single_rows + 2
    seq = sorted(n for row in _rows(tmp_path / "merged") for n in row["seq_lens"])
    assert seq == sorted(n for row in _rows(tmp_path / "single") for n in row["seq_lens"])
    assert merged["pack_scope"] == "part"
    # A merged output is an ordinary output: inspect runs every invariant check on it.
    checked = inspect(tmp_path / "merged")
    assert checked.ok and checked.rows_total == rows
    assert any(c.name == "document_start_label" and c.status == "pass" for c in checked.checks)


def test_a_part_rebuilt_is_byte_identical(tmp_path, two_files, llama_like):
    config = dict(pad_token="eos", part=PartSpec(1, 3))
    first = build(make_config(two_files, llama_like, tmp_path / "a", **config))
    second = build(make_config(two_files, llama_like, tmp_path / "b", **config))
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (
        tmp_path / "b" / MANIFEST_NAME
    ).read_bytes()
    assert [s.sha256 for s in first.shards] == [s.sha256 for s in second.shards]
    assert (
        first.manifest.as_dict()["part"]["index"] == 1
        and first.manifest.as_dict()["part"]["count"] == 3
    )


def test_more_parts_than_records_merge_to_the_single_build(tmp_path, llama_like):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "alpha beta"}, {"text": "gamma"}])
    single = build(make_config([src], llama_like, tmp_path / "single", pad_token="eos"))
    dirs = _build_parts([src], llama_like, tmp_path, 5, pad_token="eos")
    assert sum(1 for d in dirs if json.loads((d / MANIFEST_NAME).read_text())["shards"]) == 2
    merge(dirs, tmp_path / "merged")
    assert _rows(tmp_path / "merged") == _rows(tmp_path / "single")
    assert single.totals.records_read == 2


def _cli_part(src, tokenizer, out, index, count, *extra):
    return build_args(src, tokenizer, out, "--num-parts", count, "--part-index", index, *extra)


@pytest.fixture
def cli_parts(tmp_path, two_files, llama_like, runner):
    dirs = []
    for index in range(3):
        out = tmp_path / f"p{index}"
        result = runner.invoke(main, _cli_part(two_files[0], llama_like, out, index, 3))
        assert result.exit_code == 0, result.output
        dirs.append(out)
    return dirs


def test_merge_cli_reports_and_refuses_bad_sets(tmp_path, cli_parts, two_files, llama_like, runner):
    p0, p1, p2 = map(str, cli_parts)
    out = str(tmp_path / "m")

    def refused(*args, expect):
        result = runner.invoke(main, ["merge", *args, "-o", out])
        assert result.exit_code == 2, result.output
        assert expect in result.output, result.output
        assert "Traceback" not in result.output

    refused(p0, p2, expect="missing part(s) 1 of 3")
    refused(p0, p1, p1, p2, expect=f"part 1 of 3 given twice: {p1} and {p1}")
    other = tmp_path / "other"
    assert (
        runner.invoke(
            main, _cli_part(two_files[0], llama_like, other, 1, 3, "--padding-side", "left")
        ).exit_code
        == 0
    )
    refused(p0, str(other), p2, expect="not from the same build")
    refused(p0, str(other), p2, expect="config.tokenizer.padding_side")
    four = tmp_path / "four"
    assert runner.invoke(main, _cli_part(two_files[0], llama_like, four, 1, 4)).exit_code == 0
    refused(p0, str(four), p2, expect="part of 4 parts")
    whole = tmp_path / "whole"
    assert runner.invoke(main, _cli_part(two_files[0], llama_like, whole, 0, 1)[:-4]).exit_code == 0
    refused(p0, str(whole), expect="a whole build, not a part")
    (cli_parts[1] / MANIFEST_NAME).unlink()
    refused(p0, p1, p2, expect=f"{p1}: not a finished part (no {MANIFEST_NAME})")
    # merge has no --resume of its own: the way out is to finish the part's build with it.
    refused(p0, p1, p2, expect="finish its build (--resume) before merging")


def test_merge_cli_success_line(cli_parts, tmp_path, runner):
    result = runner.invoke(main, ["merge", *map(str, cli_parts), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "merged 3 parts into" in result.output and "0 copied" in result.output
    result = runner.invoke(
        main, ["merge", *map(str, cli_parts), "-o", str(tmp_path / "m"), "--json"]
    )
    assert result.exit_code == 2  # the output exists; --overwrite replaces it
    result = runner.invoke(
        main, ["merge", *map(str, cli_parts), "-o", str(tmp_path / "m"), "--json", "--overwrite"]
    )
    assert json.loads(result.output)["parts"] == 3


def test_parts_of_stdin_and_half_options_are_refused(tmp_path, llama_like, runner):
    result = runner.invoke(main, _cli_part("-", llama_like, tmp_path / "o", 0, 2), input="a\n")
    assert result.exit_code == 2
    assert "standard input ('-') cannot be split into parts" in result.output
    args = _cli_part("-", llama_like, tmp_path / "o", 0, 2)
    result = runner.invoke(main, args[:-2], input="a\n")
    assert result.exit_code == 2
    assert "--num-parts and --part-index go together" in result.output
    result = runner.invoke(main, _cli_part("-", llama_like, tmp_path / "o", 2, 2), input="a\n")
    assert result.exit_code == 2
    assert "part index 2 is outside 0..1" in result.output


def test_a_finished_part_is_returned_as_is_on_resume(tmp_path, two_files, llama_like):
    out = tmp_path / "p1"
    first = build(make_config(two_files, llama_like, out, pad_token="eos", part=PartSpec(1, 3)))
    before = (out / MANIFEST_NAME).stat().st_mtime_ns
    again = build(
        make_config(two_files, llama_like, out, pad_token="eos", part=PartSpec(1, 3), resume=True)
    )
    assert again.manifest == first.manifest
    assert again.reused_shards == len(first.shards)
    assert (out / MANIFEST_NAME).stat().st_mtime_ns == before
    other = make_config(
        two_files, llama_like, out, pad_token="eos", part=PartSpec(2, 3), resume=True
    )
    with pytest.raises(ConfigError, match="holds a finished build made with other options"):
        build(other)


def test_merge_refuses_parts_built_with_another_tokenizer_at_the_same_path(
    tmp_path, two_files, llama_like, with_pad
):
    import shutil

    tok = tmp_path / "tok"
    shutil.copytree(llama_like, tok)
    p0 = tmp_path / "p0"
    build(make_config(two_files, tok, p0, pad_token="eos", part=PartSpec(0, 2)))
    shutil.rmtree(tok)
    shutil.copytree(with_pad, tok)  # same name, other files
    p1 = tmp_path / "p1"
    build(make_config(two_files, tok, p1, pad_token="eos", part=PartSpec(1, 2)))
    with pytest.raises(ConfigError, match=r"p1: not from the same build as .*p0: tokenizer\."):
        merge([p0, p1], tmp_path / "m")
