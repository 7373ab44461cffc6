"""Supervised fine-tuning records: trained spans, truncation, bad records (issue 4)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from maskprep import IGNORE_INDEX, BadRecordError, ConfigError, SFTConfig, build, config
from maskprep.cli import main
from maskprep.output.names import MANIFEST_NAME, REJECTS_NAME
from maskprep.shaping.fit import ShapeStats, fit
from maskprep.tokenizing.encoder import EncodedDoc, truncation_keep

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# ChatML with the assistant turns wrapped in {% generation %}: content and <|im_end|> are trained,
# the role header and the newline after <|im_end|> are not.
CHATML_GENERATION = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else %}{{ message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
# The same layout without generation blocks: spans are found by rendering turn by turn.
CHATML_PLAIN = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Ignores add_generation_prompt: each turn's header is found by locating its content.
CHATML_NO_GENERATION_PROMPT = CHATML_PLAIN.split("{%- if add_generation_prompt")[0]
# Starts with the number of messages: rendering a prefix never gives the start of the whole.
NOT_PREFIX_STABLE = "{{ messages | length }} turns\n" + CHATML_PLAIN

CONVERSATION = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What does the attention mask do?"},
    {"role": "assistant", "content": "It hides padding from attention."},
    {"role": "user", "content": "And labels of minus one hundred?"},
    {"role": "assistant", "content": "The loss ignores them."},
]
SECOND = [
    {"role": "user", "content": "Say hi."},
    {"role": "assistant", "content": "Hi!"},
]
PAIRS = [
    {"prompt": "Question: what is padding?\nAnswer:", "completion": " Filler tokens."},
    {"prompt": "Translate to French: cat\n", "completion": "chat"},
]

pack_param = pytest.param(
    "pack",
    marks=pytest.mark.skipif("pack" not in config.STRATEGIES, reason="no pack strategy yet"),
)


@pytest.fixture(scope="session")
def chat_tok(tmp_path_factory) -> Path:
    """ChatML tokenizer: <|im_start|> (3) and <|im_end|> (4) special, EOS </s> (2), no pad."""
    from toy_tokenizer import make_tokenizer

    texts = [m["content"] for m in CONVERSATION + SECOND] + ["system user assistant"]
    texts += [p["prompt"] + p["completion"] for p in PAIRS]
    return make_tokenizer(
        tmp_path_factory.mktemp("tok") / "chatml",
        texts * 3,
        vocab_size=350,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_GENERATION,
    )


@pytest.fixture(scope="session")
def hf_tok(chat_tok):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_tok)


def template_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "template.jinja"
    path.write_text(text, encoding="utf-8")
    return str(path)


def sft_build(inputs, tokenizer, out, sft: SFTConfig, **options):
    options.setdefault("pad_token", "eos")
    cfg = dataclasses.replace(make_config(inputs, tokenizer, out, **options), sft=sft)
    return build(cfg)


def read_rows(out: Path) -> list[dict]:
    return pq.read_table(sorted(out.glob("data-*.parquet"))).to_pylist()


def trained_runs(row: dict) -> list[list[int]]:
    """Contiguous runs of trained labels in a row, as lists of token ids."""
    trained = np.asarray(row["labels"]) != IGNORE_INDEX
    ids = np.asarray(row["labels"])
    edges = np.flatnonzero(np.diff(np.r_[0, trained.astype(int), 0]))
    return [ids[a:b].tolist() for a, b in zip(edges[::2], edges[1::2], strict=True)]


def check_invariants(row: dict) -> None:
    labels, mask, ids = (np.asarray(row[k]) for k in ("labels", "attention_mask", "input_ids"))
    assert row["length"] == mask.sum()
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    real = labels[mask == 1]
    assert ((real == IGNORE_INDEX) | (real == ids[mask == 1])).all()


# --- chat spans ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["pad", pack_param])
@pytest.mark.parametrize("template", ["generation", "plain", "no-generation-prompt"])
@pytest.mark.parametrize("train_on", ["assistant", "last-assistant"])
def test_chat_trained_spans_are_the_assistant_turns(
    tmp_path, chat_tok, hf_tok, strategy, template, train_on
):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}, {"messages": SECOND}])
    files = {"plain": CHATML_PLAIN, "no-generation-prompt": CHATML_NO_GENERATION_PROMPT}
    chat_template = template_file(tmp_path, files[template]) if template in files else None
    sft = SFTConfig(messages_field="messages", train_on=train_on, chat_template=chat_template)
    result = sft_build([data], chat_tok, tmp_path / "out", sft, max_length=96, strategy=strategy)

    rows = read_rows(tmp_path / "out")
    decoded = Counter(hf_tok.decode(run) for row in rows for run in trained_runs(row))
    turns = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    if train_on == "last-assistant":
        turns = turns[-1:]
    expected = Counter(t + IM_END for t in [*turns, "Hi!"])
    assert decoded == expected
    for row in rows:
        check_invariants(row)
    expected_ids = hf_tok(list(expected), add_special_tokens=False)["input_ids"]
    assert result.totals.label_tokens == sum(len(ids) for ids in expected_ids)
    if strategy == "pad":
        rendered = hf_tok.apply_chat_template(CONVERSATION, tokenize=False)
        first = np.asarray(rows[0]["input_ids"])[np.asarray(rows[0]["attention_mask"]) == 1]
        assert hf_tok.decode(first) == rendered


def test_chat_mask_matches_transformers_assistant_mask(chat_tok, hf_tok):
    from maskprep.sources.records import Record
    from maskprep.sources.sft import Conversation, Message
    from maskprep.tokenizing.sft import SFTEncoder

    sft = SFTConfig(messages_field="messages")
    encoder = SFTEncoder(hf_tok, make_config(["x"], chat_tok, "o").tokenizer, sft)
    messages = tuple(Message(m["role"], m["content"]) for m in CONVERSATION)
    (doc,) = encoder.encode_records([Record("", "f", 1, Conversation(messages))])
    theirs = hf_tok.apply_chat_template(
        CONVERSATION, return_dict=True, return_assistant_tokens_mask=True
    )
    assert doc.ids.tolist() == theirs["input_ids"]
    assert doc.trained.astype(int).tolist() == theirs["assistant_masks"]


def test_chat_train_on_all_trains_every_token(tmp_path, chat_tok):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}])
    sft = SFTConfig(messages_field="messages", train_on="all")
    sft_build([data], chat_tok, tmp_path / "out", sft, max_length=96)
    (row,) = read_rows(tmp_path / "out")
    mask = np.asarray(row["attention_mask"]) == 1
    assert (np.asarray(row["labels"])[mask] == np.asarray(row["input_ids"])[mask]).all()


def test_chat_template_not_prefix_stable_is_refused(tmp_path, chat_tok):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}])
    sft = SFTConfig(
        messages_field="messages", chat_template=template_file(tmp_path, NOT_PREFIX_STABLE)
    )
    with pytest.raises(BadRecordError, match=r"chat\.jsonl:1: chat template is not prefix-stable"):
        sft_build([data], chat_tok, tmp_path / "out", sft, max_length=96)


def test_chat_template_error_is_a_bad_record(tmp_path, chat_tok):
    failing = "{{ raise_exception('roles must alternate') }}"
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": SECOND}])
    sft = SFTConfig(messages_field="messages", chat_template=template_file(tmp_path, failing))
    with pytest.raises(BadRecordError, match="chat template failed: roles must alternate"):
        sft_build([data], chat_tok, tmp_path / "out", sft, max_length=96)


# --- prompt/completion ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["pad", pack_param])
def test_completion_and_eos_are_trained_prompt_is_not(tmp_path, chat_tok, hf_tok, strategy):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    sft_build([data], chat_tok, tmp_path / "out", sft, max_length=40, strategy=strategy)
    rows = read_rows(tmp_path / "out")
    decoded = Counter(hf_tok.decode(run) for row in rows for run in trained_runs(row))
    assert decoded == Counter(p["completion"] + "</s>" for p in PAIRS)
    for row in rows:
        check_invariants(row)


def test_pad_equals_eos_keeps_the_completion_eos_trained(tmp_path, chat_tok, hf_tok):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS[:1])
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    sft_build([data], chat_tok, tmp_path / "out", sft, max_length=40, pad_token="eos")
    (row,) = read_rows(tmp_path / "out")
    n = row["length"]
    eos = hf_tok.eos_token_id
    assert row["input_ids"][n - 1] == eos and row["labels"][n - 1] == eos
    # Padding holds the same id, but is neither attended to nor trained.
    assert set(row["input_ids"][n:]) == {eos}
    assert set(row["labels"][n:]) == {IGNORE_INDEX}
    assert set(row["attention_mask"][n:]) == {0}


def test_train_on_prompt_and_no_eos(tmp_path, chat_tok, hf_tok):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS[:1])
    sft = SFTConfig(prompt_field="prompt", completion_field="completion", train_on_prompt=True)
    sft_build([data], chat_tok, tmp_path / "all", sft, max_length=40, add_eos=False)
    (row,) = read_rows(tmp_path / "all")
    n = row["length"]
    assert row["labels"][:n] == row["input_ids"][:n]
    text = "<s>" + PAIRS[0]["prompt"] + PAIRS[0]["completion"]
    assert hf_tok.decode(row["input_ids"][:n]) == text

    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    sft_build([data], chat_tok, tmp_path / "noeos", sft, max_length=40, add_eos=False)
    (row,) = read_rows(tmp_path / "noeos")
    assert [hf_tok.decode(r) for r in trained_runs(row)] == [PAIRS[0]["completion"]]


# --- truncation --------------------------------------------------------------------------------


def test_fit_cuts_prompt_from_left_then_completion_from_right():
    ids = np.arange(10, dtype=np.int32)  # head 1 | prompt 5 | completion 4
    trained = np.r_[np.zeros(6, bool), np.ones(4, bool)]
    doc = EncodedDoc(ids, trained, head=1, tail=0, location="f:1", prompt=5)

    stats = ShapeStats()
    (piece,) = fit(doc, config.ShapeConfig(max_length=7), stats)
    assert piece.ids.tolist() == [0, 4, 5, 6, 7, 8, 9]
    assert piece.trained.tolist() == [False] * 3 + [True] * 4
    assert (stats.prompts_truncated, stats.prompt_tokens_truncated) == (1, 3)
    assert (stats.completions_truncated, stats.completion_tokens_truncated) == (0, 0)
    assert (stats.documents_truncated, stats.tokens_truncated) == (1, 3)

    stats = ShapeStats()
    (piece,) = fit(doc, config.ShapeConfig(max_length=3), stats)
    assert piece.ids.tolist() == [0, 6, 7]
    assert (stats.prompts_truncated, stats.prompt_tokens_truncated) == (1, 5)
    assert (stats.completions_truncated, stats.completion_tokens_truncated) == (1, 2)

    keep, cut_left = truncation_keep(doc, 20)  # nothing to cut: every index, once
    assert keep.tolist() == list(range(10)) and cut_left == 0

    plain = dataclasses.replace(doc, prompt=None)
    stats = ShapeStats()
    (piece,) = fit(plain, config.ShapeConfig(max_length=7), stats)
    assert piece.ids.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert stats.prompts_truncated == stats.completions_truncated == 0


@settings(max_examples=60, deadline=None)
@given(
    head=st.integers(0, 2),
    tail=st.integers(0, 2),
    prompt=st.integers(0, 20),
    completion=st.integers(1, 20),
    room=st.integers(1, 30),
)
def test_truncation_keeps_frame_then_completion_then_prompt_end(
    head, tail, prompt, completion, room
):
    n = head + prompt + completion + tail
    ids = np.arange(n, dtype=np.int32)
    trained = np.zeros(n, bool)
    trained[head + prompt : n - tail] = True
    doc = EncodedDoc(ids, trained, head, tail, "f:1", prompt=prompt)
    max_length = head + tail + room
    stats = ShapeStats()
    (piece,) = fit(doc, config.ShapeConfig(max_length=max_length), stats)
    kept = piece.ids.tolist()
    assert len(kept) == min(n, max_length)
    assert kept[:head] == ids[:head].tolist()
    assert kept[len(kept) - tail :] == ids[n - tail :].tolist()
    body = kept[head : len(kept) - tail]
    # The body is one contiguous stretch: the completion's start is kept before any prompt token.
    assert body == list(range(body[0], body[0] + len(body)))
    completion_kept = min(completion, room)
    assert sum(piece.trained) == completion_kept
    assert stats.prompt_tokens_truncated == prompt - max(0, min(prompt, room - completion))
    assert stats.completion_tokens_truncated == completion - completion_kept
    assert stats.tokens_truncated == stats.prompt_tokens_truncated + (
        stats.completion_tokens_truncated
    )


def test_build_truncates_prompt_left_and_counts(tmp_path, chat_tok, hf_tok):
    record = {"prompt": "Question: what is padding? " * 4, "completion": " Filler tokens."}
    prompt_ids = hf_tok(record["prompt"], add_special_tokens=False)["input_ids"]
    completion_ids = hf_tok(record["completion"], add_special_tokens=False)["input_ids"]
    cut = 5
    max_length = 1 + len(prompt_ids) - cut + len(completion_ids) + 1
    data = write_jsonl(tmp_path / "pairs.jsonl", [record])
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    result = sft_build([data], chat_tok, tmp_path / "out", sft, max_length=max_length)
    (row,) = read_rows(tmp_path / "out")
    eos, bos = hf_tok.eos_token_id, hf_tok.bos_token_id
    assert row["input_ids"] == [bos, *prompt_ids[cut:], *completion_ids, eos]
    assert [hf_tok.decode(r) for r in trained_runs(row)] == [record["completion"] + "</s>"]
    totals = result.manifest.as_dict()["totals"]
    assert totals["prompts_truncated"] == 1 and totals["prompt_tokens_truncated"] == cut
    assert totals["completions_truncated"] == 0 and totals["completion_tokens_truncated"] == 0

    # A completion longer than the row on its own: the whole prompt goes, then its end.
    result = sft_build([data], chat_tok, tmp_path / "short", sft, max_length=3)
    (row,) = read_rows(tmp_path / "short")
    assert row["input_ids"] == [bos, *completion_ids[:2]]
    assert row["labels"] == [IGNORE_INDEX, *completion_ids[:2]]
    totals = result.manifest.as_dict()["totals"]
    assert totals["prompt_tokens_truncated"] == len(prompt_ids)
    assert totals["completions_truncated"] == 1
    assert totals["completion_tokens_truncated"] == len(completion_ids) + 1 - 2


def test_chat_truncation_keeps_the_last_turn_with_its_header(tmp_path, chat_tok, hf_tok):
    last = IM_START + "assistant\n" + CONVERSATION[-1]["content"] + IM_END + "\n"
    last_ids = hf_tok(last, add_special_tokens=False)["input_ids"]
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}])
    sft = SFTConfig(messages_field="messages")
    max_length = len(last_ids) + 2
    result = sft_build([data], chat_tok, tmp_path / "out", sft, max_length=max_length)
    (row,) = read_rows(tmp_path / "out")
    assert hf_tok.decode(row["input_ids"]).endswith(last)
    assert [hf_tok.decode(r) for r in trained_runs(row)] == [CONVERSATION[-1]["content"] + IM_END]
    totals = result.manifest.as_dict()["totals"]
    full = len(hf_tok.apply_chat_template(CONVERSATION)["input_ids"])
    assert totals["prompts_truncated"] == 1
    assert totals["prompt_tokens_truncated"] == full - max_length
    assert totals["completions_truncated"] == 0

    # Shorter than the last turn: the whole prompt goes, the header stays, the answer is cut.
    header = hf_tok(IM_START + "assistant\n", add_special_tokens=False)["input_ids"]
    max_length = len(header) + 2
    result = sft_build([data], chat_tok, tmp_path / "short", sft, max_length=max_length)
    (row,) = read_rows(tmp_path / "short")
    assert row["input_ids"] == last_ids[:max_length]
    assert row["labels"] == [IGNORE_INDEX] * len(header) + last_ids[len(header) : max_length]
    totals = result.manifest.as_dict()["totals"]
    assert totals["prompt_tokens_truncated"] == full - len(last_ids)
    assert totals["completion_tokens_truncated"] == len(last_ids) - max_length


# --- bad records, under both policies ----------------------------------------------------------

# ChatML whose assistant header names the system message: with a long system message the header
# alone fills a short row, so truncation leaves the last turn with no trained token.
CHATML_LONG_HEADER = (
    "{%- set of = (' of ' + messages[0]['content']) if messages[0]['role'] == 'system' else '' %}"
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + (of if message['role'] == 'assistant' else '') }}"
    "{{ '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant' + of + '\\n' }}{%- endif %}"
)
LONG_SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 4}

BAD_CASES = {
    # case: (bad record, reason pattern)
    "unknown role": (
        {"messages": [{"role": "robot", "content": "beep"}]},
        r'messages\[0\]\.role "robot" is not one of system, user, assistant, tool',
    ),
    "non-string content": (
        {"messages": [{"role": "user", "content": ["a", "b"]}, SECOND[1]]},
        r"messages\[0\]\.content is array, expected string",
    ),
    "no assistant turn": ({"messages": [SECOND[0]]}, "no assistant message to train on"),
    "empty after truncation": (
        {"messages": [LONG_SYSTEM, *SECOND]},
        "no trained token left after truncation to max_length",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_bad_chat_records(tmp_path, chat_tok, hf_tok, case, policy):
    bad, reason = BAD_CASES[case]
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": SECOND}, bad])
    sft = SFTConfig(messages_field="messages")
    tokenizer, max_length, bad_lines = chat_tok, 96, [2]
    if case == "empty after truncation":
        sft = dataclasses.replace(sft, chat_template=template_file(tmp_path, CHATML_LONG_HEADER))
        # The good record just fits; the bad one's last header alone is longer.
        max_length = len(hf_tok.apply_chat_template(SECOND)["input_ids"])
        header = f"{IM_START}assistant of {LONG_SYSTEM['content']}\n"
        assert len(hf_tok(header, add_special_tokens=False)["input_ids"]) >= max_length
    out = tmp_path / "out"
    options = {"max_length": max_length, "on_bad_record": policy}

    if policy == "fail":
        where = rf"chat\.jsonl:{bad_lines[0]}: "
        with pytest.raises(BadRecordError, match=where + reason):
            sft_build([data], tokenizer, out, sft, **options)
        assert not (out / MANIFEST_NAME).exists()
        return
    totals = sft_build([data], tokenizer, out, sft, **options).manifest.as_dict()["totals"]
    assert totals["records_read"] == 2 and totals["documents_written"] == 1
    assert totals["records_rejected"] == 1 and totals["documents_without_labels"] == 1
    rejects = [json.loads(line) for line in (out / REJECTS_NAME).read_text().splitlines()]
    assert [r["line"] for r in rejects] == bad_lines
    assert all(re.search(reason, r["reason"]) for r in rejects)


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_no_chat_template_is_refused_before_any_record_is_read(tmp_path, llama_like, policy):
    """A tokenizer without a chat template cannot render any chat record: a usage error before
    reading (#14), not one bad record per line, and no rejects file."""
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": SECOND}])
    out = tmp_path / "out"
    sft = SFTConfig(messages_field="messages")
    with pytest.raises(ConfigError, match=r"tokenizer '.+' has no chat template"):
        sft_build([data], llama_like, out, sft, max_length=96, on_bad_record=policy)
    assert not out.exists() or not any(out.iterdir())


def test_bad_prompt_completion_records_are_counted(tmp_path, chat_tok):
    records = [
        PAIRS[0],
        {"prompt": 3, "completion": "x"},
        {"prompt": "p", "completion": "  "},
        {"prompt": "p"},
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", records)
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    with pytest.raises(BadRecordError, match=r"pairs\.jsonl:2: field 'prompt' is number"):
        sft_build([data], chat_tok, tmp_path / "fail", sft)
    result = sft_build([data], chat_tok, tmp_path / "skip", sft, on_bad_record="skip")
    totals = result.manifest.as_dict()["totals"]
    assert totals["records_rejected"] == totals["documents_without_labels"] == 3
    rejects = (tmp_path / "skip" / REJECTS_NAME).read_text().splitlines()
    assert [json.loads(r)["reason"] for r in rejects] == [
        "field 'prompt' is number, expected string",
        "field 'completion' is empty: nothing to train on",
        "missing field 'completion'",
    ]


# --- command line ------------------------------------------------------------------------------


def test_cli_chat_build_and_bad_record(tmp_path, runner, chat_tok):
    data = write_jsonl(
        tmp_path / "chat.jsonl", [{"messages": SECOND}, BAD_CASES["unknown role"][0]]
    )
    base = ["build", str(data), "-t", str(chat_tok), "--pad-token", "eos", "--max-length", "64"]
    base += ["--messages-field", "messages", "--train-on", "last-assistant"]
    result = runner.invoke(main, [*base, "-o", str(tmp_path / "fail")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f'Error: {data}:2: messages[0].role "robot" is not one of system, user, assistant, tool'
    )
    result = runner.invoke(
        main, [*base, "-o", str(tmp_path / "skip"), "--on-bad-record", "skip", "--json"]
    )
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)["totals"]
    assert totals["documents_without_labels"] == 1 and totals["documents_written"] == 1
    manifest = json.loads((tmp_path / "skip" / MANIFEST_NAME).read_text())
    assert manifest["config"]["sft"]["train_on"] == "last-assistant"


def test_cli_no_add_eos(tmp_path, runner, chat_tok, hf_tok):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS[:1])
    args = ["build", str(data), "-t", str(chat_tok), "--pad-token", "eos", "--max-length", "32"]
    args += ["--prompt-field", "prompt", "--completion-field", "completion", "-q"]
    for flag, out in (("--no-add-eos", "plain"), ("--add-eos", "eos")):
        result = runner.invoke(main, [*args, flag, "-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    (plain,) = read_rows(tmp_path / "plain")
    (eos,) = read_rows(tmp_path / "eos")
    assert eos["length"] == plain["length"] + 1
    assert eos["labels"][eos["length"] - 1] == hf_tok.eos_token_id


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--train-on", "all"], "--train-on: only for SFT records"),
        (["--prompt-field", "p"], "prompt_field and completion_field must be given together"),
        (
            ["--messages-field", "messages", "--overflow", "split"],
            "overflow 'split' cannot keep prompts with their completions",
        ),
        (
            ["--messages-field", "messages", "--add-eos"],
            "add_eos does not apply to chat records",
        ),
        (
            ["--messages-field", "messages", "--chat-template", "missing.jinja"],
            "missing.jinja: cannot read chat template: No such file or directory",
        ),
        (
            ["--prompt-field", "p", "--completion-field", "c", "--train-on", "all"],
            "train_on and chat_template apply only to messages_field records",
        ),
    ],
)
def test_cli_usage_errors(tmp_path, runner, chat_tok, extra, message):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": SECOND}])
    args = ["build", str(data), "-t", str(chat_tok), "--pad-token", "eos", "--max-length", "32"]
    result = runner.invoke(main, [*args, "-o", str(tmp_path / "out"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_text_input_is_refused_for_sft(tmp_path, runner, chat_tok):
    data = tmp_path / "notes.txt"
    data.write_text("just text\n")
    args = ["build", str(data), "-t", str(chat_tok), "--pad-token", "eos", "--max-length", "32"]
    args += ["--messages-field", "messages", "-o", str(tmp_path / "out")]
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "supervised records need JSONL objects" in result.output
