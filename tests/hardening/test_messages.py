"""#14, messages: every failure is one line a user can act on, with the right exit code; option
values that cannot work are usage errors; ``--json`` reports failures too; ``--max-rejects``."""

from __future__ import annotations

import json
import resource
import shutil

import pytest

from .helpers import (
    MANIFEST,
    REJECTS,
    assert_clean_failure,
    assert_no_traceback,
    assert_ok,
    build_args,
    child_env,
    cli,
    lines,
    message_lines,
    needs_torch,
    proc,
    snapshot,
)

pytestmark = pytest.mark.integration


def _names_option(line: str, option: str) -> bool:
    """Whether an error line names ``option`` (``--shard-size``), as a flag or in words (a
    library message may say ``shard_size``; ``bucket`` stands for the value of ``--buckets``)."""
    bare = option.lstrip("-")
    spellings = {option, bare, bare.replace("-", "_"), bare.replace("-", " ")}
    return any(s in line for s in spellings)


# ----------------------------------------------------------------------------- usage errors

BUILD_USAGE = [
    ("--strategy", ["--strategy", "zigzag"]),
    ("--max-length", ["--max-length", "0"]),
    ("--max-length", ["--max-length", "-5"]),
    ("--max-length", ["--max-length", "abc"]),
    ("--shard-size", ["--shard-size", "12Q"]),
    ("--shard-size", ["--shard-size", "0"]),
    ("--shard-rows", ["--shard-rows", "0"]),
    ("--batch-size", ["--batch-size", "0"]),
    ("--buckets", ["--strategy", "bucket", "--buckets", "a,b"]),
    ("bucket", ["--strategy", "bucket", "--buckets", "0,8"]),
    ("--stride", ["--stride", "4"]),
    ("--num-parts", ["--num-parts", "2"]),
    ("--padding-side", ["--padding-side", "up"]),
    ("--text-field", ["--text-field", "a..b"]),
    ("--chat-template", ["--chat-template", "/no/such.jinja"]),
    ("--pack-window", ["--pack-window", "5"]),
    ("--resume", ["--resume", "--overwrite"]),
    ("--pad-token", ["--pad-token", "no-such-token-anywhere"]),
]


@pytest.mark.parametrize("option, extra", BUILD_USAGE, ids=[" ".join(e) for _, e in BUILD_USAGE])
def test_build_usage_errors_are_one_line_naming_the_option(
    tmp_path, jsonl_60, llama_like, option, extra
):
    args = build_args(jsonl_60, llama_like, tmp_path / "out")
    if "--pad-token" in extra:
        i = args.index("--pad-token")
        del args[i : i + 2]
    line = assert_clean_failure(cli(*args, *extra), 2)
    assert _names_option(line, option), line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


INSPECT_USAGE = [
    ("--sample", ["--sample", "0"]),
    ("--strategy", ["--strategy", "zigzag"]),
    ("--buckets", ["--buckets", "x"]),
    ("--max-pad-fraction", ["--max-pad-fraction", "2"]),
    ("--row", ["--row", "-1"]),
    ("--row", ["--row", "100000"]),
]


@pytest.mark.parametrize(
    "option, extra", INSPECT_USAGE, ids=[" ".join(e) for _, e in INSPECT_USAGE]
)
def test_inspect_usage_errors_are_one_line(finished, option, extra):
    line = assert_clean_failure(cli("inspect", finished, *extra), 2)
    assert _names_option(line, option), line


def test_inspect_negative_seed_is_a_usage_error(finished):
    assert_clean_failure(cli("inspect", finished, "--sample", "3", "--seed", "-1"), 2)


def test_inspect_eos_id_past_int32_is_a_usage_error(finished):
    """``--eos-id 99999999999999999999`` matches no token, so the EOS checks pass vacuously."""
    line = assert_clean_failure(cli("inspect", finished, "--eos-id", "99999999999999999999"), 2)
    assert _names_option(line, "--eos-id"), line


@pytest.mark.parametrize("value", ["99999999999999999999", str(2**40)])
def test_impossible_max_length_is_a_usage_error(tmp_path, jsonl_60, llama_like, value):
    args = build_args(jsonl_60, llama_like, tmp_path / "out")
    args[args.index("--max-length") + 1] = value
    line = assert_clean_failure(cli(*args), 2)
    assert _names_option(line, "--max-length"), line


def _memory_cap() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))


def test_batch_times_length_past_int32_offsets_is_one_line(tmp_path, llama_like):
    """8 padded rows of 300 M positions hold 2.4 G ids, past Arrow's int32 list offsets. Run
    with a memory cap: whatever the fix (refuse up front, or split), no traceback."""
    path = tmp_path / "in.jsonl"
    path.write_text(lines(8))
    args = build_args(path, llama_like, tmp_path / "out", "--batch-size", "8")
    args[args.index("--max-length") + 1] = "300000000"
    assert_clean_failure(proc(*args, preexec=_memory_cap, timeout=120), (1, 2))


# ----------------------------------------------------------------------------- names and paths


def test_missing_input_with_a_newline_in_its_name_is_one_line(tmp_path, llama_like):
    missing = tmp_path / "no\nsuch.jsonl"
    assert_clean_failure(cli(*build_args(missing, llama_like, tmp_path / "out")), 2, ["such.jsonl"])


def test_bad_record_in_a_file_with_a_newline_in_its_name_is_one_line(tmp_path, llama_like):
    path = tmp_path / "bad\nname.jsonl"
    path.write_text('{"text": "fine"}\nnot json\n')
    line = assert_clean_failure(cli(*build_args(path, llama_like, tmp_path / "out")), 1)
    assert "name.jsonl:2" in line


def test_inspect_of_a_missing_path_with_a_newline_is_one_line(tmp_path):
    assert_clean_failure(cli("inspect", tmp_path / "no\nsuch"), (1, 2), ["such"])


def _no_such_directory(line: str) -> None:
    assert "no such directory" in line.lower(), line
    assert "Repo id" not in line


@pytest.mark.parametrize("name", ["./no/such/tokenizer", "ABSOLUTE"])
def test_missing_local_tokenizer_says_no_such_directory(tmp_path, jsonl_60, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "no" / "such") if name == "ABSOLUTE" else name
    args = build_args(jsonl_60, path, tmp_path / "out", "--no-tokenizer-cache")
    _no_such_directory(assert_clean_failure(cli(*args), 2, [path]))


def test_inspect_with_a_missing_local_tokenizer_says_no_such_directory(tmp_path, finished):
    path = str(tmp_path / "no" / "such")
    _no_such_directory(assert_clean_failure(cli("inspect", finished, "--rows", "1", "-t", path), 2))


@needs_torch
def test_verify_with_a_missing_local_model_says_no_such_directory(tmp_path, finished):
    path = str(tmp_path / "no" / "model")
    result = cli("verify", finished, "-m", path, "--device", "cpu")
    _no_such_directory(assert_clean_failure(result, 2, [path]))


def test_verify_negative_seed_is_a_usage_error(finished, llama_like):
    assert_clean_failure(cli("verify", finished, "-m", llama_like, "--seed", "-1"), 2)


def test_multi_line_tokenizer_error_is_not_cut_to_nothing(tmp_path, jsonl_60):
    empty = tmp_path / "tokenizer"
    empty.mkdir()
    (empty / "tokenizer_config.json").write_text("{}")
    args = build_args(jsonl_60, empty, tmp_path / "out", "--no-tokenizer-cache")
    line = assert_clean_failure(cli(*args), 2, [str(empty)])
    assert not line.rstrip().endswith(":"), f"the reason was cut off: {line!r}"


def test_broken_remote_code_tokenizer_is_one_line(tmp_path, jsonl_60, llama_like):
    tokenizer = shutil.copytree(llama_like, tmp_path / "remote")
    config_path = tokenizer / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("tokenizer_class", None)
    config["auto_map"] = {"AutoTokenizer": [None, "broken_tok.BrokenTokenizer"]}
    config_path.write_text(json.dumps(config))
    (tokenizer / "broken_tok.py").write_text(
        "raise RuntimeError('this tokenizer code is broken')\n"
    )
    args = build_args(jsonl_60, tokenizer, tmp_path / "out", "--trust-remote-code")
    # Remote code is copied into HF_MODULES_CACHE and imported: keep both in the child.
    env = child_env(HF_MODULES_CACHE=str(tmp_path / "modules"))
    assert_clean_failure(proc(*args, env=env), 2, [str(tokenizer)])


def test_corrupt_tokenizer_json_is_one_line(tmp_path, jsonl_60, llama_like):
    tokenizer = shutil.copytree(llama_like, tmp_path / "corrupt")
    (tokenizer / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    args = build_args(jsonl_60, tokenizer, tmp_path / "out", "--no-tokenizer-cache")
    line = assert_clean_failure(cli(*args), 2, [str(tokenizer)])
    # transformers raises KeyError('added_tokens'): a bare "'added_tokens'" explains nothing.
    assert "missing key 'added_tokens'" in line


# ----------------------------------------------------------------------------- chat template


@pytest.fixture
def chat_input(tmp_path):
    """A bad first line, then a good chat record: whoever reads the data first fails on line 1."""
    path = tmp_path / "chat.jsonl"
    record = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    path.write_text("not json\n" + json.dumps(record) + "\n")
    return path


def test_tokenizer_without_chat_template_is_a_usage_error_before_reading(
    tmp_path, chat_input, llama_like
):
    args = build_args(chat_input, llama_like, tmp_path / "out", "--messages-field", "messages")
    line = assert_clean_failure(cli(*args), 2)
    assert "chat template" in line
    # The command line names its flag, never the library's field name.
    assert "--chat-template FILE" in line and "chat_template" not in line
    assert "chat.jsonl:1" not in line


def test_tokenizer_without_chat_template_leaves_nothing_with_skip(tmp_path, chat_input, llama_like):
    out = tmp_path / "out"
    extra = ["--messages-field", "messages", "--on-bad-record", "skip"]
    assert_clean_failure(
        cli(*build_args(chat_input, llama_like, out, *extra)), 2, ["chat template"]
    )
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


# ----------------------------------------------------------------------------- --max-rejects


@pytest.fixture
def three_bad_of_ten(tmp_path):
    path = tmp_path / "in.jsonl"
    records = lines(10).splitlines(keepends=True)
    for i in (2, 5, 8):
        records[i] = "not json\n"
    path.write_text("".join(records))
    return path


@pytest.mark.parametrize("limit", ["2", "20%"])
def test_max_rejects_fails_the_build_past_the_limit(tmp_path, three_bad_of_ten, llama_like, limit):
    args = build_args(three_bad_of_ten, llama_like, tmp_path / "out", "--on-bad-record", "skip")
    line = assert_clean_failure(cli(*args, "--max-rejects", limit), 1)
    assert "3" in line and "reject" in line.lower(), line


@pytest.mark.parametrize("limit", ["3", "30%", "50%"])
def test_max_rejects_passes_within_the_limit(tmp_path, three_bad_of_ten, llama_like, limit):
    out = tmp_path / "out"
    args = build_args(three_bad_of_ten, llama_like, out, "--on-bad-record", "skip")
    assert_ok(cli(*args, "--max-rejects", limit))
    assert (out / MANIFEST).is_file()


@pytest.mark.parametrize("limit", ["-1", "lots", "101%", "%"])
def test_max_rejects_bad_values_are_usage_errors(tmp_path, three_bad_of_ten, llama_like, limit):
    args = build_args(three_bad_of_ten, llama_like, tmp_path / "out", "--on-bad-record", "skip")
    line = assert_clean_failure(cli(*args, "--max-rejects", limit), 2)
    assert "No such option" not in line
    assert _names_option(line, "--max-rejects"), line


# ----------------------------------------------------------------------------- --json on failure


def _json_failure(result, code: int, mentions: str) -> None:
    # The error is an object (message, type, exit code; the location of a bad record), not the
    # bare message the test first assumed: a CI job can branch on its type or exit code.
    assert_no_traceback(result)
    assert result.code == code, result.text
    report = json.loads(result.stdout)
    assert report["ok"] is False, report
    error = report["error"]
    assert mentions in error["message"] and error["exit_code"] == code, report


def test_build_json_reports_a_failure(tmp_path, three_bad_of_ten, llama_like):
    args = build_args(three_bad_of_ten, llama_like, tmp_path / "out", "--json")
    _json_failure(cli(*args), 1, f"{three_bad_of_ten}:3")


def test_inspect_json_reports_a_failure(tmp_path):
    missing = tmp_path / "missing"
    _json_failure(cli("inspect", missing, "--json"), 2, str(missing))


def test_merge_json_reports_a_failure(tmp_path):
    missing = tmp_path / "missing"
    _json_failure(cli("merge", missing, "-o", tmp_path / "merged", "--json"), 2, str(missing))


@needs_torch
def test_verify_json_reports_a_failure(tmp_path, finished):
    missing = tmp_path / "no-model"
    _json_failure(cli("verify", finished, "-m", missing, "--json"), 2, str(missing))


def test_json_success_is_still_one_json_document(tmp_path, jsonl_60, llama_like):
    """Negative control: a passing --json build prints one JSON object with ok true."""
    result = cli(*build_args(jsonl_60, llama_like, tmp_path / "out", "--json"))
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["ok"] is True
    # stderr holds only the build's warnings (rows of 16 lose a third of the tokens), as --json
    # lists them.
    assert report["warnings"] and all("lost to max_length 16" in w for w in report["warnings"])
    assert message_lines(result) == [f"warning: {w}" for w in report["warnings"]]


# ----------------------------------------------------------------------------- added with the fix


def test_json_reports_a_usage_error_too(tmp_path, jsonl_60, llama_like):
    """Click's own usage errors (before the command runs) are JSON on stdout with --json too."""
    args = build_args(jsonl_60, llama_like, tmp_path / "out", "--json")
    args[args.index("--max-length") + 1] = "abc"
    result = cli(*args)
    assert_clean_failure(result, 2, ["--max-length"])
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("UsageError", 2)
    assert "--max-length" in error["message"]


def test_json_as_the_value_of_another_option_asks_for_no_json(tmp_path, jsonl_60, llama_like):
    """Negative control: '--json' given as --text-field's value is a value, not the flag."""
    args = build_args(jsonl_60, llama_like, tmp_path / "out", "--text-field", "--json")
    result = cli(*args, "--batch-size", "0")
    assert_clean_failure(result, 2, ["--batch-size"])
    assert result.stdout == ""


def test_control_characters_in_names_are_escaped(tmp_path, llama_like):
    missing = tmp_path / "esc\x1b[31mred\tname.jsonl"
    line = assert_clean_failure(cli(*build_args(missing, llama_like, tmp_path / "out")), 2)
    assert "esc\\x1b[31mred\\tname.jsonl" in line
    assert "\x1b" not in cli(*build_args(missing, llama_like, tmp_path / "out")).stderr


def test_max_rejects_failure_leaves_no_finished_looking_output(
    tmp_path, three_bad_of_ten, llama_like
):
    """Past a count, the build stops at the reject that passes it: no manifest, no shard, and the
    rejects so far kept to say why."""
    out = tmp_path / "out"
    args = build_args(three_bad_of_ten, llama_like, out, "--on-bad-record", "skip")
    line = assert_clean_failure(cli(*args, "--max-rejects", "1"), 1)
    assert f"{three_bad_of_ten}:6" in line  # the second reject passes a limit of 1
    assert not (out / MANIFEST).exists()
    assert not list(out.glob("data-*"))
    assert len((out / REJECTS).read_text().splitlines()) == 2


def test_max_rejects_failure_of_an_overwrite_keeps_the_finished_output(
    tmp_path, three_bad_of_ten, llama_like
):
    """An overwrite builds beside the finished output it would replace: past the limit, that
    output stays as it was (manifest, shards and all), and the message does not point at a
    rejects file that went with the failed build's staging."""
    out = tmp_path / "out"
    good = tmp_path / "good.jsonl"
    good.write_text(lines(10))
    assert_ok(cli(*build_args(good, llama_like, out)))
    before = snapshot(out)
    args = build_args(three_bad_of_ten, llama_like, out, "--on-bad-record", "skip", "--overwrite")
    line = assert_clean_failure(cli(*args, "--max-rejects", "1"), 1, ["max_rejects"])
    assert "left as it was" in line and "rejects file" not in line, line
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging left either
    # Negative control: within the limit the overwrite replaces the output.
    assert_ok(cli(*args, "--max-rejects", "3"))
    after = snapshot(out)
    assert after[MANIFEST] != before[MANIFEST]
    # The new rejects file is the one its manifest names (an overwrite's names are its own).
    assert (out / json.loads(after[MANIFEST])["rejects"]["path"]).exists()


def test_max_rejects_needs_the_skip_policy(tmp_path, three_bad_of_ten, llama_like):
    args = build_args(three_bad_of_ten, llama_like, tmp_path / "out", "--max-rejects", "5")
    line = assert_clean_failure(cli(*args), 2)
    assert _names_option(line, "--max-rejects") and "skip" in line


def test_a_name_that_may_be_a_hub_id_is_left_to_the_hub(tmp_path, jsonl_60, monkeypatch):
    """Negative control of 'no such directory': 'org/name' is a Hub id unless ./org exists."""
    monkeypatch.chdir(tmp_path)
    args = build_args(
        jsonl_60, "no-such-org/no-such-model", tmp_path / "out", "--no-tokenizer-cache"
    )
    line = assert_clean_failure(cli(*args), 2, ["no-such-org/no-such-model"])
    assert "no such directory" not in line
    (tmp_path / "models").mkdir()
    args = build_args(jsonl_60, "models/tok", tmp_path / "out", "--no-tokenizer-cache")
    _no_such_directory(assert_clean_failure(cli(*args), 2, ["models/tok"]))


def test_running_out_of_memory_is_one_line(tmp_path, jsonl_60, llama_like, monkeypatch):
    import maskprep.pipeline

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(maskprep.pipeline, "build", exhausted)
    line = assert_clean_failure(cli(*build_args(jsonl_60, llama_like, tmp_path / "out")), 1)
    assert "out of memory" in line
