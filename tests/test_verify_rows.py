"""What verify covers: by default a sample (8 random rows and the 2 longest), which its summary
and --json say, so a defect in one row of a few hundred goes unseen; --rows all probes every row,
read in batches as they are probed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import SAMPLE
from rowkit import one_torch_thread, pack_rows, pad_rows, random_docs, write_output

from maskprep import VerifyOptions, verify
from maskprep.cli import main

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
TINY_LLAMA = SAMPLE / "tiny-llama"
PAD = 3
#: The row a defect is planted in: in neither the default sample nor the longest rows.
PLANTED = 77


@pytest.fixture(scope="module")
def docs() -> list[list[int]]:
    return random_docs(1, 190, high=600)


@pytest.fixture(scope="module")
def padded_with_one_bad_row(tmp_path_factory, docs) -> Path:
    """190 padded rows; row 77 trains its padding."""
    table = pad_rows(docs, 10, PAD, "right")
    rows = table.to_pylist()
    rows[PLANTED]["labels"] = list(rows[PLANTED]["input_ids"])
    bad = pa.Table.from_pylist(rows, schema=table.schema)
    return write_output(tmp_path_factory.mktemp("pad") / "out", bad, PAD, "right")


@pytest.fixture(scope="module")
def pack_with_one_bad_row(tmp_path_factory, docs) -> Path:
    """63 packs of three documents; row 40 trains its second document's first token."""
    table = pack_rows([docs[i : i + 3] for i in range(0, 189, 3)], 26, PAD)
    rows = table.to_pylist()
    start = rows[40]["seq_lens"][0]
    rows[40]["labels"][start] = rows[40]["input_ids"][start]
    bad = pa.Table.from_pylist(rows, schema=table.schema)
    return write_output(tmp_path_factory.mktemp("pack") / "out", bad, PAD, "right")


def _leaks(result) -> set[tuple[str, int]]:
    return {(c.probe, c.worst_row) for c in result.checks if c.status == "LEAK"}


@pytest.mark.parametrize("which", ["pad", "pack"])
def test_the_default_sample_misses_one_bad_row_and_all_rows_find_it(
    which, padded_with_one_bad_row, pack_with_one_bad_row
) -> None:
    output, row = (
        (padded_with_one_bad_row, PLANTED) if which == "pad" else (pack_with_one_bad_row, 40)
    )
    sampled = verify(output, TINY_LLAMA, VerifyOptions(from_config=True))
    assert sampled.ok and row not in sampled.rows, "the planted row was drawn: pick another"
    assert sampled.sampled and len(sampled.rows) == 10 and sampled.total_rows in (190, 63)
    every = verify(output, TINY_LLAMA, VerifyOptions(from_config=True, rows="all", batch_size=16))
    assert not every.ok and not every.sampled
    assert every.rows == tuple(range(every.total_rows))
    assert ("labels_loss", row) in _leaks(every)


def test_the_summary_and_json_say_what_was_sampled(runner, padded_with_one_bad_row) -> None:
    args = ["verify", str(padded_with_one_bad_row), "-m", str(TINY_LLAMA), "--from-config"]
    shown = runner.invoke(main, args)
    assert shown.exit_code == 0, shown.output
    assert "no leak found" in shown.stdout and "sampled 10 of 190 rows (2 longest)" in shown.stdout
    assert "a defect in one row is seen only if that row is drawn; --rows all" in shown.stdout
    report = json.loads(runner.invoke(main, [*args, "--json"]).stdout)
    assert (report["sampled"], report["total_rows"], len(report["rows"])) == (True, 190, 10)

    every = runner.invoke(main, [*args, "--rows", "all", "--batch-size", "32", "--json"])
    assert every.exit_code == 1
    report = json.loads(every.stdout)
    assert (report["sampled"], report["total_rows"], len(report["rows"])) == (False, 190, 190)
    shown = runner.invoke(main, [*args, "--rows", "all", "--batch-size", "32"])
    assert "all 190 rows" in shown.stdout and "drawn" not in shown.stdout


@pytest.mark.parametrize("value", ["0", "some", "-3", "1.5"])
def test_rows_takes_a_count_or_all(runner, padded_with_one_bad_row, value) -> None:
    result = runner.invoke(
        main, ["verify", str(padded_with_one_bad_row), "-m", str(TINY_LLAMA), "--rows", value]
    )
    assert result.exit_code == 2 and "--rows" in result.stderr


def test_library_rows_are_a_count_or_all() -> None:
    from maskprep.errors import ConfigError

    for bad in (0, "some", True, 2.5):
        with pytest.raises(ConfigError, match=r"^rows must be at least 1, or 'all'"):
            VerifyOptions(rows=bad)  # type: ignore[arg-type]
    assert VerifyOptions(rows="all").rows == "all"
