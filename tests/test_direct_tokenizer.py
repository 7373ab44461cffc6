"""A local tokenizer.json loaded with ``tokenizers`` alone, only where transformers would load the
same tokenizer (issue 22): identical identity, ids and shards, and a build that never imports
transformers or torch; every case transformers would change falls back to it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, ROOT, SAMPLE, make_config, write_jsonl
from test_sft_exact import make_sentencepiece
from toy_tokenizer import make_tokenizer

from maskprep import build
from maskprep.tokenizing.encoder import PROBE_TEXTS, BackendEncoder, Encoder
from maskprep.tokenizing.loading import load_direct, load_tokenizer, tokenizer_info
from maskprep.tokenizing.prepare import direct_spec, prepare_tokenizer

TEXTS = [
    *PROBE_TEXTS,
    *CORPUS,
    "<s> </s> [CLS] [SEP] <|im_start|> special tokens written in text",
    "",
    "   ",
    "\u00e9\u0301 combining, \u212b angstrom, ﬁ ligature, ＦＵＬＬ width",
]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, llama_like, with_pad, minilm) -> dict[str, tuple[Path, dict]]:
    """Tokenizer directories of every kind the direct loader takes, with build options."""
    root = tmp_path_factory.mktemp("direct")
    chat = make_tokenizer(
        root / "chat",
        CORPUS,
        vocab_size=300,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}",
        add_eos=True,
    )
    sp = make_sentencepiece(root / "sp", legacy=False)
    return {
        "llama-like pad eos": (llama_like, {"pad_token": "eos"}),
        "own pad": (with_pad, {}),
        "own pad, add eos, left": (with_pad, {"add_eos": True, "padding_side": "left"}),
        "minilm": (minilm, {}),
        "minilm no specials": (minilm, {"add_special_tokens": False}),
        "sample": (SAMPLE / "tokenizer", {"pad_token": "eos", "add_eos": True}),
        "chat markers, eos suffix": (chat, {"pad_token": "eos", "add_eos": True}),
        "sentencepiece": (sp, {"pad_token": "eos"}),
    }


KINDS = [
    "llama-like pad eos",
    "own pad",
    "own pad, add eos, left",
    "minilm",
    "minilm no specials",
    "sample",
    "chat markers, eos suffix",
    "sentencepiece",
]


@pytest.mark.parametrize("kind", KINDS)
def test_direct_load_is_the_tokenizer_transformers_loads(kinds, kind):
    path, options = kinds[kind]
    config = make_config(["x"], path, "o", **options).tokenizer
    direct = load_direct(config)
    assert direct is not None
    tokenizer = load_tokenizer(config)
    assert dataclasses.asdict(direct.info) == dataclasses.asdict(tokenizer_info(tokenizer, config))
    build_config = make_config(["x"], path, "o", **options)
    ours = BackendEncoder(direct_spec(direct, build_config.resolved_tokenizer)).encode(TEXTS)
    theirs = Encoder(tokenizer, config).encode(TEXTS, ["t"] * len(TEXTS))
    for i, doc in enumerate(theirs):
        assert ours.ids[ours.offsets[i] : ours.offsets[i + 1]].tolist() == doc.ids.tolist()


@pytest.mark.parametrize("kind", ["llama-like pad eos", "minilm", "sample"])
def test_direct_build_writes_the_shards_of_a_transformers_build(tmp_path, kinds, kind):
    path, options = kinds[kind]
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in TEXTS * 5 if t.strip()])
    direct = build(make_config([data], path, tmp_path / "a", strategy="pack", **options))
    config = make_config([data], path, tmp_path / "b", strategy="pack", **options)
    loaded = build(config, tokenizer=load_tokenizer(config.tokenizer))  # through transformers
    assert [s.sha256 for s in direct.manifest.shards] == [s.sha256 for s in loaded.manifest.shards]
    assert direct.manifest.tokenizer == loaded.manifest.tokenizer


def test_a_plain_build_imports_neither_transformers_nor_torch(tmp_path, minilm):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in CORPUS])
    script = f"""
import sys
from maskprep.cli import main
try:
    main(["build", {str(data)!r}, "-t", {str(minilm)!r}, "--max-length", "64",
          "-o", {str(tmp_path / "out")!r}, "-q"], standalone_mode=False)
finally:
    print(sorted(m for m in ("transformers", "torch") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "data-00000.parquet").exists()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit(path: Path, **changes) -> None:
    settings = json.loads(path.read_text())
    settings.update(changes)
    path.write_text(json.dumps(settings))


def test_bert_options_that_rebuild_another_pipeline_load_through_transformers(tmp_path, minilm):
    """Negative control: BertTokenizer builds its normalizer from do_lower_case, not from
    tokenizer.json; with the two disagreeing, transformers encodes differently, and the direct
    loader must not be taken."""
    cased = _copy(minilm, tmp_path / "cased")
    _edit(cased / "tokenizer_config.json", do_lower_case=False)
    config = make_config(["x"], cased, "o").tokenizer
    assert load_direct(config) is None
    from tokenizers import Tokenizer

    text = "The Quick Brown Fox"
    from_file = Tokenizer.from_file(str(cased / "tokenizer.json")).encode(text).ids
    assert load_tokenizer(config)(text)["input_ids"] != from_file


@pytest.mark.parametrize(
    "change",
    [
        {"add_bos_token": True},  # rewrites the post-processor
        {"add_prefix_space": True},
        {"tokenizer_class": "Qwen2Tokenizer"},  # a class that builds its own pipeline
        {"tokenizer_class": None},
        {"some_future_setting": 1},
        {"auto_map": {"AutoTokenizer": ["x.Tok", None]}},
        {"added_tokens_decoder": {"300": {"content": "<new>", "special": True}}},
        {"eos_token": "<|not-added|>"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_settings_transformers_acts_on_load_through_transformers(tmp_path, llama_like, change):
    changed = _copy(llama_like, tmp_path / "changed")
    _edit(changed / "tokenizer_config.json", **change)
    assert load_direct(make_config(["x"], changed, "o", pad_token="eos").tokenizer) is None
    assert load_direct(make_config(["x"], llama_like, "o", pad_token="eos").tokenizer)


def test_a_model_config_of_another_type_loads_through_transformers(tmp_path, llama_like):
    changed = _copy(llama_like, tmp_path / "llama")
    (changed / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert load_direct(make_config(["x"], changed, "o", pad_token="eos").tokenizer) is None


def test_added_token_transformers_adds_is_missing_from_tokenizer_json(tmp_path, llama_like):
    """Negative control: an added token only in tokenizer_config.json is added by transformers,
    which then encodes its text as one token; the direct loader would not have it."""
    changed = _copy(llama_like, tmp_path / "added")
    _edit(
        changed / "tokenizer_config.json",
        added_tokens_decoder={"300": {"content": "<new>", "special": True}},
    )
    config = make_config(["x"], changed, "o", pad_token="eos").tokenizer
    assert load_direct(config) is None
    assert load_tokenizer(config)("a <new> b", add_special_tokens=False)["input_ids"].count(300)


def test_no_pad_token_is_reported_by_transformers_path(llama_like):
    from maskprep import ConfigError

    config = make_config(["x"], llama_like, "o").tokenizer
    assert load_direct(config) is None
    with pytest.raises(ConfigError, match="has no pad token"):
        prepare_tokenizer(make_config(["x"], llama_like, "o"), None, None)


def test_prepared_tokenizer_says_it_was_loaded_directly(llama_like, minilm):
    prepared = prepare_tokenizer(make_config(["x"], minilm, "o"), None, None)
    assert prepared.direct and prepared.encoder is None and prepared.spec is not None
    ids = BackendEncoder(prepared.spec).encode(["hello world"]).ids
    assert np.asarray(ids).tolist()[0] == 101  # [CLS]
