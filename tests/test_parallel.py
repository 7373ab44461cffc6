"""The fast encoding path equals ``tokenizer(...)``, on the background thread too."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS, make_config, write_jsonl

from maskprep import ShapeConfig, TokenizerConfig, build
from maskprep.sources.records import Batch, Record, Rejected
from maskprep.tokenizing.encoder import (
    BackendEncoder,
    Encoder,
    encoder_spec,
    frame_documents,
)
from maskprep.tokenizing.loading import load_tokenizer, tokenizer_info
from maskprep.tokenizing.prepare import EncodingThread, PreparedTokenizer, encode_stream

TEXTS = [
    *dict.fromkeys(CORPUS),
    "",
    "   ",
    "ends with eos </s>",
    "<s> a bos inside </s> and eos inside <pad>",
    "[CLS] bert specials [SEP] [PAD] [MASK] inside text",
    "line one\nline two\ttabbed\r\nwindows",
    "x" * 3000,
    "🤗 emoji, 東京, naïve, Ünïcödé, ﬁ ligature, \u200b zero width",
]


def _slow_and_fast(path, **tok_options):
    config = TokenizerConfig(name_or_path=str(path), **tok_options)
    tokenizer = load_tokenizer(config)
    encoder = Encoder(tokenizer, config)
    spec = encoder_spec(tokenizer, encoder)
    return tokenizer, encoder, spec


@pytest.mark.parametrize(
    ("fixture", "options"),
    [
        ("llama_like", {"pad_token": "eos"}),
        ("llama_like", {"pad_token": "eos", "add_eos": True}),
        ("llama_like", {"pad_token": "eos", "add_special_tokens": False}),
        ("with_pad", {}),
        ("with_pad", {"add_eos": True, "add_special_tokens": False}),
        ("minilm", {}),
        ("minilm", {"add_special_tokens": False}),
    ],
)
def test_fast_path_equals_tokenizer_call(request, fixture, options):
    path = request.getfixturevalue(fixture)
    _, encoder, spec = _slow_and_fast(path, **options)
    assert spec is not None, "the fast path should apply to a plain fast tokenizer"
    fast = BackendEncoder(spec).encode(TEXTS)
    slow = encoder.encode(TEXTS, ["t"] * len(TEXTS))
    assert len(fast.offsets) == len(TEXTS) + 1
    docs = fast.docs(["t"] * len(TEXTS), len(spec.prefix), len(spec.suffix))
    for text, got, want in zip(TEXTS, docs, slow, strict=True):
        assert got.ids.dtype == np.int32
        assert got.ids.tolist() == want.ids.tolist(), text
        assert got.trained.tolist() == want.trained.tolist()
        assert (got.head, got.tail) == (want.head, want.tail)


def test_fast_path_refused_when_ids_differ(llama_like):
    tokenizer, encoder, _ = _slow_and_fast(llama_like, pad_token="eos")

    class Lowercasing(Encoder):
        """Stands for a tokenizer class that preprocesses text in Python."""

        def encode(self, texts, locations):
            return super().encode([t.lower() for t in texts], locations)

    assert encoder_spec(tokenizer, Lowercasing(tokenizer, encoder.config)) is None


def test_fast_path_refused_for_overridden_call(llama_like):
    tokenizer, encoder, _ = _slow_and_fast(llama_like, pad_token="eos")
    base = type(tokenizer)

    def _encode_plus(self, *args, **kwargs):  # a subclass that could preprocess in Python
        return base._encode_plus(self, *args, **kwargs)

    tokenizer.__class__ = type("Custom", (base,), {"_encode_plus": _encode_plus})
    assert encoder_spec(tokenizer, encoder) is None


def test_frame_documents_adds_frame_and_missing_eos():
    flat = np.array([5, 6, 7, 2, 4], dtype=np.int32)
    batch = frame_documents(flat, np.array([2, 0, 2, 1]), prefix=(1,), suffix=(9, 8), eos_id=2)
    docs = [batch.ids[a:b].tolist() for a, b in zip(batch.offsets, batch.offsets[1:], strict=False)]
    assert docs == [[1, 5, 6, 2, 9, 8], [1, 2, 9, 8], [1, 7, 2, 9, 8], [1, 4, 2, 9, 8]]


def _plain_thread(spec, lookahead: int = 2) -> EncodingThread:
    """The encoding thread as a build runs it for plain documents: texts to the backend."""
    backend = BackendEncoder(spec)
    return EncodingThread(
        lambda records: [r.text for r in records],
        lambda records, texts: backend.encode(texts),
        lookahead,
    )


def test_the_encoding_thread_gives_batches_in_order(with_pad):
    _, _, spec = _slow_and_fast(with_pad)
    records = [Record(text, "f", i) for i, text in enumerate(TEXTS * 5, start=1)]
    batches = [Batch(records[i : i + 7]) for i in range(0, len(records), 7)]
    batches.append(Batch([], [Rejected("f", 99, "bad", "raw")]))  # rejects only: no documents
    local = BackendEncoder(spec)
    thread = _plain_thread(spec, lookahead=1)
    try:
        out = list(thread.encode(iter(batches)))
    finally:
        thread.close()
    assert [b for b, _ in out] == batches
    assert out[-1][1] == []
    for batch, encoded in out[:-1]:
        want = local.encode([r.text for r in batch.records])
        assert encoded.ids.tolist() == want.ids.tolist()
        assert encoded.offsets.tolist() == want.offsets.tolist()


def test_the_fast_path_gives_each_document_its_record_location(with_pad):
    tokenizer, _, spec = _slow_and_fast(with_pad)
    info = tokenizer_info(tokenizer, TokenizerConfig(name_or_path=str(with_pad)))
    records = [Record(text, "f", i) for i, text in enumerate(TEXTS * 3, start=1)]
    batches = [Batch(records[i : i + 5]) for i in range(0, len(records), 5)]
    batches.append(Batch([], [Rejected("f", 99, "bad", "raw")]))
    local = BackendEncoder(spec)
    out = list(encode_stream(iter(batches), PreparedTokenizer(info, spec), ShapeConfig(64)))
    assert [b for b, _, _ in out] == batches
    assert out[-1][1:] == ([], [])
    for batch, docs, rejected in out[:-1]:
        assert rejected == []
        want = local.encode([r.text for r in batch.records])
        assert np.concatenate([d.ids for d in docs]).tolist() == want.ids.tolist()
        assert [d.location for d in docs] == [r.location for r in batch.records]
        assert all(d.trained.all() for d in docs)


def test_the_encoding_thread_hands_reading_errors_to_the_consumer(with_pad):
    _, _, spec = _slow_and_fast(with_pad)

    def batches():
        yield Batch([Record("fine", "f", 1)])
        raise OSError("disk gone")

    thread = _plain_thread(spec)
    try:
        encoded = thread.encode(batches())
        assert next(encoded)[0].records[0].text == "fine"
        with pytest.raises(OSError, match="disk gone"):
            next(encoded)
    finally:
        thread.close()


def _docs(n: int) -> list[dict]:
    words = " ".join(CORPUS).split()
    return [
        {"text": " ".join(words[(i * 7) % len(words) :][: 3 + (i * 13) % 60])} for i in range(n)
    ]


STRATEGIES = [
    {"strategy": "pad"},
    {"strategy": "pad", "padding_side": "left"},
    {"strategy": "bucket"},
    {"strategy": "pack"},
    {"strategy": "none"},
]


@pytest.mark.parametrize("options", STRATEGIES, ids=lambda o: "-".join(o.values()))
def test_fast_path_build_is_byte_identical_to_tokenizer_call(
    tmp_path, with_pad, options, monkeypatch
):
    data = write_jsonl(tmp_path / "in.jsonl", _docs(600))
    outputs = {}
    for name in ("fast", "slow"):
        config = make_config(
            [data], with_pad, tmp_path / name, max_length=48, batch_size=64, add_eos=True, **options
        )
        if name == "slow":  # the reference: tokenizer(...) in this thread
            import maskprep.tokenizing.prepare as prepare

            monkeypatch.setattr(prepare, "encoder_spec", lambda tokenizer, encoder: None)
        build(config)
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert len(outputs["fast"]) >= 2
    assert outputs["fast"] == outputs["slow"]
