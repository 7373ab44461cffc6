"""A ``file://`` URL names the local path it spells: build inputs, ``--output``, ``inspect``,
``verify`` and ``merge`` parts give the same bytes with either. A ``file://`` URL that is not
absolute, or names nothing, is one line and exit 2 (the plain path is the control)."""

from __future__ import annotations

import json

import pytest
from cli_kit import build_args
from click.testing import CliRunner
from conftest import write_jsonl

from maskprep.cli import main


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _build(source: object, tokenizer, out: object, *extra: object):
    return _cli(*build_args(source, tokenizer, out, "--shard-rows", 20, *extra))


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _url(path) -> str:
    return "file://" + str(path.resolve())


@pytest.fixture
def source(tmp_path):
    records = [{"text": f"document {i} " + "word " * (i % 5)} for i in range(45)]
    (tmp_path / "in").mkdir()
    return write_jsonl(tmp_path / "in" / "in.jsonl", records).resolve()


def test_build_with_file_urls_writes_the_bytes_of_plain_paths(source, llama_like, tmp_path):
    _ok(_build(source, llama_like, tmp_path / "plain"))
    _ok(_build(_url(source), llama_like, _url(tmp_path) + "/url"))
    plain, url = _files(tmp_path / "plain"), _files(tmp_path / "url")
    assert len(plain) == 4  # three shards and the manifest
    assert url == plain  # the manifest records the input as the path it names
    # A directory given as a file:// URL is searched as the directory is.
    _ok(_build(_url(source.parent), llama_like, tmp_path / "dir"))
    manifest = json.loads((tmp_path / "dir" / "_maskprep.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(source)]


def test_a_careless_file_url_is_one_line(source, llama_like, tmp_path):
    relative = _build("file://in.jsonl", llama_like, tmp_path / "a")
    assert relative.exit_code == 2 and "absolute path" in relative.output, relative.output
    assert "Traceback" not in relative.output
    missing = _build(_url(tmp_path) + "/nope.jsonl", llama_like, tmp_path / "b")
    assert missing.exit_code == 2, missing.output
    assert f"{tmp_path.resolve()}/nope.jsonl: no such file" in missing.output
    for bad in ("file://out", "file://"):
        result = _cli("inspect", bad)
        assert result.exit_code == 2 and "absolute path" in result.output, result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _inspected(path: str) -> dict:
    report = json.loads(_ok(_cli("inspect", path, "--json")).stdout)
    report.pop("elapsed_s")
    report["summary"].pop("source")
    return report


def test_inspect_and_merge_take_file_urls(source, llama_like, tmp_path):
    out = tmp_path / "out"
    _ok(_build(source, llama_like, out))
    assert _inspected(_url(out)) == _inspected(str(out))
    shard = out / "data-00001.parquet"
    assert _inspected(_url(shard)) == _inspected(str(shard))
    # A corrupted output fails through the URL as it does through the path.
    shard.write_bytes(shard.read_bytes()[:-50])
    assert _cli("inspect", _url(out)).exit_code == 1
    assert _cli("inspect", str(out)).exit_code == 1

    for index in range(2):
        _ok(_build(source, llama_like, tmp_path / f"p{index}", "--num-parts", 2,
                   "--part-index", index))  # fmt: skip
    parts = [tmp_path / "p0", tmp_path / "p1"]
    _ok(_cli("merge", *parts, "-o", tmp_path / "merged-plain"))
    _ok(_cli("merge", *map(_url, parts), "-o", _url(tmp_path) + "/merged-url"))
    assert _files(tmp_path / "merged-url") == _files(tmp_path / "merged-plain")


@pytest.mark.integration  # a model's forward passes
def test_verify_takes_a_file_url(source, with_pad, tmp_path):
    pytest.importorskip("torch", reason="needs the verify extra (torch)")
    from rowkit import one_torch_thread, tiny_config

    next(one_torch_thread())
    tiny_config("gpt2").save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "out"
    _ok(_build(source, with_pad, out))
    args = ("-m", tmp_path / "gpt2", "--from-config", "--attn-implementation", "eager", "--json")
    by_url = json.loads(_ok(_cli("verify", _url(out), *args)).stdout)
    by_path = json.loads(_ok(_cli("verify", out, *args)).stdout)
    for report in (by_url, by_path):
        report.pop("source", None)
        report.pop("elapsed_s", None)
        for check in report["checks"]:
            check.pop("elapsed_s")
    assert by_url == by_path and by_url["ok"] is True
