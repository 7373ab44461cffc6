"""One check of a token id a user gives, for every option that takes one: an integer an int32
``input_ids`` column holds, else a one-line usage error (exit 2) naming the option."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rowkit import pad_rows, random_docs

from maskprep import ConfigError, VerifyOptions
from maskprep.cli import main
from maskprep.inspecting.options import InspectOptions
from maskprep.token_ids import MAX_TOKEN_ID, check_token_id, token_id_problem

OPTIONS = [("inspect", "--pad-id"), ("inspect", "--eos-id"), ("verify", "--pad-id")]
MODEL = ["-m", str(Path(__file__).parents[1] / "sample_data" / "tiny-llama"), "--from-config"]
BAD = ["-1", str(MAX_TOKEN_ID + 1), "99999999999999999999", "x", "1.5", "", "0x10", "nan"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("ids") / "rows.parquet"
    pq.write_table(pad_rows(random_docs(1, 3), 8, 3, "right"), path)
    return path


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(("command", "option"), OPTIONS)
def test_a_bad_token_id_is_a_one_line_usage_error_naming_the_option(
    runner, rows, command, option, value
):
    extra = MODEL if command == "verify" else []
    result = runner.invoke(main, [command, str(rows), *extra, f"{option}={value}"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: Invalid value for '{option}': {token_id_problem_for(value)}"]
    assert "Traceback" not in result.output


def token_id_problem_for(text: str) -> str:
    try:
        return token_id_problem(int(text))  # type: ignore[return-value]
    except ValueError:
        return token_id_problem(text)  # type: ignore[return-value]


@pytest.mark.parametrize(("command", "option"), OPTIONS)
def test_the_largest_token_id_passes_the_option_check(runner, rows, command, option):
    """The negative control: the same command with the int32 maximum gets past the option."""
    if command == "verify":
        pytest.importorskip("torch", reason="needs the verify extra (torch)")
    extra = MODEL if command == "verify" else []
    result = runner.invoke(main, [command, str(rows), *extra, option, str(MAX_TOKEN_ID)])
    assert "Invalid value" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output


@pytest.mark.parametrize("value", [-1, MAX_TOKEN_ID + 1, 2**40, "7", 1.0, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda v: InspectOptions(pad_id=v),
        lambda v: InspectOptions(eos_id=v),
        lambda v: VerifyOptions(pad_id=v),
    ],
)
def test_the_library_refuses_the_same_values(make, value):
    with pytest.raises(ConfigError, match="is not a token id") as raised:
        make(value)
    assert len(str(raised.value).splitlines()) == 1


def test_check_token_id_names_the_field_and_lets_none_and_the_range_through():
    for value in (None, 0, 5, MAX_TOKEN_ID):
        check_token_id("pad_id", value)
    with pytest.raises(ConfigError, match=r"^pad_id: -1 is not a token id \(0 to 2147483647\)$"):
        check_token_id("pad_id", -1)
