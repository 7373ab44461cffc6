"""SFT rows are exactly what the model reads, on every kind of vocabulary (issue 22).

A prompt/completion row is ``prompt + completion`` tokenized as one text (never two texts
joined: SentencePiece would begin the completion with a space of its own), and its trained
tokens are exactly those holding a character of the completion. Checked on byte-level BPE, on
the real MiniLM WordPiece, and on two SentencePiece layouts (Metaspace, as transformers 5 builds
Llama and Mistral tokenizers, and the older normalizer form of Mistral v1's ``tokenizer.json``),
through both ways token spans are found (byte lengths, offsets) and through the tokenizer's own
call (the path for tokenizer classes without the fast path).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CORPUS, make_config, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskprep import IGNORE_INDEX, SFTConfig, build
from maskprep.sources.records import Record
from maskprep.sources.sft import Conversation, Message, PromptCompletion
from maskprep.tokenizing.prepare import prepare_tokenizer
from maskprep.tokenizing.sft import SFTEncoder

#: Mistral 7B Instruct v0.2's chat template (as published, system message handling left out):
#: the assistant's answer follows ``[/INST]`` after a space the template writes itself.
MISTRAL_V02 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)
TEXTS = [*CORPUS, "Answer: ] ) 42 — naïve [INST] [/INST]", "def f(x):\n    return x\n"]


def make_sentencepiece(directory: Path, legacy: bool) -> Path:
    """A SentencePiece-style BPE with byte fallback, saved as a transformers directory: a ``▁``
    begins the text and stands for every space. ``legacy``: the normalizer form of Mistral v1's
    ``tokenizer.json`` (Prepend + Replace); else the Metaspace pre-tokenizer transformers 5
    builds for Llama and Mistral (prepended to the first section only)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if legacy:
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(TEXTS * 3, trainer=trainer)
    # Byte fallback needs the 256 byte pieces in the vocabulary, as SentencePiece has them.
    definition = json.loads(tokenizer.to_str())
    vocab = definition["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    tokenizer = Tokenizer.from_str(json.dumps(definition))
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["[INST]", "[/INST]"],
    )
    fast.chat_template = MISTRAL_V02
    fast.save_pretrained(directory)
    return directory


#: Qwen2's pre-tokenizer regex.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def make_qwen_like(directory: Path) -> Path:
    """Byte-level BPE laid out as Qwen2's: NFC normalizer, a regex split, then byte-level with no
    regex of its own (text that NFC would change takes the offsets path)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXTS * 3, trainer=trainer)
    from tokenizers import processors

    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory) -> Path:
    return make_qwen_like(tmp_path_factory.mktemp("tok") / "qwen_like")


@pytest.fixture(scope="module")
def sp_metaspace(tmp_path_factory) -> Path:
    return make_sentencepiece(tmp_path_factory.mktemp("tok") / "sp", legacy=False)


@pytest.fixture(scope="module")
def sp_legacy(tmp_path_factory) -> Path:
    return make_sentencepiece(tmp_path_factory.mktemp("tok") / "sp_legacy", legacy=True)


@pytest.fixture(scope="module")
def vocabularies(llama_like, qwen_like, minilm, sp_metaspace, sp_legacy) -> dict[str, Path]:
    return {
        "bpe": llama_like,
        "bpe-nfc": qwen_like,
        "wordpiece": minilm,
        "sp": sp_metaspace,
        "sp-legacy": sp_legacy,
    }


def _options(tokenizer_dir: Path) -> dict:
    """MiniLM pads with its own [PAD] and has no EOS (its [SEP] ends every text)."""
    if (tokenizer_dir / "vocab.txt").exists():
        return {"add_eos": False}
    if tokenizer_dir.name == "qwen_like":
        return {}
    return {"pad_token": "eos"}


def _encoders(tokenizer_dir: Path, sft: SFTConfig) -> tuple[object, list[SFTEncoder]]:
    """The build's SFT encoder (fast path) and one through the tokenizer's own call."""
    options = _options(tokenizer_dir)
    config = dataclasses.replace(
        make_config(["x"], tokenizer_dir, "o", max_length=4096, **options), sft=sft
    )
    prepared = prepare_tokenizer(config, None, None)
    assert prepared.sft_encoder is not None and prepared.spec is not None
    tokenizer = prepared.sft_encoder.tokenizer
    slow = SFTEncoder(tokenizer, config.tokenizer, sft, shape=config.shape)
    return tokenizer, [prepared.sft_encoder, slow]


@pytest.fixture(scope="module")
def pair_encoders(vocabularies):
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    return {name: _encoders(path, sft) for name, path in vocabularies.items()}


def assert_exact_pair(tokenizer, encoder: SFTEncoder, prompt: str, completion: str) -> None:
    """The row is the joined text tokenized, framed, with EOS; its trained tokens are exactly
    those that hold a character of the completion (and the EOS)."""
    record = Record("", "f.jsonl", 1, PromptCompletion(prompt, completion))
    (doc,) = encoder.encode_records([record])
    joined = prompt + completion
    reference = tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True)
    text_ids = reference["input_ids"]
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if tokenizer.cls_token_id is not None:  # BERT: [CLS] … [SEP]
        prefix, suffix = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
    else:
        suffix = []
    eos = tokenizer.eos_token_id
    if eos is not None and (not text_ids or text_ids[-1] != eos):
        text_ids = [*text_ids, eos]
    assert doc.ids.tolist() == prefix + text_ids + suffix, (prompt, completion)
    # Which text tokens hold a completion character, from the tokenizer's own offsets.
    offsets = reference["offset_mapping"]
    cut = len(prompt)
    holds = [end > cut or (start == end and start >= cut) for start, end in offsets]
    expected = [False] * len(prefix) + holds + [True] * (len(text_ids) - len(holds) + len(suffix))
    assert doc.trained.tolist() == expected, (prompt, completion)
    assert doc.prompt == holds.count(False)
    if completion.strip():  # a completion with text trains a token of the text
        assert any(holds)


#: Pieces of text: letters, spaces, newlines, tabs, punctuation, accents, CJK, emoji and the
#: tokenizers' own special tokens written in the text.
texts = st.lists(
    st.sampled_from(
        [*"abcdeThe quick:]) \n\t.,é東🤗0123", "e\u0301", "  ", " [INST] ", "</s>", "[SEP]"]
    ),
    max_size=20,
).map("".join)


KINDS = ["bpe", "bpe-nfc", "wordpiece", "sp", "sp-legacy"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["fast", "tokenizer call"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompt=texts, completion=texts)
def test_prompt_completion_rows_are_the_joined_text(pair_encoders, kind, path, prompt, completion):
    tokenizer, encoders = pair_encoders[kind]
    assert_exact_pair(tokenizer, encoders[path == "tokenizer call"], prompt, completion)


BOUNDARY_CASES = [
    ("Question: what is padding?\nAnswer:", ""),  # empty completion: only EOS is trained
    ("Answer:", " ] )"),  # a completion that starts with a space
    ("Answer:", "\nFiller tokens."),  # ... with a newline
    ("Answer: ", "] )"),  # the prompt's last space
    ("The qui", "ck brown fox"),  # a prompt that ends in the middle of a word
    ("Über naïve caf", "é — 東京 🤗"),  # ... of a multi-byte character's word
    ("cafe\u0301 ", "cafe\u0301"),  # text NFC would change (spans from offsets there)
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("prompt", "completion"), BOUNDARY_CASES)
def test_prompt_completion_boundary_cases(pair_encoders, kind, prompt, completion):
    tokenizer, encoders = pair_encoders[kind]
    for encoder in encoders:
        assert_exact_pair(tokenizer, encoder, prompt, completion)


def test_fast_path_finds_spans_by_byte_lengths_only_for_byte_level_bpe(pair_encoders):
    by_bytes = {
        kind: encoders[0]._locator.by_bytes for kind, (_, encoders) in pair_encoders.items()
    }
    assert by_bytes == {
        "bpe": True,
        "bpe-nfc": True,
        "wordpiece": False,
        "sp": False,
        "sp-legacy": False,
    }


def _rows(out: Path) -> list[dict]:
    return pq.read_table(sorted(out.glob("data-*.parquet"))).to_pylist()


@pytest.mark.parametrize("legacy", [False, True], ids=["metaspace", "legacy"])
def test_sentencepiece_rows_decode_to_the_joined_text(tmp_path, legacy, sp_metaspace, sp_legacy):
    """The issue's case: Mistral v1 turned "Answer: ] )" into "Answer:  ] )"."""
    from transformers import AutoTokenizer

    tokenizer_dir = sp_legacy if legacy else sp_metaspace
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    pairs = [
        {"prompt": "Answer:", "completion": " ] )"},
        {"prompt": "Translate to French: cat\n", "completion": "chat"},
        {"prompt": "The qui", "completion": "ck brown fox"},
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    sft = SFTConfig(prompt_field="prompt", completion_field="completion")
    config = make_config([data], tokenizer_dir, tmp_path / "out", pad_token="eos", max_length=64)
    build(dataclasses.replace(config, sft=sft))
    for row, pair in zip(_rows(tmp_path / "out"), pairs, strict=True):
        ids = np.asarray(row["input_ids"])[np.asarray(row["attention_mask"]) == 1]
        labels = np.asarray(row["labels"])[np.asarray(row["attention_mask"]) == 1]
        assert (
            tokenizer.decode(ids, skip_special_tokens=True) == pair["prompt"] + pair["completion"]
        )
        trained = labels[labels != IGNORE_INDEX]
        assert trained[-1] == tokenizer.eos_token_id
        # The trained tokens spell the completion (a token it shares with the prompt included).
        spelled = tokenizer.decode(trained[:-1])
        assert (pair["prompt"] + pair["completion"]).endswith(spelled.lstrip())
        assert spelled.strip().endswith(pair["completion"].strip())


@pytest.mark.parametrize("tokenizer_name", ["sp", "sp-legacy"])
def test_mistral_template_trains_the_space_before_the_answer(vocabularies, tokenizer_name):
    """Without {% generation %} blocks the turn is what the template renders after the prompt:
    Mistral's `' ' + content + eos_token`, the space included (a SentencePiece `▁` of its own
    when the answer begins with a character it does not merge with)."""
    tokenizer, (encoder, slow) = _encoders(
        vocabularies[tokenizer_name], SFTConfig(messages_field="messages")
    )
    messages = [
        {"role": "user", "content": "What closes the list?"},
        {"role": "assistant", "content": "] )"},
        {"role": "user", "content": "And in Japanese?"},
        {"role": "assistant", "content": "東京 🤗"},
    ]
    record = Record("", "c.jsonl", 1, Conversation(tuple(Message(**m) for m in messages)))
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    reference = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = []
    for i in (1, 3):
        opened = tokenizer.apply_chat_template(messages[:i], tokenize=False)
        closed = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        assert closed[len(opened) :] == " " + messages[i]["content"] + "</s>"
        spans.append((len(opened), len(closed)))
    expected = [
        any(start < b and (end > a or (start == end and start >= a)) for a, b in spans)
        for start, end in reference["offset_mapping"]
    ]
    for enc in (encoder, slow):
        (doc,) = enc.encode_records([record])
        assert doc.ids.tolist() == reference["input_ids"]
        assert doc.trained.tolist() == expected
        first = next(i for i, (s, _) in enumerate(reference["offset_mapping"]) if s >= spans[0][0])
        # The token holding the space before "] )" is trained.
        assert doc.trained[first]
        assert text[reference["offset_mapping"][first][0]] == " "
