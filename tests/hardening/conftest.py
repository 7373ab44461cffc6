"""Fixtures shared by the hardening tests: small inputs and finished builds made once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import assert_ok, build_args, cli, lines


@pytest.fixture(scope="session")
def jsonl_60(tmp_path_factory) -> Path:
    """60 short JSONL records."""
    path = tmp_path_factory.mktemp("inputs") / "in.jsonl"
    path.write_text(lines(60), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def finished(tmp_path_factory, jsonl_60, llama_like) -> Path:
    """A finished build of ``jsonl_60`` (pad, 16 wide, pad == eos, 3 shards of 20 rows). Copy it
    before changing it."""
    out = tmp_path_factory.mktemp("finished") / "out"
    result = cli(*build_args(jsonl_60, llama_like, out, "--shard-rows", "20"))
    assert result.code == 0, result.text
    return out


@pytest.fixture
def finished_copy(finished, tmp_path) -> Path:
    """A private copy of ``finished``, free to tamper with."""
    return Path(shutil.copytree(finished, tmp_path / "out"))


@pytest.fixture(scope="session")
def parts(tmp_path_factory, llama_like) -> list[Path]:
    """Two finished parts (``--num-parts 2``) of one build of 40 records. Copy before changing."""
    root = tmp_path_factory.mktemp("parts")
    source = root / "in.jsonl"
    source.write_text(lines(40))
    made = []
    for index in range(2):
        out = root / f"part{index}"
        extra = ["--num-parts", "2", "--part-index", str(index)]
        assert_ok(cli(*build_args(source, llama_like, out, *extra)))
        made.append(out)
    return made
