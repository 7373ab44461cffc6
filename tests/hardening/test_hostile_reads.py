"""#24: what inspect, verify, the collator and build read from a hostile source ends in one line,
never a traceback or a read without end: an Arrow stream on stdin cut anywhere (OSError
traceback when cut inside a batch), a model config whose vocab_size is -1 (RuntimeError from
torch), a manifest whose padding_side is neither left nor right (ValueError from for_output),
and a chat template that never ends (--chat-template /dev/zero read until the kernel killed
it)."""

from __future__ import annotations

import io
import json
import resource
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from .helpers import (
    MANIFEST,
    assert_clean_failure,
    assert_no_traceback,
    build_args,
    child_env,
    cli,
    edit_manifest,
    needs_torch,
)

pytestmark = pytest.mark.integration

# ----------------------------------------------------------------------------- a cut stream


@pytest.fixture(scope="module")
def stream(finished) -> bytes:
    """The finished build's rows as an Arrow IPC stream of several record batches."""
    table = pa.concat_tables(pq.read_table(p) for p in sorted(finished.glob("data-*.parquet")))
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write_batch(batch)
    return sink.getvalue()


def test_a_stream_cut_inside_a_batch_is_one_line_exit_1(stream):
    cut = stream[: len(stream) - 100]  # inside the last batch's body
    result = cli("inspect", "-", stdin=cut)
    line = assert_clean_failure(result, 1, mentions=["<stdin>: broken Arrow IPC stream"])
    assert line.startswith("Error: <stdin>: broken Arrow IPC stream: Expected to be able to read")


@pytest.mark.parametrize("sample", [(), ("--sample", "5")], ids=["streamed", "read-whole"])
def test_a_stream_cut_anywhere_never_gives_a_traceback(stream, sample):
    """Every 61st byte: inside the schema, a batch's metadata or its body. A cut between two
    messages leaves a stream that is whole as far as Arrow can tell (the end-of-stream marker
    is optional): inspect reads the rows it holds."""
    exits = set()
    for end in range(0, len(stream), 61):
        result = cli("inspect", "-", *sample, stdin=stream[:end])
        assert_no_traceback(result)
        assert result.code in (0, 1), result.text
        if result.code == 1 and not result.stdout:
            assert_clean_failure(result, 1, mentions=["<stdin>"])
        exits.add(result.code)
    assert exits == {1} or exits == {0, 1}


def test_the_whole_stream_passes(stream):
    """The negative control: the same bytes uncut."""
    result = cli("inspect", "-", stdin=stream)
    assert result.code == 0, result.text


# ----------------------------------------------------------------------------- broken configs


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, str]:
    """A tiny GPT-2 config, and copies with one size broken."""
    pytest.importorskip("transformers")
    from rowkit import tiny_config

    root = tmp_path_factory.mktemp("configs")
    tiny_config("gpt2").save_pretrained(root / "gpt2")
    made = {"gpt2": str(root / "gpt2")}
    for name, field, value in [
        ("vocab-minus-one", "vocab_size", -1),
        ("vocab-zero", "vocab_size", 0),
        ("positions-minus-one", "n_positions", -1),
        ("width-minus-four", "n_embd", -4),
        ("no-heads", "n_head", 0),
    ]:
        directory = root / name
        directory.mkdir()
        config = json.loads((root / "gpt2" / "config.json").read_text())
        config[field] = value
        (directory / "config.json").write_text(json.dumps(config))
        made[name] = str(directory)
    return made


BROKEN = {
    "vocab-minus-one": "config vocab_size -1 is not a positive size",
    "vocab-zero": "config vocab_size 0 is not a positive size",
    "positions-minus-one": "config max_position_embeddings -1 is not a positive size",
    "width-minus-four": "cannot build the model from its config: Trying to create tensor with "
    "negative dimension -4",
    "no-heads": "cannot build the model from its config: integer division or modulo by zero",
}


@needs_torch
@pytest.mark.parametrize("name", BROKEN)
def test_inspect_model_with_a_broken_config_is_one_line_exit_2(finished, configs, name):
    result = cli("inspect", finished, "--model", configs[name])
    line = assert_clean_failure(result, 2)
    assert line.startswith(f"Error: {configs[name]}: {BROKEN[name]}"), line


@needs_torch
def test_verify_from_a_config_with_vocab_size_minus_one_is_one_line_exit_2(finished, configs):
    result = cli("verify", finished, "-m", configs["vocab-minus-one"], "--from-config")
    line = assert_clean_failure(result, 2)
    assert line == f"Error: {configs['vocab-minus-one']}: {BROKEN['vocab-minus-one']}"


@needs_torch
def test_the_unbroken_config_is_read(finished, configs):
    """The negative control."""
    assert cli("inspect", finished, "--model", configs["gpt2"]).code == 0


# ----------------------------------------------------------------------------- the manifest


@needs_torch
@pytest.mark.parametrize("side", ["middle", "", "LEFT"])
def test_for_output_of_a_manifest_padded_on_no_side_is_a_manifest_error(finished_copy, side):
    from maskprep.collate import Collator
    from maskprep.errors import ManifestError

    edit_manifest(finished_copy, lambda m: m["tokenizer"].update(padding_side=side))
    with pytest.raises(ManifestError) as caught:
        Collator.for_output(finished_copy)
    where = f"{finished_copy / MANIFEST}: tokenizer.padding_side"
    assert str(caught.value) == f"{where}: {side!r} is not left or right"
    inspected = cli("inspect", finished_copy)
    assert_clean_failure(inspected, 1, mentions=[where])


@needs_torch
def test_for_output_reads_a_manifest_padded_on_a_side(finished_copy):
    from maskprep.collate import Collator

    assert Collator.for_output(finished_copy).padding_side == "right"


# ----------------------------------------------------------------------------- chat templates

CHAT = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
)
LIMIT = (
    "chat template is larger than 1,048,576 bytes (1 MiB), the most read; is it the template file?"
)


def _chat_build(tmp_path, tokenizer, template) -> list[object]:
    source = tmp_path / "chat.jsonl"
    source.write_bytes(CHAT)
    extra = ["--messages-field", "messages", "--chat-template", template]
    return build_args(source, tokenizer, tmp_path / "out", *extra)


def test_a_chat_template_that_never_ends_is_read_no_further_than_the_limit(tmp_path, llama_like):
    """/dev/zero, in a child whose memory is capped at 4 GiB: the unbounded read used to take
    19.4 GB."""
    args = _chat_build(tmp_path, llama_like, "/dev/zero")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    child = subprocess.run(
        [sys.executable, "-m", "maskprep", *map(str, args)],
        capture_output=True,
        env=child_env(),
        preexec_fn=cap,
        timeout=300,
        check=False,
    )
    stderr = child.stderr.decode()
    assert child.returncode == 2, stderr
    assert stderr.strip() == f"Error: /dev/zero: {LIMIT}"
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_a_chat_template_past_the_limit_is_one_line(tmp_path, llama_like):
    template = tmp_path / "big.jinja"
    template.write_bytes(b"{{ messages }}" + b" " * (1 << 20))
    result = cli(*_chat_build(tmp_path, llama_like, template))
    line = assert_clean_failure(result, 2)
    assert line == f"Error: {template}: {LIMIT}"


def test_a_chat_template_of_exactly_the_limit_is_read(tmp_path, llama_like):
    """The negative control: 1 MiB is taken (the template itself is then judged as usual)."""
    template = tmp_path / "limit.jinja"
    body = (
        b"{%- for message in messages %}{{ message['role'] }}: {% if message['role'] == "
        b"'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}{% else %}"
        b"{{ message['content'] }}{% endif %}\n{%- endfor %}"
    )
    template.write_bytes(body + b" " * ((1 << 20) - len(body)))
    result = cli(*_chat_build(tmp_path, llama_like, template))
    assert "larger than" not in result.text
    assert result.crash is None


def test_a_local_template_keeps_reading_universal_newlines(tmp_path, llama_like):
    """As Path.read_text read it: a template saved with CRLF line ends renders as with LF, so
    its fingerprint in the manifest does not change with the bound."""
    lf, crlf = tmp_path / "lf", tmp_path / "crlf"
    body = (
        "{%- for message in messages %}{{ message['role'] }}:\n{% if message['role'] == "
        "'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}{% else %}"
        "{{ message['content'] }}{% endif %}\n{%- endfor %}"
    )
    fingerprints = []
    for directory, newline in ((lf, "\n"), (crlf, "\r\n")):
        directory.mkdir()
        template = directory / "t.jinja"
        template.write_bytes(body.replace("\n", newline).encode())
        result = cli(*_chat_build(directory, llama_like, template))
        assert result.code == 0, result.text
        manifest = json.loads((directory / "out" / MANIFEST).read_text())
        fingerprints.append(manifest["tokenizer"]["fingerprint"])
    assert fingerprints[0] == fingerprints[1]
    shutil.rmtree(lf)


# ----------------------------------------------------------------------------- misaligned rows


@needs_torch
@pytest.mark.parametrize("column", ["input_ids", "attention_mask"])
def test_verify_of_rows_whose_lists_disagree_is_one_line(tmp_path, configs, column):
    """A row whose input_ids and attention_mask differ in length: verify's padding check broke
    on it (ValueError from NumPy) before the collator could name it."""
    from rowkit import pad_rows

    table = pad_rows([[5, 6, 7], [8, 9], [10, 11, 12, 13]], 6, 2, "right")
    rows = table.column(column).to_pylist()
    rows[1] = []
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(rows))
    shard = tmp_path / "rows.parquet"
    pq.write_table(table, shard)
    result = cli("verify", shard, "-m", configs["gpt2"], "--from-config", "--pad-id", "2")
    line = assert_clean_failure(result, 1)
    lengths = (
        "attention_mask has 6 values, input_ids 0"
        if column == "input_ids"
        else ("attention_mask has 0 values, input_ids 6")
    )
    assert line == f"Error: row 1: {lengths}"
