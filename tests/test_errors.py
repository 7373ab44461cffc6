"""Errors: library messages name config fields and the CLI shows flags; OS failures sorted into
usage and I/O; one-line reasons; the record stream stops at the first bad record."""

from __future__ import annotations

import errno
import json
import os
import pickle

import pytest
from conftest import make_config, write_jsonl

from maskprep import ConfigError, IOFailure, OutputError, build
from maskprep.cli import main
from maskprep.cli.common import flag
from maskprep.errors import (
    RESUME,
    BadRecordError,
    ManifestError,
    Option,
    first_line,
    os_failure,
)
from maskprep.sources.records import Batch, Record, Rejected, batched


def test_an_option_is_a_field_in_the_library_and_a_flag_on_the_command_line():
    resume, pad = Option("output.resume"), Option("tokenizer.pad_token", "eos")
    message = f"out: resume it ({resume}) or pad with EOS ({pad})"
    error = OutputError(message, suggests=(resume, pad))
    assert (
        str(error)
        == "out: resume it (output.resume=True) or pad with EOS (tokenizer.pad_token='eos')"
    )
    assert error.render(flag) == "out: resume it (--resume) or pad with EOS (--pad-token eos)"
    assert error.suggests == (resume, pad)
    assert flag(Option("tokenizer.name_or_path")) == "--tokenizer"
    # A plain error renders as it reads.
    assert ConfigError("no {braces} here").render(flag) == "no {braces} here"


def test_errors_keep_their_options_and_fields_when_pickled():
    """A Ray worker's error reaches the driver pickled: it must still render as flags there."""
    engine = Option("engine", "ray")
    error = ConfigError(f"{engine} needs Ray", suggests=(engine,))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ConfigError and copy.render(flag) == "--engine ray needs Ray"
    for original in (
        BadRecordError("in.jsonl:3", "invalid JSON"),
        ManifestError("out/_maskprep.json", "shards[0].rows", "expected an integer"),
    ):
        again = pickle.loads(pickle.dumps(original))
        assert type(again) is type(original) and str(again) == str(original)
    assert pickle.loads(pickle.dumps(ManifestError("p", "f", "x"))).field == "f"


def _error_classes():
    """Every exception class maskprep defines, imported from each module of the package."""
    import importlib
    import inspect as pyinspect
    import pkgutil

    import maskprep

    found = set()
    skipped = ("maskprep.training", "maskprep.launch", "maskprep.__main__")
    for module in pkgutil.walk_packages(maskprep.__path__, "maskprep."):
        if module.name.startswith(skipped):  # optional extras, or the program's entry point
            continue
        for _, value in pyinspect.getmembers(importlib.import_module(module.name)):
            is_error = isinstance(value, type) and issubclass(value, BaseException)
            if is_error and value.__module__.startswith("maskprep."):
                found.add(value)
    return found


def test_errors_pickle_by_the_standard_means():
    """No error class needs a ``__reduce__`` of its own: its arguments are its ``args``."""
    from maskprep.storage.errors import MissingExtra, NotFound, StorageError

    classes = _error_classes()
    assert {BadRecordError, ManifestError, StorageError, MissingExtra} <= classes
    assert sorted(c.__qualname__ for c in classes if "__reduce__" in vars(c)) == []
    for error in (
        NotFound("s3://b/k", "no such bucket"),
        MissingExtra("s3://b", "s3fs", "s3"),
        OutputError(f"out: resume it ({RESUME})", suggests=(RESUME,)),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.suggests == error.suggests and vars(copy) == vars(error)


def test_a_library_error_ends_any_command_as_one_line_with_flags(runner):
    """One path for every command's library errors (``Command.invoke``): a command with no
    decorator of its own still shows the flags the error suggests, with the error's exit code."""
    import click

    from maskprep.cli.common import Command

    @click.command(cls=Command)
    @click.option("--json", "as_json", is_flag=True)
    def bare(as_json):
        raise OutputError(f"out: unfinished; resume it ({RESUME})", suggests=(RESUME,))

    result = runner.invoke(bare, [])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: out: unfinished; resume it (--resume)"
    data = json.loads(runner.invoke(bare, ["--json"]).stdout)
    assert data["error"]["type"] == "OutputError" and data["error"]["exit_code"] == 2
    assert data["error"]["message"] == "out: unfinished; resume it (--resume)"


def test_library_messages_name_no_flags_and_the_cli_renders_them(tmp_path, llama_like, runner):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    with pytest.raises(ConfigError) as raised:
        build(make_config([src], llama_like, tmp_path / "o"))  # llama_like has no pad token
    assert "--" not in str(raised.value)
    assert "tokenizer.pad_token='eos'" in str(raised.value)
    args = ["build", str(src), "-t", str(llama_like), "-o", str(tmp_path / "o")]
    result = runner.invoke(main, [*args, "--max-length", "8"])
    assert result.exit_code == 2
    assert "(--pad-token eos)" in result.output and "(--pad-token TOKEN)" in result.output


def test_an_unfinished_output_message_names_flags_only_on_the_command_line(
    tmp_path, llama_like, runner
):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": f"doc {i}"} for i in range(9)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "data-00000.parquet").write_bytes(b"left by a killed build")
    with pytest.raises(OutputError) as raised:
        build(make_config([src], llama_like, out, pad_token="eos"))
    assert "(output.resume=True)" in str(raised.value) and "--" not in str(raised.value)
    args = ["build", str(src), "-t", str(llama_like), "-o", str(out), "--max-length", "8"]
    result = runner.invoke(main, [*args, "--pad-token", "eos"])
    assert result.exit_code == 2
    assert "resume it (--resume) to finish it, or overwrite it (--overwrite)" in result.output


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("one line", "one line"),
        ("\n\n   the reason   \nthe details\n", "the reason"),
        ("first\nsecond", "first"),
    ],
)
def test_first_line_is_the_first_line_with_text(text, line):
    assert first_line(ValueError(text)) == line
    assert first_line(text) == line


def test_first_line_of_a_blank_message_says_what_failed():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("\n \n")) == "ValueError"
    assert first_line(OSError(), default="no reason given") == "no reason given"


@pytest.mark.parametrize(
    ("number", "kind", "code"),
    [
        (errno.ENOSPC, IOFailure, 1),
        (errno.EDQUOT, IOFailure, 1),
        (errno.EIO, IOFailure, 1),
        (errno.EFBIG, IOFailure, 1),
        (errno.EACCES, OutputError, 2),
        (errno.EROFS, OutputError, 2),
        (errno.ENOTDIR, OutputError, 2),
    ],
)
def test_os_errors_are_usage_errors_or_io_failures(number, kind, code):
    error = os_failure("out", "cannot write output", OSError(number, os.strerror(number), "f"))
    assert type(error) is kind and error.exit_code == code
    assert str(error) == f"out: cannot write output: {os.strerror(number)} (f)"
    assert isinstance(error, ConfigError) == (code == 2)  # an I/O failure is never a usage error


# ---------------------------------------------------------------------------- the record stream


def _stream(items, after):
    """``items``, then a failure if anything is read past them."""
    yield from items
    raise AssertionError(f"read past {after}")


def test_the_fail_policy_stops_reading_at_the_first_bad_record():
    good = [Record(f"doc {i}", "in", i) for i in range(1, 4)]
    bad = Rejected("in", 4, "invalid JSON", "{")
    batches = list(batched(_stream([*good, bad], "the bad record"), 2, stop_at_reject=True))
    assert batches == [Batch(good[:2]), Batch([], [bad])]


def test_rejected_records_travel_with_the_batch_they_were_read_in():
    items = [
        Record("a", "in", 1),
        Rejected("in", 2, "bad", "x"),
        Record("b", "in", 3),
        Record("c", "in", 4),
        Rejected("in", 5, "bad", "y"),
    ]
    batches = list(batched(items, 2))
    assert batches == [
        Batch([items[0], items[2]], [items[1]]),
        Batch([items[3]], [items[4]]),
    ]
    assert list(batched(items[:3], 2)) == [Batch([items[0], items[2]], [items[1]])]
    assert list(batched([items[1]], 2)) == [Batch([], [items[1]])]


def test_the_ray_engine_message_names_the_option_not_the_flag(monkeypatch, runner, tmp_path):
    import sys

    from maskprep.distributed import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError) as raised:
        ray_engine._import_ray()
    assert str(raised.value).startswith("engine='ray' needs Ray, which is not installed")
    assert raised.value.render(flag).startswith("--engine ray needs Ray")


def _string_constants(tree):
    """String literals of a module (f-string parts included), docstrings left out."""
    import ast

    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docstrings.add(id(first.value))
    for node in ast.walk(tree):
        text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if text and id(node) not in docstrings:
            yield node


def test_no_library_string_names_a_command_line_flag():
    """Messages suggest options through Option (rendered as flags by the CLI only)."""
    import ast
    import re
    from pathlib import Path

    import maskprep

    root = Path(maskprep.__file__).parent
    flagged = []
    for path in sorted(root.rglob("*.py")):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in _string_constants(ast.parse(path.read_text(encoding="utf-8"))):
            if re.search(r"(^|[\s(])--[a-z]", node.value):
                flagged.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    assert not flagged, flagged


def test_the_flag_scan_sees_a_flag():
    import ast

    tree = ast.parse('"""Doc --resume."""\nx = f"use --resume {1}"\n')
    found = [n.value for n in _string_constants(tree)]
    assert "use --resume " in found and "Doc --resume." not in found
