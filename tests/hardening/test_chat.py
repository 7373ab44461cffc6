"""#14, chat records: truncating a long conversation keeps the chat template's frame (its BOS)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from .helpers import MANIFEST, assert_ok, build_args, cli, read_json

BOS = 1
# Starts with the BOS token, trains the assistant turns ({% generation %}).
TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}{{ '[' + message['role'] + '] ' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{%- else %}{{ message['content'] + ' ' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '[assistant] ' }}{%- endif %}"
)


@pytest.fixture
def chat_rows(tmp_path, llama_like) -> list[dict]:
    """Two chats built 40 wide: a short one, and one whose long question must be truncated."""
    template = tmp_path / "template.jinja"
    template.write_text(TEMPLATE)
    question = " ".join(f"word{i}" for i in range(60))
    chats = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        [{"role": "user", "content": question}, {"role": "assistant", "content": "short answer"}],
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    out = tmp_path / "out"
    args = build_args(source, llama_like, out, "--messages-field", "messages")
    args[args.index("--max-length") + 1] = "40"
    assert_ok(cli(*args, "--chat-template", template))
    assert read_json(out / MANIFEST)["totals"]["prompts_truncated"] == 1
    return pq.read_table(out / "data-00000.parquet").to_pylist()


def test_untruncated_chat_starts_with_the_templates_bos(chat_rows):
    """Negative control: the template's BOS is the first id of an untruncated chat."""
    assert chat_rows[0]["input_ids"][0] == BOS


@pytest.mark.xfail(strict=True, reason="#14: a truncated chat loses the template's BOS (head=0)")
def test_truncated_chat_keeps_the_templates_bos(chat_rows):
    assert chat_rows[1]["input_ids"][0] == BOS
    assert chat_rows[1]["labels"][0] == -100
