"""#24: one rule for what the integer columns of rows hold (maskprep.column_values), so that
inspect, verify and the collator cannot disagree again (verify passed float ids that inspect
refused), and the collator converts nothing that is not already an integer: float ids were
truncated, numeric strings and booleans read as ids, uint64 2**64-1 wrapped to -1, an Arrow null
became -2**63; 2**63, -2**70, an empty or ragged dict of columns, a null row and flat columns
raised tracebacks. Every refusal is one line naming the row and the column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_kit import assert_one_line
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rowkit import pad_rows, tiny_config

from maskprep import ConfigError, DataError, InspectOptions, inspect
from maskprep.cli import main
from maskprep.column_values import list_values, outside_ids, row_values
from maskprep.columns import IGNORE_INDEX
from maskprep.token_ids import MAX_TOKEN_ID

torch = pytest.importorskip("torch", reason="the collator needs torch (the verify extra)")

from maskprep.collate import Collator, collate  # noqa: E402

BASE = pad_rows([[5, 6, 7], [8, 9], [10, 11, 12, 13]], 6, 2, "right")  # pad id 2, right padding
IDS = BASE.column("input_ids").to_pylist()


def _with_ids(column: pa.Array) -> pa.Table:
    return BASE.set_column(BASE.schema.get_field_index("input_ids"), "input_ids", column)


def _changed(kind: str) -> pa.Array:
    """``input_ids`` with row 1 (or its position 2) made hostile in one way."""
    rows = [list(r) for r in IDS]
    if kind == "float":
        return pa.array([[float(x) for x in r] for r in rows], pa.list_(pa.float64()))
    if kind == "bool":
        return pa.array([[x % 2 == 1 for x in r] for r in rows], pa.list_(pa.bool_()))
    if kind == "string":
        return pa.array([[str(x) for x in r] for r in rows], pa.list_(pa.string()))
    if kind == "null-row":
        return pa.array([None if i == 1 else r for i, r in enumerate(rows)], pa.list_(pa.int32()))
    if kind == "null-value":
        rows[1][2] = None
        return pa.array(rows, pa.list_(pa.int32()))
    if kind == "uint64-max":
        rows[1][2] = 2**64 - 1
        return pa.array(rows, pa.list_(pa.uint64()))
    if kind == "flat":
        return pa.array([r[0] for r in rows], pa.int32())
    raise AssertionError(kind)


#: What each reader says about each hostile column: the same words everywhere.
HOSTILE = {
    "float": "row 0: input_ids: lists of double, not of integers",
    "bool": "row 0: input_ids: lists of bool, not of integers",
    "string": "row 0: input_ids: lists of string, not of integers",
    "null-row": "row 1: input_ids: null, not a list",
    "null-value": "row 1: input_ids: position 2 is null",
    "uint64-max": "row 1: input_ids: position 2 holds 18446744073709551615, past the int64 range",
    "flat": "row 0: input_ids: int32 values, not a list of integers per row",
}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "gpt2"
    tiny_config("gpt2").save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("kind", HOSTILE)
def test_inspect_verify_and_the_collator_refuse_alike(tmp_path, runner, gpt2, kind):
    table = _with_ids(_changed(kind))
    shard = tmp_path / "rows.parquet"
    pq.write_table(table, shard)
    expected = HOSTILE[kind]

    with pytest.raises(DataError) as inspected:
        inspect(str(shard), InspectOptions())
    assert str(inspected.value) == f"{shard}: {expected}"

    with pytest.raises(DataError) as collated:
        Collator(pad_id=2)(table)
    assert str(collated.value) == expected

    verified = runner.invoke(main, ["verify", str(shard), "-m", gpt2, "--from-config"])
    assert_one_line(verified, 1, stream="stderr")
    assert verified.stderr.strip() == f"Error: {shard}: {expected}"


def test_the_same_rows_with_integer_ids_pass_all_three(tmp_path, runner, gpt2):
    """The negative control: what the three refuse above is the column, not the rows."""
    shard = tmp_path / "rows.parquet"
    pq.write_table(BASE, shard)
    assert inspect(str(shard), InspectOptions()).passes(strict=False)
    assert Collator(pad_id=2)(BASE)["input_ids"].tolist() == IDS
    verified = runner.invoke(main, ["verify", str(shard), "-m", gpt2, "--from-config"])
    assert verified.exit_code == 0, verified.output


# ----------------------------------------------------------------------------- the collator


def _row(ids: object, **more: object) -> dict:
    length = len(ids) if hasattr(ids, "__len__") else 1  # type: ignore[arg-type]
    return {
        "input_ids": ids,
        "attention_mask": [1] * length,
        "labels": [IGNORE_INDEX] * length,
        **more,
    }


def _table(ids: pa.Array, mask: list, labels: list) -> pa.Table:
    return pa.table({"input_ids": ids, "attention_mask": mask, "labels": labels})


I32 = pa.list_(pa.int32())
ID0, ID1 = "row 0: input_ids: position 0 holds", "row 0: input_ids: position 1 holds"
NO_ID = "not a token id (0 to 2147483647)"
INT64 = "past the int64 range"
REFUSED = {
    "2**63": ([_row([1, 2**63, 3])], f"{ID1} 9223372036854775808, {INT64}"),
    "-2**70": ([_row([1, -(2**70)])], f"{ID1} -1180591620717411303424, {INT64}"),
    "float": (
        [_row([4, 5]), _row([1.7, 2.2])],
        "row 1: input_ids: position 0 holds the float 1.7, not an integer",
    ),
    "whole-float": ([_row([1.0, 2.0])], f"{ID0} the float 1.0, not an integer"),
    "numeric-strings": ([_row(["1", "2"])], f"{ID0} the string '1', not an integer"),
    "a-string": ([_row("12")], "row 0: input_ids: the string '12', not a list of integers"),
    "bools": ([_row([True, False])], f"{ID0} the boolean True, not an integer"),
    "a-bool-among-ints": ([_row([7, True])], f"{ID1} the boolean True, not an integer"),
    "uint64-max": (
        [_row(np.array([1, 2**64 - 1], np.uint64))],
        f"{ID1} 18446744073709551615, {INT64}",
    ),
    "numpy-floats": (
        [_row(np.array([1.5, 2.0]))],
        "row 0: input_ids: float64 values, not integers",
    ),
    "bool-tensor": (
        [_row(torch.tensor([True, False]))],
        "row 0: input_ids: bool values, not integers",
    ),
    "None": ([_row([1, None])], f"{ID1} None, not an integer"),
    "nested": ([_row([[1], [2]])], f"{ID0} a list, not an integer"),
    "negative-id": ([_row([1, -1])], f"{ID1} -1, {NO_ID}"),
    "past-int32": ([_row([1, 2**31])], f"{ID1} 2147483648, {NO_ID}"),
    "label-minus-one": (
        [{**_row([1, 2]), "labels": [-1, 2]}],
        "row 0: labels: position 0 holds -1, not -100 or a token id (0 to 2147483647)",
    ),
    "float-mask": (
        [{**_row([1, 2]), "attention_mask": [1.0, 1.0]}],
        "row 0: attention_mask: float64 values, not integers or booleans",
    ),
    "float-length": ([_row([1, 2], length=2.0)], "row 0: length: the float 2.0, not an integer"),
    "a-list-for-a-row": ([_row([1, 2]), [1, 2]], "row 1: list, not a row (a dict of columns)"),
    "dict-of-0-rows": (
        {"input_ids": [], "attention_mask": [], "labels": []},
        "collate needs at least one row; the columns hold none",
    ),
    "dict-ragged": (
        {"input_ids": [[1, 2]], "attention_mask": [[1, 1], [1, 1]], "labels": [[1, 2]]},
        "column attention_mask has 2 rows but input_ids has 1: columns of different batches?",
    ),
    "dict-flat": (
        {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [1, 2]},
        "row 0: input_ids: the integer 1, not a list of integers",
    ),
    "dict-a-string": (
        {"input_ids": "ab", "attention_mask": [1, 1], "labels": [1, 2]},
        "column input_ids: str, not a list of rows",
    ),
    "arrow-null-row": (
        _table(pa.array([[1, 2], None], I32), [[1, 1], [1, 1]], [[1, 2], [1, 2]]),
        "row 1: input_ids: null, not a list",
    ),
    "arrow-null-value": (
        _table(pa.array([[1, None]], I32), [[1, 1]], [[-100, -100]]),
        "row 0: input_ids: position 1 is null",
    ),
    "arrow-flat": (
        _table(pa.array([1, 2]), [1, 1], [1, 2]),
        "row 0: input_ids: int64 values, not a list of integers per row",
    ),
    "arrow-0-rows": (BASE.slice(0, 0), "collate needs at least one row; the table holds none"),
}


@pytest.mark.parametrize(("rows", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_the_collator_refuses_what_it_would_have_converted(rows, message):
    for feed in (Collator(pad_id=0), lambda r: collate(r, pad_id=0)):
        with pytest.raises(DataError) as caught:
            feed(rows)
        assert str(caught.value) == message


def test_integers_in_every_container_pass_unchanged():
    """The negative control: NumPy and torch integers, tuples, booleans in the mask, a 2D array
    of columns and a fixed-size Arrow list are all integers, and come out exactly."""
    ids = [[5, 6, MAX_TOKEN_ID], [0, 9, 10]]
    flags = [[True, True, True], [1, 1, 1]]
    pairs = list(zip(ids, flags, strict=True))
    feeds = [
        [{"input_ids": tuple(r), "attention_mask": m, "labels": list(r)} for r, m in pairs],
        [
            {
                "input_ids": np.array(r, np.uint32),
                "attention_mask": np.array(m),
                "labels": torch.tensor(r),
            }
            for r, m in pairs
        ],
        [
            {
                "input_ids": [np.int64(x) for x in r],
                "attention_mask": [np.bool_(True)] * 3,
                "labels": r,
                "length": np.int8(3),
            }
            for r in ids
        ],
        {
            "input_ids": np.array(ids),
            "attention_mask": np.ones((2, 3), np.int8),
            "labels": torch.tensor(ids),
        },
        _table(
            pa.array(ids, pa.list_(pa.int64(), 3)),
            pa.array([[True] * 3] * 2, pa.list_(pa.bool_())),
            ids,
        ),
    ]
    for feed in feeds:
        out = Collator()(feed)
        assert out["input_ids"].tolist() == ids
        assert out["labels"].tolist() == ids


# ----------------------------------------------------------------------------- properties

_ELEMENTS = st.one_of(
    st.integers(min_value=0, max_value=MAX_TOKEN_ID),  # token ids: must pass unchanged
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64 - 1, -(2**63) - 1, MAX_TOKEN_ID + 1, -1, IGNORE_INDEX]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(alphabet="0123456789-x", max_size=4),
    st.lists(st.integers(0, 9), max_size=2),
    st.builds(np.int64, st.integers(0, 1000)),
    st.builds(np.float32, st.floats(width=32, allow_nan=False)),
    st.builds(np.bool_, st.booleans()),
)
_DTYPES = st.sampled_from(
    [None, np.int8, np.int32, np.int64, np.uint64, np.float64, np.bool_, object]
)


def _container(values: list, dtype: object, form: str) -> object:
    """``values`` as a list, a tuple, a NumPy array of ``dtype`` or a tensor."""
    if form == "tuple":
        return tuple(values)
    if form == "numpy":
        return np.array(values, dtype=dtype)
    if form == "torch":
        return torch.tensor(values)
    return values


def _expected(values: list) -> bool:
    """Whether the collator must take ``values`` as the ids of a row: Python or NumPy integers
    (not booleans), each a token id."""
    integers = all(isinstance(v, (int, np.integer)) for v in values)
    flags = any(isinstance(v, (bool, np.bool_)) for v in values)
    return integers and not flags and all(0 <= v <= MAX_TOKEN_ID for v in values)


ROWS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@ROWS
@given(
    st.one_of(
        st.lists(
            st.lists(st.integers(0, MAX_TOKEN_ID), min_size=1, max_size=5), min_size=1, max_size=4
        ),
        st.lists(st.lists(_ELEMENTS, min_size=1, max_size=5), min_size=1, max_size=4),
    ),
    _DTYPES,
    st.sampled_from(["list", "tuple", "numpy", "torch"]),
    st.sampled_from(["rows", "columns", "arrow"]),
)
@example([[1.5, 2]], None, "list", "rows")
@example([[2**64 - 1]], np.uint64, "numpy", "rows")
@example([[True, 5]], None, "list", "columns")
@example([[None, 3]], None, "list", "arrow")
def test_any_row_is_collated_exactly_or_refused_in_one_line(rows, dtype, form, layout):
    width = max(len(r) for r in rows)
    rows = [r + [0] * (width - len(r)) for r in rows]  # one width: no pad id needed
    try:
        containers = [_container(r, dtype, form) for r in rows]
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return  # NumPy or torch cannot even hold these: nothing reaches the collator
    feed: object
    if layout == "rows":
        feed = [
            {"input_ids": c, "attention_mask": [1] * width, "labels": [IGNORE_INDEX] * width}
            for c in containers
        ]
    elif layout == "columns":
        feed = {
            "input_ids": containers,
            "attention_mask": [[1] * width] * len(rows),
            "labels": [[IGNORE_INDEX] * width] * len(rows),
        }
    else:
        try:
            column = pa.array(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return
        feed = pa.table(
            {
                "input_ids": column,
                "attention_mask": [[1] * width] * len(rows),
                "labels": [[IGNORE_INDEX] * width] * len(rows),
            }
        )
    held = [np.asarray(c).tolist() if form in ("numpy", "torch") else list(c) for c in containers]
    if layout == "arrow":
        held = feed["input_ids"].to_pylist()  # type: ignore[index]
    try:
        out = Collator()(feed)
    except DataError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith(("row ", "column ")), message
        assert "input_ids" in message, message
        assert not all(_expected(r) for r in held), f"refused token ids {held}: {message}"
        event("refused")
        return
    event("collated")
    assert all(_expected(r) for r in held), f"collated {held} as {out['input_ids'].tolist()}"
    assert out["input_ids"].tolist() == [[int(v) for v in r] for r in held]


@ROWS
@given(st.lists(_ELEMENTS, max_size=6), st.sampled_from(["input_ids", "attention_mask", "labels"]))
def test_row_values_returns_the_integers_given_or_refuses(values, name):
    try:
        out = row_values(values, name, 7)
    except DataError as error:
        assert str(error).startswith(f"row 7: {name}: ")
        flags_ok = name == "attention_mask"
        assert not all(
            (isinstance(v, (int, np.integer)) and (flags_ok or not isinstance(v, (bool, np.bool_))))
            and -(2**63) <= v < 2**63
            for v in values
        ), values
        return
    assert out.dtype == np.int64 and out.tolist() == [int(v) for v in values]


def test_outside_ids_is_the_one_range():
    ids = np.array([-1, 0, 5, MAX_TOKEN_ID, MAX_TOKEN_ID + 1])
    assert outside_ids(ids).tolist() == [True, False, False, False, True]
    assert outside_ids(ids, 6).tolist() == [True, False, False, True, True]
    values, offsets = list_values(pa.array([[1, 2], [], [3]]), "input_ids", [10, 11, 12])
    assert values.tolist() == [1, 2, 3] and offsets.tolist() == [0, 2, 2, 3]


# ----------------------------------------------------------------------------- collator options

_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.sampled_from(["left", "right", "mask4d", "position_ids", "mask2d", "bfloat16", "int8"]),
    st.builds(np.int64, st.integers(0, 10)),
)
_FIELDS = [
    "pad_id",
    "padding_side",
    "form",
    "causal",
    "dtype",
    "pad_position_ids",
    "packed",
    "position_offset",
    "max_positions",
    "vocab_size",
    "check_labels",
]


@ROWS
@given(st.dictionaries(st.sampled_from(_FIELDS), _ANY, max_size=4))
def test_collator_options_are_taken_as_given_or_refused_as_programming_errors(options):
    """An option of the wrong type or range raises TypeError/ValueError when the collator is
    made (never later, as if the data were at fault); one it takes, it keeps as given."""
    try:
        collator = Collator(**options)
    except (TypeError, ValueError) as error:
        assert "\n" not in str(error)
        return
    for name, value in options.items():
        if name != "dtype":
            assert getattr(collator, name) is value or getattr(collator, name) == value
    for name in ("causal", "pad_position_ids", "check_labels"):
        assert isinstance(getattr(collator, name), bool)
    rows = [{"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [IGNORE_INDEX, 6]}]
    try:
        out = collator(rows)
    except (DataError, ConfigError) as error:
        assert "\n" not in str(error)
        return
    assert out["input_ids"].tolist() == [[5, 6]]
