"""#24: the standard streams a caller closes or points at a full device. stderr closed (``2>&-``)
crashed the progress display before anything was built; stderr on a full device stopped the
build at its first progress line; ``--json`` with stdout on ``/dev/full`` raised an OSError
traceback after the manifest was written. Now: diagnostics that cannot be written are dropped
and the build goes on; a report that cannot be written is one line on stderr and exit 1, the
output intact; a closed stdin is a usage error for ``-``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .helpers import MANIFEST, build_args, child_env, cli, snapshot

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full"),
]


def run(args: list[object], *, close: tuple[int, ...] = (), **given: object):
    """``python -m maskprep ARGS``, the descriptors in ``close`` closed when it starts, the other
    standard streams as ``given`` (default: stdin empty, stdout and stderr captured)."""
    streams: dict[str, object] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
    }
    streams.update(given)
    names = {0: "stdin", 1: "stdout", 2: "stderr"}
    for descriptor in close:
        streams[names[descriptor]] = None  # inherited, then closed before exec

    def close_them() -> None:
        for descriptor in close:
            os.close(descriptor)

    completed = subprocess.run(
        [sys.executable, "-m", "maskprep", *map(str, args)],
        env=child_env(),
        preexec_fn=close_them,
        timeout=300,
        check=False,
        **streams,  # type: ignore[arg-type]
    )
    out = (completed.stdout or b"").decode("utf-8", "replace")
    err = (completed.stderr or b"").decode("utf-8", "replace")
    return completed.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, jsonl_60, llama_like) -> dict[str, bytes]:
    """The shards of a build with every stream open."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert cli(*build_args(jsonl_60, llama_like, out, "--shard-rows", "20")).code == 0
    return {k: v for k, v in snapshot(out).items() if k.startswith("data-")}


def _shards(out) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(out).items() if k.startswith("data-")}


def _build(jsonl, tokenizer, out, *extra: str) -> list[object]:
    # Not quiet: the progress line and the summary are what stderr and stdout get.
    args = build_args(jsonl, tokenizer, out, "--shard-rows", "20", *extra)
    args.remove("-q")
    return args


def test_a_build_with_stderr_closed_builds_and_says_nothing(
    tmp_path, jsonl_60, llama_like, reference
):
    out = tmp_path / "out"
    code, stdout, _ = run(_build(jsonl_60, llama_like, out), close=(2,))
    assert code == 0, stdout
    assert "records read" in stdout  # the summary still reaches stdout
    assert _shards(out) == reference  # no stray byte reached a file opened on descriptor 2
    assert (out / MANIFEST).is_file()


def test_a_failing_build_with_stderr_closed_still_exits_2(tmp_path, llama_like):
    code, stdout, _ = run(_build(tmp_path / "nope.jsonl", llama_like, tmp_path / "out"), close=(2,))
    assert code == 2 and stdout == ""


def test_a_build_with_stderr_on_a_full_device_builds(tmp_path, jsonl_60, llama_like, reference):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        code, stdout, _ = run(_build(jsonl_60, llama_like, out), stderr=full)
    assert code == 0, stdout
    assert _shards(out) == reference


@pytest.mark.parametrize("extra", [("--json",), ()], ids=["json", "summary"])
def test_a_report_on_a_full_device_is_one_line_and_exit_1_the_output_intact(
    tmp_path, jsonl_60, llama_like, reference, extra
):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        code, _, stderr = run(_build(jsonl_60, llama_like, out, *extra), stdout=full)
    assert code == 1, stderr
    # Progress lines and the build's warnings (its rows are truncated) aside, one error line.
    lines = [
        line for line in stderr.splitlines() if not line.startswith(("maskprep: ", "warning: "))
    ]
    assert lines == ["Error: cannot write the report to stdout: No space left on device"]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert _shards(out) == reference and (out / MANIFEST).is_file()
    assert cli("inspect", out).code == 0


def test_a_report_on_a_closed_stdout_is_one_line_and_exit_1(tmp_path, jsonl_60, llama_like):
    out = tmp_path / "out"
    code, _, stderr = run(_build(jsonl_60, llama_like, out, "--json"), close=(1,))
    assert code == 1, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert lines == ["Error: cannot write the report to stdout: it is closed"]
    assert (out / MANIFEST).is_file()


def test_nothing_to_report_on_a_closed_or_full_stdout_is_fine(tmp_path, jsonl_60, llama_like):
    """The negative control: with -q there is no report, so nothing fails to be written."""
    code, _, stderr = run(build_args(jsonl_60, llama_like, tmp_path / "a"), close=(1,))
    assert code == 0, stderr
    with open("/dev/full", "w") as full:
        code, _, stderr = run(build_args(jsonl_60, llama_like, tmp_path / "b"), stdout=full)
    assert code == 0, stderr


def test_inspect_json_on_a_full_device_is_one_line(finished):
    with open("/dev/full", "w") as full:
        code, _, stderr = run(["inspect", finished, "--json"], stdout=full)
    assert code == 1
    assert stderr.strip() == "Error: cannot write the report to stdout: No space left on device"


def test_a_failure_told_as_json_on_a_full_device_keeps_its_own_exit_code(tmp_path, llama_like):
    args = build_args(tmp_path / "nope.jsonl", llama_like, tmp_path / "out", "--json")
    with open("/dev/full", "w") as full:
        code, _, stderr = run(args, stdout=full)
    assert code == 2
    assert stderr.strip() == f"Error: {tmp_path / 'nope.jsonl'}: no such file or directory"


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_reading_a_closed_stdin_is_a_usage_error(command):
    extra = ["-m", "gpt2", "--from-config"] if command == "verify" else []
    code, _, stderr = run([command, "-", *extra], close=(0,))
    assert code == 2, stderr
    assert stderr.strip() == "Error: standard input is closed; '-' reads the input from it"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["build", "--help"]])
def test_what_click_prints_itself_on_a_full_device_is_one_line(args):
    """--help and --version are written by Click before any command runs: an OSError traceback
    on a full device."""
    with open("/dev/full", "w") as full:
        code, _, stderr = run(args, stdout=full)
    assert code == 1
    assert stderr.strip() == "Error: cannot write to stdout: No space left on device"


def test_help_on_a_working_stdout_is_unchanged():
    """The negative control: the wrapped stdout writes what Click writes."""
    code, stdout, stderr = run(["--version"])
    assert code == 0 and stderr == ""
    assert stdout.startswith("maskprep, version ")
