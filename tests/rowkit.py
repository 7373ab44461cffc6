"""Test helpers: packed and padded rows built by hand in the maskprep column contract, tiny model
configs, and a finished-looking output directory around them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskprep import (
    BuildConfig,
    OutputConfig,
    ShapeConfig,
    SourceConfig,
    TokenizerConfig,
    Totals,
    columns,
)
from maskprep.columns import IGNORE_INDEX
from maskprep.output.manifest import Manifest, RecordedConfig, write_manifest
from maskprep.output.shards import ShardInfo, sha256_file
from maskprep.shaping.fill import Fill
from maskprep.shaping.fit import ShapeStats
from maskprep.tokenizing.loading import TokenizerInfo


def pack_rows(rows_of_docs: Sequence[Sequence[Sequence[int]]], width: int, pad_id: int) -> pa.Table:
    """One packed row per list of documents: concatenated, labels ignored at each document's first
    token and at padding, position_ids restarting at 0, seq_lens, padded to ``width``."""
    out = []
    for docs in rows_of_docs:
        ids = [t for d in docs for t in d]
        pad = width - len(ids)
        assert pad >= 0, "documents do not fit the row"
        labels = [IGNORE_INDEX if i == 0 else t for d in docs for i, t in enumerate(d)]
        out.append(
            {
                "input_ids": ids + [pad_id] * pad,
                "attention_mask": [1] * len(ids) + [0] * pad,
                "labels": labels + [IGNORE_INDEX] * pad,
                "length": len(ids),
                "position_ids": [i for d in docs for i in range(len(d))] + [0] * pad,
                "seq_lens": [len(d) for d in docs],
            }
        )
    return pa.Table.from_pylist(out, schema=columns.schema(packed=True))


def pad_rows(docs: Sequence[Sequence[int]], width: int, pad_id: int, side: str) -> pa.Table:
    """Padded rows; with left padding the first real token's label is ignored (a decoder would
    otherwise predict it from a pad)."""
    out = []
    for d in docs:
        pad = width - len(d)
        mask = [1] * len(d) + [0] * pad if side == "right" else [0] * pad + [1] * len(d)
        ids = list(d) + [pad_id] * pad if side == "right" else [pad_id] * pad + list(d)
        labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
        if side == "left":
            labels[pad] = IGNORE_INDEX
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels, "length": len(d)})
    return pa.Table.from_pylist(out, schema=columns.schema())


def write_output(directory: Path, table: pa.Table, pad_id: int, padding_side: str) -> Path:
    """A directory shaped like a finished build: one shard and a manifest naming it."""
    directory.mkdir(parents=True, exist_ok=True)
    shard = directory / "data-00000.parquet"
    pq.write_table(table, shard)
    packed = columns.SEQ_LENS in table.column_names
    rows = table.to_pylist()
    width = max((len(r["input_ids"]) for r in rows), default=1)
    positions = sum(len(r["attention_mask"]) for r in rows)
    real = sum(r["length"] for r in rows)
    trained = sum(sum(1 for v in r["labels"] if v != IGNORE_INDEX) for r in rows)
    documents = sum(len(r[columns.SEQ_LENS]) for r in rows) if packed else len(rows)
    strategy = "pack" if packed else "pad"
    config = BuildConfig(
        SourceConfig(("synthetic.jsonl",)),
        TokenizerConfig("synthetic"),
        ShapeConfig(max_length=width, strategy=strategy),
        OutputConfig(str(directory)),
    )
    tokenizer = TokenizerInfo(
        name_or_path="synthetic",
        revision=None,
        tokenizer_class="none",
        # The smallest vocabulary that holds the rows' ids: no model is refused for it.
        vocab_size=max((max(r["input_ids"], default=0) for r in rows), default=0) + 1,
        pad_token="<pad>",
        pad_token_id=pad_id,
        eos_token=None,
        eos_token_id=None,
        bos_token_id=None,
        padding_side=padding_side,
        prefix_ids=[],
        suffix_ids=[],
        fingerprint="",
        files={},
    )
    counts = dict(rows_written=len(rows), positions=positions, real_tokens=real)
    manifest = Manifest(
        config=RecordedConfig.from_build(config),
        tokenizer=tokenizer,
        inputs=(),
        shards=(ShardInfo(shard.name, len(rows), positions, real, trained, sha256_file(shard)),),
        totals=Totals(
            records_read=documents,
            label_tokens=trained,
            shape=ShapeStats(documents_written=documents),
            **counts,
        ),
        fill=Fill(strategy, len(rows), documents, positions, real),
    )
    write_manifest(directory, manifest)
    return directory


def random_docs(seed: int, count: int, low: int = 4, high: int = 300) -> list[list[int]]:
    """``count`` documents of 3 to 8 random ids in ``[low, high)``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, int(rng.integers(3, 9))).tolist() for _ in range(count)]


def tiny_config(kind: str, vocab_size: int = 300):
    """A tiny random-weight config of a Llama-, GPT-2- or BERT-style model."""
    from transformers import BertConfig, GPT2Config, LlamaConfig

    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            bos_token_id=1,
            eos_token_id=2,
        )
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=128,
            bos_token_id=1,
            eos_token_id=2,
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def one_torch_thread():
    """Run torch on one thread: on a shared 2-core machine, two spinning threads per process make
    small matrix products ~30x slower. Restores the previous count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
