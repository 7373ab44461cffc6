"""#14, the tokenizer cache: an entry is trusted only where nobody else could have written it
(owned by this user, not writable by others, in a directory likewise), as ssh treats its keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .helpers import MANIFEST, assert_clean_failure, assert_ok, build_args, cli, read_json


def _build(source, tokenizer, out, cache) -> dict:
    result = cli(*build_args(source, tokenizer, out, "--json", "--tokenizer-cache", cache))
    if result.code != 0:
        # Refusing an unsafe cache is acceptable too, in one line naming it.
        assert_clean_failure(result, 2, mentions=[str(cache)])
        return {"refused": True}
    assert_ok(result)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def llama_like(llama_like, tmp_path_factory):
    """The cache serves tokenizers that load through transformers (see conftest)."""
    from conftest import transformers_only

    return transformers_only(llama_like, tmp_path_factory.mktemp("tf") / "llama_like")


@pytest.fixture
def cache(tmp_path, jsonl_60, llama_like) -> Path:
    """A private cache directory (0700) holding the entry of ``llama_like``, made by a build."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    first = _build(jsonl_60, llama_like, tmp_path / "first", directory)
    assert first["tokenizer_cached"] is False
    assert len(list(directory.glob("*.json"))) == 1
    return directory


def _not_trusted(summary: dict) -> None:
    assert summary.get("refused") or summary["tokenizer_cached"] is False, summary


def test_a_private_cache_entry_is_used(tmp_path, cache, jsonl_60, llama_like):
    """Negative control: the entry this user wrote, in a private directory, is used."""
    summary = _build(jsonl_60, llama_like, tmp_path / "second", cache)
    assert summary["tokenizer_cached"] is True


def test_a_cache_in_a_world_writable_directory_is_not_trusted(
    tmp_path, cache, jsonl_60, llama_like
):
    cache.chmod(0o777)
    _not_trusted(_build(jsonl_60, llama_like, tmp_path / "second", cache))


def test_a_world_writable_cache_entry_is_not_trusted(tmp_path, cache, jsonl_60, llama_like):
    for entry in cache.glob("*.json"):
        entry.chmod(0o666)
    _not_trusted(_build(jsonl_60, llama_like, tmp_path / "second", cache))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_cache_entry_owned_by_another_user_is_not_trusted(tmp_path, cache, jsonl_60, llama_like):
    for entry in cache.glob("*.json"):
        os.chown(entry, 65534, 65534)  # nobody
    _not_trusted(_build(jsonl_60, llama_like, tmp_path / "second", cache))


def test_a_poisoned_entry_in_a_shared_directory_does_not_change_the_output(
    tmp_path, cache, jsonl_60, llama_like
):
    """What trusting it would cost: another user rewrites the entry (here, the pad id); the
    build must come out as if there were no cache."""
    for entry_path in cache.glob("*.json"):
        entry = json.loads(entry_path.read_text())
        entry["info"]["pad_token_id"] = 7
        entry_path.write_text(json.dumps(entry))
    cache.chmod(0o777)
    out = tmp_path / "second"
    summary = _build(jsonl_60, llama_like, out, cache)
    if not summary.get("refused"):
        assert read_json(out / MANIFEST)["tokenizer"]["pad_token_id"] == 2
        assert (out / "data-00000.parquet").read_bytes() == (
            tmp_path / "first" / "data-00000.parquet"
        ).read_bytes()
