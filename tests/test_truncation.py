"""Truncation that costs a build most of its tokens says so (issue 21): a warning on stderr and in
``--json`` past 5 % lost, and ``--max-truncated`` (``ShapeConfig.max_truncated``), a gate for CI
jobs that fails the build past its limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_kit import assert_one_line, assert_ran
from conftest import make_config, write_jsonl

from maskprep import ConfigError, DataError, ShapeConfig, build, read_manifest
from maskprep.cli import main
from maskprep.config import parse_share
from maskprep.output.names import MANIFEST_NAME
from maskprep.pipeline import TRUNCATION_WARNING
from maskprep.shaping.fill import LostTokens


@pytest.fixture
def data(tmp_path, corpus) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in corpus])


def _args(data: Path, tokenizer: Path, out: Path, max_length: int, *extra: str) -> list[str]:
    where = ["build", str(data), "-t", str(tokenizer), "-o", str(out)]
    return [*where, "--max-length", str(max_length), "-q", *extra]


def _lost(output: Path) -> LostTokens:
    totals = read_manifest(output).totals
    return LostTokens.of(totals.shape, totals.real_tokens)


def test_a_build_that_truncates_most_of_its_tokens_says_so(runner, data, tmp_path, with_pad):
    out = tmp_path / "out"
    done = runner.invoke(main, _args(data, with_pad, out, 6))
    assert_ran(done)
    lost = _lost(out)
    assert lost.share > 0.5 and lost.lost == read_manifest(out).totals.shape.tokens_truncated
    expected = (
        f"warning: {lost.share:.1%} of the tokens read ({lost.lost:,} of {lost.read:,}) were "
        f"lost to max_length 6 ({lost.documents_truncated:,} documents truncated): a longer "
        "max_length keeps them, or overflow 'split' (windows of max_length) for plain text"
    )
    assert done.stderr.strip().splitlines() == [expected]
    # ... and in --json, where a CI job reads it.
    done = runner.invoke(main, _args(data, with_pad, out, 6, "--json", "--overwrite"))
    assert_ran(done)
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["warnings"] == [expected.removeprefix("warning: ")]
    assert done.stderr.strip() == expected  # the same line on stderr with --json


def test_a_build_that_loses_little_or_nothing_is_quiet(runner, data, tmp_path, with_pad):
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "whole", 64, "--json"))
    assert_ran(done)
    assert json.loads(done.stdout)["warnings"] == [] and done.stderr == ""
    # Some truncation, under the 5 % the warning starts at.
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "some", 48, "--json"))
    assert_ran(done)
    lost = _lost(tmp_path / "some")
    assert 0 < lost.share <= TRUNCATION_WARNING, lost
    assert json.loads(done.stdout)["warnings"] == []


def test_dropped_documents_are_lost_tokens_and_split_loses_none(runner, data, tmp_path, with_pad):
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "drop", 8, "--overflow", "drop"))
    assert_ran(done)
    lost = _lost(tmp_path / "drop")
    assert (
        lost.documents_dropped > 0
        and lost.lost == read_manifest(tmp_path / "drop").totals.shape.tokens_dropped
    )
    assert f"({lost.documents_dropped:,} dropped as too long)" in done.stderr
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "split", 8, "--overflow", "split"))
    assert_ran(done)
    assert _lost(tmp_path / "split").lost == 0 and done.stderr == ""


@pytest.mark.parametrize("limit", ["5%", "0.05", " 5% "])
def test_the_gate_fails_a_build_past_its_limit(runner, data, tmp_path, with_pad, limit) -> None:
    out = tmp_path / "out"
    reference = tmp_path / "reference"
    assert_ran(runner.invoke(main, _args(data, with_pad, reference, 6)))
    lost = _lost(reference)
    done = runner.invoke(main, _args(data, with_pad, out, 6, "--max-truncated", limit))
    line = assert_one_line(done, 1, stream="stderr")
    assert line == (
        f"Error: {data}: {lost.share:.1%} of the tokens read ({lost.lost:,} of {lost.read:,}) "
        f"were lost to max_length 6 ({lost.documents_truncated:,} documents truncated), more "
        "than the max_truncated limit of 5%; the output is left unfinished (no manifest)"
    )
    # Nothing that looks finished, nothing half-written.
    assert not out.exists() or not any(out.iterdir())
    done = runner.invoke(main, _args(data, with_pad, out, 6, "--max-truncated", limit, "--json"))
    assert done.exit_code == 1
    error = json.loads(done.stdout)
    assert error["ok"] is False and error["error"]["type"] == "TruncationPastLimit"
    assert error["error"]["exit_code"] == 1


def test_the_gate_passes_within_its_limit(runner, data, tmp_path, with_pad) -> None:
    out = tmp_path / "out"
    done = runner.invoke(main, _args(data, with_pad, out, 6, "--max-truncated", "100%"))
    assert_ran(done)
    assert "warning:" in done.stderr  # still told how much was lost
    # Exactly at the limit passes: only more than it fails.
    lost = _lost(out)
    share = lost.lost / lost.read
    done = runner.invoke(
        main, _args(data, with_pad, out, 6, "--max-truncated", repr(share), "--overwrite")
    )
    assert_ran(done)
    # The limit changes no output, so it is not recorded: a resume with another one is the
    # same build.
    assert "max_truncated" not in read_manifest(out).config.raw["shape"]
    done = runner.invoke(main, _args(data, with_pad, out, 6, "--max-truncated", "99%", "--resume"))
    assert_ran(done)
    # 0% allows no loss at all, and a build that loses nothing passes it.
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "zero", 6, "--max-truncated", "0%"))
    assert done.exit_code == 1
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "z2", 64, "--max-truncated", "0"))
    assert_ran(done)


def test_a_failed_overwrite_leaves_the_finished_output_as_it_was(runner, data, tmp_path, with_pad):
    out = tmp_path / "out"
    assert_ran(runner.invoke(main, _args(data, with_pad, out, 64)))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    args = _args(data, with_pad, out, 6, "--max-truncated", "1%", "--overwrite")
    assert runner.invoke(main, args).exit_code == 1
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before and MANIFEST_NAME in after


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("abc", "cannot read 'abc' as a share of tokens"),
        ("5", "from 0 to 1 (did you mean 5%?)"),
        ("1.5", "from 0 to 1 (did you mean 1.5%?)"),
        ("150%", "from 0% to 100%"),
        ("-1%", "from 0% to 100%"),
        ("-0.1", "from 0 to 1"),
        ("nan", "from 0 to 1"),
        ("nan%", "from 0% to 100%"),
        ("inf", "from 0 to 1"),
        ("", "cannot read '' as a share of tokens"),
        ("%", "cannot read '%' as a share of tokens"),
        ("5%%", "cannot read '5%%' as a share of tokens"),
        ("1e400", "from 0 to 1"),
    ],
)
def test_nonsense_limits_are_one_line_usage_errors(runner, data, tmp_path, with_pad, value, detail):
    done = runner.invoke(main, _args(data, with_pad, tmp_path / "o", 6, "--max-truncated", value))
    line = assert_one_line(done, 2, "Invalid value for '--max-truncated'", detail, stream="stderr")
    assert "give a percentage (5%) or a fraction (0.05)" in line
    assert not (tmp_path / "o").exists()


def test_the_library_has_the_same(data, tmp_path, with_pad) -> None:
    assert parse_share("5%") == pytest.approx(0.05) and parse_share("0.05") == 0.05
    assert parse_share("100%") == 1.0 and parse_share("0") == 0.0
    for bad in (1.5, -0.1, float("nan"), True):
        with pytest.raises(ConfigError, match="max_truncated must be a fraction from 0 to 1"):
            ShapeConfig(max_length=8, max_truncated=bad)
    config = make_config([data], with_pad, tmp_path / "lib", max_length=6)
    result = build(config)
    assert result.warnings and result.warnings[0].startswith(f"{_lost(result.output).share:.1%}")
    import dataclasses

    gated = dataclasses.replace(
        config,
        shape=dataclasses.replace(config.shape, max_truncated=0.05),
        output=dataclasses.replace(config.output, directory=str(tmp_path / "gated")),
    )
    with pytest.raises(DataError, match=r"more than the max_truncated limit of 5%") as raised:
        build(gated)
    assert type(raised.value).__name__ == "TruncationPastLimit"
    assert not (tmp_path / "gated" / MANIFEST_NAME).exists()
