"""Two rules for naming inputs, the same locally and on a store (issue #24): a name that exists is
read as it is, and only a name that does not exist is a pattern; and a maskprep output kept
inside an input directory is never read back as input."""

from __future__ import annotations

import json

import pytest
from conftest import make_config, write_jsonl

from maskprep import build
from maskprep.sources.inputs import expand_inputs


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def where(request, tmp_path):
    """A place to put inputs and outputs (a local directory or an S3 prefix) and a writer."""
    if request.param == "local":
        root = tmp_path / "data"
        root.mkdir()

        def put(name: str, text: str) -> None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)

        return str(root), put
    pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
    boto3 = pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3)")
    bucket = request.getfixturevalue("s3_bucket")

    def put_object(name: str, text: str) -> None:
        boto3.client("s3").put_object(Bucket=bucket, Key=f"data/{name}", Body=text.encode())

    return f"s3://{bucket}/data", put_object


def _records(*texts: str) -> str:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts)


def test_a_name_with_glob_characters_that_exists_is_read_as_it_is(where):
    root, put = where
    put("a[1].jsonl", _records("literal"))
    put("a1.jsonl", _records("what the pattern a[1] would match"))
    assert expand_inputs([f"{root}/a[1].jsonl"]) == [f"{root}/a[1].jsonl"]


def test_a_name_that_does_not_exist_is_a_pattern(where):
    """Negative control of the rule above: the same characters, no such name, a pattern."""
    root, put = where
    put("a1.jsonl", _records("one"))
    put("a2.jsonl", _records("two"))
    assert expand_inputs([f"{root}/a[12].jsonl"]) == [f"{root}/a1.jsonl", f"{root}/a2.jsonl"]
    with pytest.raises(Exception, match="matches this pattern"):
        expand_inputs([f"{root}/b[12].jsonl"])


def test_an_output_inside_its_input_directory_is_not_read_back(where, llama_like):
    root, put = where
    put("a.jsonl", _records("first document", "{broken"))
    put("b.jsonl", _records("second document"))
    put("more/c.jsonl", _records("third document"))  # a plain subdirectory is input
    options = dict(pad_token="eos", on_bad_record="skip", shard_rows=1)
    first = build(make_config([root], llama_like, f"{root}/out", **options))
    assert first.manifest.totals.records_read == 4
    # The output (manifest, rejects, shards) now lies inside the input directory.
    again = build(make_config([root], llama_like, f"{root}/out", overwrite=True, **options))
    assert again.manifest.totals.records_read == 4
    assert [i.path for i in again.manifest.inputs] == [
        f"{root}/a.jsonl", f"{root}/b.jsonl", f"{root}/more/c.jsonl"
    ]  # fmt: skip
    resumed = build(make_config([root], llama_like, f"{root}/out", resume=True, **options))
    assert resumed.manifest == again.manifest  # finished, and still what the build makes
    assert f"{root}/out/_rejects.jsonl" not in expand_inputs([f"{root}/**/*.json*"])


def test_an_unfinished_output_inside_the_input_directory_is_not_read_either(tmp_path, llama_like):
    """While a build writes (its record in the output), or after it died, its rejects file is no
    input of another build over the same directory."""
    root = tmp_path / "data"
    root.mkdir()
    write_jsonl(root / "a.jsonl", [{"text": "one"}])
    out = root / "out"
    out.mkdir()
    (out / ".maskprep-writer-00000000000000ee.json").write_text('{"host": "h", "pid": 1}')
    write_jsonl(out / "_rejects.jsonl", [{"file": "x", "line": 1, "reason": "r", "raw": "y"}])
    assert expand_inputs([str(root)]) == [str(root / "a.jsonl")]
