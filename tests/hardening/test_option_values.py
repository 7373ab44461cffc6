"""#24: every numeric and size option given what a hostile or careless user types (NaN, infinity,
10**30) ends in one line and exit 2, never a traceback, an endless loop or the memory running
out; and the option parsers, fed anything, return a correct value or refuse it as documented."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import click
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from maskprep import ConfigError
from maskprep.cli.common import TOKEN_ID
from maskprep.config import (
    MAX_PARTS,
    MAX_SIZE,
    PartSpec,
    SourceConfig,
    parse_buckets,
    parse_reject_limit,
    parse_size,
)
from maskprep.token_ids import MAX_TOKEN_ID
from maskprep.verifying.options import MAX_SEED

from .helpers import assert_ok, build_args, cli, needs_torch

pytestmark = pytest.mark.integration

HUGE = "9" * 30
PAST_SIZE = f"past the largest size, {MAX_SIZE:,} bytes (1 EiB)"


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--shard-size", "nan", "size 'nan' is not a number of bytes; use e.g. 500M or 2G"),
        ("--shard-size", "inf", "size 'inf' is not a number of bytes; use e.g. 500M or 2G"),
        ("--shard-size", "-inf", "size '-inf' is not a number of bytes; use e.g. 500M or 2G"),
        ("--shard-size", "NaNK", "size 'NaNK' is not a number of bytes; use e.g. 500M or 2G"),
        ("--shard-size", "1e400", f"size '1e400' is {PAST_SIZE}"),
        ("--shard-size", "9e99", f"size '9e99' is {PAST_SIZE}"),
        ("--shard-size", "0.5", "size '0.5' is less than 1 byte"),
        ("--max-record-bytes", "nan", "size 'nan' is not a number of bytes; use e.g. 500M or 2G"),
        ("--max-record-bytes", "inf", "size 'inf' is not a number of bytes; use e.g. 500M or 2G"),
        ("--max-record-bytes", "9e99", f"size '9e99' is {PAST_SIZE}"),
        ("--max-record-bytes", "1e20", f"size '1e20' is {PAST_SIZE}"),
        ("--max-record-bytes", "1e999999999", f"size '1e999999999' is {PAST_SIZE}"),
        ("--max-record-bytes", "-1e999999999", "size '-1e999999999' is less than 1 byte"),
        (
            "--num-parts",
            HUGE,
            f"{HUGE} is not in the range 1<=x<={MAX_PARTS}.",
        ),
    ],
)
def test_a_size_or_count_no_build_can_use_is_one_line_exit_2(
    tmp_path, jsonl_60, llama_like, option, value, problem
):
    out = tmp_path / "out"
    extra = ["--part-index", "0"] if option == "--num-parts" else []
    result = cli(*build_args(jsonl_60, llama_like, out, option, value, *extra))
    assert result.crash is None, result.crash
    assert result.code == 2, result.text
    assert _message(result) == f"Error: Invalid value for '{option}': {problem}"
    assert not out.exists()


def test_the_largest_size_and_part_count_are_taken(tmp_path, jsonl_60, llama_like):
    """The negative control: the bounds themselves build."""
    out = tmp_path / "out"
    args = ["--max-record-bytes", "1048576T", "--shard-size", str(MAX_SIZE)]
    parts = ["--num-parts", str(MAX_PARTS), "--part-index", "0"]
    assert_ok(cli(*build_args(jsonl_60, llama_like, out, *args, *parts)))


def test_inspect_buckets_past_any_row_width_are_one_line(finished):
    result = cli("inspect", finished, "--strategy", "bucket", "--buckets", HUGE)
    assert result.crash is None, result.crash
    assert result.code == 2, result.text
    assert _message(result) == (f"Error: bucket widths must be 1 to 2,147,483,647, not ({HUGE},)")
    control = cli("inspect", finished, "--strategy", "bucket", "--buckets", "2147483647")
    assert control.crash is None and control.code == 1  # rows are 16 wide, not a bucket


@needs_torch
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--num-layers",
            HUGE,
            f"Error: {{model}}: num_layers {HUGE} is more than the 2 layers it has",
        ),
        (
            "--seed",
            HUGE,
            f"Error: Invalid value for '--seed': {HUGE} is not in the range 0<=x<={MAX_SEED}.",
        ),
    ],
)
def test_verify_values_no_model_can_take_are_one_line_exit_2(
    finished, tiny_gpt2, option, value, message
):
    result = cli("verify", finished, "-m", tiny_gpt2, "--from-config", option, value)
    assert result.crash is None, result.crash
    assert result.code == 2, result.text
    assert _message(result) == message.format(model=tiny_gpt2)


@needs_torch
@pytest.mark.parametrize(
    "options",
    [("--batch-size", HUGE), ("--seed", str(MAX_SEED)), ("--num-layers", "2")],
    ids=["batch-size-past-the-rows", "largest-seed", "all-layers"],
)
def test_verify_takes_the_values_that_make_sense(finished, tiny_gpt2, options):
    """A batch larger than the data is one batch (it was an OverflowError); the bounds pass."""
    result = cli("verify", finished, "-m", tiny_gpt2, "--from-config", *options)
    assert result.crash is None, result.crash
    assert result.code == 0, result.text


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> str:
    pytest.importorskip("transformers")
    from rowkit import tiny_config

    path = tmp_path_factory.mktemp("models") / "gpt2"
    tiny_config("gpt2").save_pretrained(path)
    return str(path)


def _message(result) -> str:
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(("Usage: ", "Try '"))
    ]
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- the parsers

PARSERS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "sNaN", "1e999999999", "-0", "1_0", ""]),
    st.text(max_size=8),
)
units = st.sampled_from(["", "K", "M", "G", "T", "KiB", "mb", "B", " G", "X"])


@PARSERS
@given(numbers, units)
@example("0.9999999999999999999999999999999999999", "K")
@example("9007199254740993", "")
def test_parse_size_gives_the_exact_size_rounded_down_or_refuses(number, unit):
    text = number + unit
    try:
        size = parse_size(text)
    except ConfigError as error:
        assert "\n" not in str(error) and repr(text) in str(error)
        return
    assert isinstance(size, int) and 1 <= size <= MAX_SIZE
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(cleaned[-1:], 1)
    if scale > 1:
        cleaned = cleaned[:-1]
    assert size == math.floor(Fraction(Decimal(cleaned.strip())) * scale)
    SourceConfig(inputs=("-",), max_record_bytes=size)  # every size parsed is a valid limit


@PARSERS
@given(st.lists(numbers, max_size=4).map(",".join))
def test_parse_buckets_gives_integers_or_refuses(text):
    try:
        buckets = parse_buckets(text)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    assert buckets and all(type(b) is int for b in buckets)


@PARSERS
@given(st.one_of(numbers, numbers.map(lambda n: n + "%")))
def test_parse_reject_limit_gives_a_bounded_limit_or_refuses(text):
    try:
        limit = parse_reject_limit(text)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    if limit.percent is not None:
        assert 0 <= limit.percent <= 100
    else:
        assert limit.count is not None and limit.count >= 0


@PARSERS
@given(numbers)
@example(str(MAX_TOKEN_ID + 1))
def test_a_token_id_option_gives_a_token_id_or_a_usage_error(text):
    try:
        value = TOKEN_ID.convert(text, None, None)
    except click.BadParameter as error:
        assert "\n" not in error.format_message()
        return
    assert type(value) is int and 0 <= value <= MAX_TOKEN_ID


@PARSERS
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_the_number_of_parts_is_bounded(count):
    try:
        PartSpec(index=0, count=count)
    except ConfigError:
        assert not 1 <= count <= MAX_PARTS
    else:
        assert 1 <= count <= MAX_PARTS
