"""#14, ``--resume`` on a finished output: it is returned as finished only when it still is what
this build would make (same inputs, same tokenizer files, every shard there, a sound manifest)."""

from __future__ import annotations

import json
import shutil

import pytest

from .helpers import (
    MANIFEST,
    assert_clean_failure,
    assert_no_traceback,
    assert_ok,
    build_args,
    cli,
    edit_manifest,
    lines,
    read_json,
    sha256,
    snapshot,
)

pytestmark = pytest.mark.integration


def _stale_or_refused(result, out, *, records: int, mentions: str) -> None:
    """Either the build was redone (exit 0, the manifest tells the new story) or refused in one
    line naming what changed; never the old output returned as if finished."""
    if result.code == 0:
        assert_ok(result)
        assert read_json(out / MANIFEST)["totals"]["records_read"] == records
    else:
        assert_clean_failure(result, 2, mentions=[mentions])


def test_resume_after_the_input_changed_is_not_the_old_output(tmp_path, llama_like):
    source = tmp_path / "in.jsonl"
    source.write_text(lines(20))
    out = tmp_path / "out"
    assert_ok(cli(*build_args(source, llama_like, out)))
    with open(source, "a") as handle:
        handle.write(lines(5, prefix="added"))
    result = cli(*build_args(source, llama_like, out, "--resume"))
    _stale_or_refused(result, out, records=25, mentions=str(source))
    if result.code == 0:
        assert read_json(out / MANIFEST)["inputs"][0]["sha256"] == sha256(source)


def test_resume_after_the_tokenizer_files_changed_is_not_the_old_output(
    tmp_path, jsonl_60, llama_like
):
    tokenizer = shutil.copytree(llama_like, tmp_path / "tok")
    out = tmp_path / "out"
    assert_ok(cli(*build_args(jsonl_60, tokenizer, out)))
    config_path = tokenizer / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_max_length"] = 4096  # the bytes change; the ids do not
    config_path.write_text(json.dumps(config))
    result = cli(*build_args(jsonl_60, tokenizer, out, "--resume"))
    _stale_or_refused(result, out, records=60, mentions="tokenizer")
    if result.code == 0:
        recorded = read_json(out / MANIFEST)["tokenizer"]["files"]["tokenizer_config.json"]
        assert recorded == sha256(config_path)


def test_resume_of_an_unchanged_finished_output_returns_it_untouched(
    finished_copy, jsonl_60, llama_like
):
    """Negative control: nothing changed, so the finished output is returned as it is."""
    before = snapshot(finished_copy)
    args = build_args(jsonl_60, llama_like, finished_copy, "--shard-rows", "20", "--resume")
    assert_ok(cli(*args))
    assert snapshot(finished_copy) == before


def test_resume_of_a_finished_output_with_a_shard_missing_restores_or_refuses(
    finished_copy, jsonl_60, llama_like
):
    (finished_copy / "data-00001.parquet").unlink()
    args = build_args(jsonl_60, llama_like, finished_copy, "--shard-rows", "20", "--resume")
    result = cli(*args)
    if result.code == 0:
        assert (finished_copy / "data-00001.parquet").is_file()
        assert_ok(cli("inspect", finished_copy))
    else:
        assert_clean_failure(result, (1, 2), mentions=["data-00001.parquet"])


def test_resume_refuses_a_manifest_with_shard_paths_outside_the_output(
    finished_copy, tmp_path, jsonl_60, llama_like
):
    shutil.copy(finished_copy / "data-00000.parquet", tmp_path / "outside.parquet")

    def change(manifest: dict) -> None:
        manifest["shards"][0]["path"] = "../outside.parquet"

    edit_manifest(finished_copy, change)
    args = build_args(jsonl_60, llama_like, finished_copy, "--shard-rows", "20", "--resume")
    assert_clean_failure(cli(*args), (1, 2), mentions=["../outside.parquet"])


MALFORMED = {
    "list": lambda path: path.write_text("[1, 2]"),
    "not_utf8": lambda path: path.write_bytes(b'\xff\xfe{"format": 1}'),
    "rows_many": lambda path: path.write_text(
        json.dumps(
            {**read_json(path), "shards": [{**read_json(path)["shards"][0], "rows": "many"}]}
        )
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_resume_of_a_malformed_manifest_rebuilds_or_refuses(
    finished_copy, jsonl_60, llama_like, kind
):
    MALFORMED[kind](finished_copy / MANIFEST)
    args = build_args(jsonl_60, llama_like, finished_copy, "--shard-rows", "20", "--resume")
    result = cli(*args)
    assert_no_traceback(result)
    if result.code == 0:  # rebuilt: the manifest is sound again
        manifest = read_json(finished_copy / MANIFEST)
        assert all(isinstance(s["rows"], int) for s in manifest["shards"]), manifest["shards"]
        assert_ok(cli("inspect", finished_copy))
    else:
        assert_clean_failure(result, (1, 2), mentions=[MANIFEST])
