"""The path arguments beyond inputs and outputs: a chat template read from a URL, a tokenizer
cache that must stay local, and URLs whose filesystem is not installed (``gs://``, ``az://``) or
cannot be reached (``hf://`` offline). Every refusal is one line with its exit code, no traceback;
the controls are the same arguments given as local paths."""

from __future__ import annotations

import importlib.util
import json

import pytest
from cli_kit import assert_one_line
from click.testing import CliRunner
from conftest import run_maskprep, write_jsonl
from test_sft import CHATML_PLAIN, SECOND, chat_tok  # noqa: F401 - chat_tok is a fixture

from maskprep.cli import main


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _chat_build(data, tokenizer, out, *extra: object):
    return _cli(
        "build", data, "-t", tokenizer, "--pad-token", "eos", "--max-length", 64,
        "--messages-field", "messages", "-o", out, "-q", *extra,
    )  # fmt: skip


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ----------------------------------------------------------------------------- chat template


def test_a_chat_template_is_read_from_s3(s3_bucket, tmp_path, chat_tok):  # noqa: F811
    import boto3

    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": SECOND}] * 3)
    (tmp_path / "t.jinja").write_text(CHATML_PLAIN, encoding="utf-8")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="t.jinja", Body=CHATML_PLAIN.encode())
    url = f"s3://{s3_bucket}/t.jinja"
    local = _chat_build(data, chat_tok, tmp_path / "local", "--chat-template", tmp_path / "t.jinja")
    assert local.exit_code == 0, local.output
    remote = _chat_build(data, chat_tok, tmp_path / "remote", "--chat-template", url)
    assert remote.exit_code == 0, remote.output
    local_files, remote_files = _files(tmp_path / "local"), _files(tmp_path / "remote")
    manifests = [json.loads(f.pop("_maskprep.json")) for f in (local_files, remote_files)]
    assert remote_files == local_files  # same shards
    # The template's text is in the fingerprint; the manifest records the URL it came from.
    assert manifests[0]["tokenizer"] == manifests[1]["tokenizer"]
    # The tokenizer's own template differs: the control that the file was used at all.
    own = _chat_build(data, chat_tok, tmp_path / "own")
    assert own.exit_code == 0, own.output
    own_manifest = json.loads((tmp_path / "own" / "_maskprep.json").read_text())
    assert own_manifest["tokenizer"]["fingerprint"] != manifests[1]["tokenizer"]["fingerprint"]

    # Careless: a template that is not there, or not text.
    missing = _chat_build(data, chat_tok, tmp_path / "m", "--chat-template", url + ".nope")
    assert_one_line(missing, 2, url + ".nope", "cannot read chat template")
    s3.put_object(Bucket=s3_bucket, Key="bad.jinja", Body=b"\xff\xfe{{ x }}")
    bad = _chat_build(
        data, chat_tok, tmp_path / "b", "--chat-template", f"s3://{s3_bucket}/bad.jinja"
    )
    assert_one_line(bad, 2, "bad.jinja", "not UTF-8")
    assert not (tmp_path / "m").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- tokenizer cache


def _plain_build(tokenizer, out, *extra: object):
    return _cli(
        "build", "sample_data/notes.txt", "-t", tokenizer, "--pad-token", "eos",
        "--max-length", 32, "-o", out, "-q", *extra,
    )  # fmt: skip


def test_a_tokenizer_cache_on_a_store_is_refused(llama_like, tmp_path, monkeypatch):
    from conftest import ROOT, transformers_only

    llama_like = transformers_only(llama_like, tmp_path / "tok")  # one the cache serves
    monkeypatch.chdir(ROOT)
    for url in ("s3://bucket/cache", "gs://bucket/cache"):
        result = _plain_build(llama_like, tmp_path / "x", "--tokenizer-cache", url)
        assert_one_line(result, 2, url, "must be a local directory")
    monkeypatch.setenv("MASKPREP_TOKENIZER_CACHE", "s3://bucket/cache")
    assert_one_line(_plain_build(llama_like, tmp_path / "x"), 2, "MASKPREP_TOKENIZER_CACHE")
    assert not (tmp_path / "x").exists()
    # Control: a file:// URL is the local directory it names, and fills it.
    monkeypatch.delenv("MASKPREP_TOKENIZER_CACHE")
    cache = tmp_path / "cache"
    result = _plain_build(llama_like, tmp_path / "y", "--tokenizer-cache", f"file://{cache}")
    assert result.exit_code == 0, result.output
    assert any(cache.glob("*.json"))


# ----------------------------------------------------------------------------- missing filesystems


@pytest.mark.parametrize(
    ("scheme", "package", "extra"), [("gs", "gcsfs", "gcs"), ("az", "adlfs", "azure")]
)
def test_a_store_without_its_filesystem_names_the_extra(
    scheme, package, extra, tmp_path, llama_like
):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    url = f"{scheme}://bucket/out"
    hint = f"pip install 'maskprep[{extra}]'"
    assert_one_line(_cli("inspect", url), 2, url, hint)
    assert_one_line(_cli("verify", url, "-m", "gpt2"), 2, url, hint)
    assert_one_line(_cli("merge", url, "-o", tmp_path / "m"), 2, url, hint)
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a few words"}])
    build = ("build", "-t", llama_like, "--max-length", 16, "--pad-token", "eos", "-q")
    assert_one_line(_cli(*build, f"{url}/in.jsonl", "-o", tmp_path / "b"), 2, hint)
    assert_one_line(_cli(*build, source, "-o", url), 2, hint)
    assert not (tmp_path / "b").exists()
    # Control: memory:// needs no extra, so its error says nothing of one.
    line = assert_one_line(_cli("inspect", "memory://bucket/out"), 2, "memory://bucket/out")
    assert "pip install" not in line


@pytest.mark.integration  # subprocesses
def test_hf_urls_offline_are_one_line(tmp_path):
    """Offline (HF_HUB_OFFLINE=1, as the tests run): a Hub URL is one line, no traceback."""
    if importlib.util.find_spec("huggingface_hub") is None:
        pytest.skip("huggingface_hub is not installed")
    url = "hf://datasets/someone/data/out"
    for args in (("inspect", url), ("verify", url, "-m", "gpt2")):
        done = run_maskprep(*args)
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert url in err and "offline" in err, err
