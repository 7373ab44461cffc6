"""Test helpers for the training recipes: maskprep outputs built for real, tiny random models, a
recorder of what a trainer feeds the model, and the per-document comparison with each document
run alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from maskprep import (
    BuildConfig,
    OutputConfig,
    ShapeConfig,
    SourceConfig,
    TokenizerConfig,
    build,
    read_manifest,
)
from maskprep.columns import IGNORE_INDEX

torch = pytest.importorskip("torch", reason="needs torch (the verify extra)")

#: Trainer/SFTTrainer arguments of the test runs: two steps on the CPU, nothing saved or shown.
TWO_QUIET_STEPS: dict = {
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-3,
    "report_to": [],
    "save_strategy": "no",
    "logging_strategy": "no",
    "disable_tqdm": True,
    "use_cpu": True,
    "seed": 0,
}
#: float32 on CPU: the tolerance the transformers test suite allows between attention
#: implementations (1e-6 absolute on CUDA, looser on CPU), well under what a leak moves.
ATOL, RTOL = 1e-5, 1e-4
#: A leak moves a document's logits by far more than this (measured: 0.3 to 5).
LEAK = 0.05
#: Weight scale of the tiny encoders. At transformers' usual 0.02 a random post-norm encoder's
#: attention barely reaches its logits (a planted cross-document leak moved them by 1e-3); at
#: this scale attention matters as it does in a trained model (the real MiniLM moves by ~1).
ENCODER_INIT = 0.2


def build_output(
    directory: Path, inputs: list[Path], tokenizer: Path, strategy: str, **options: Any
) -> Path:
    """A real ``maskprep build`` of ``inputs``; ``options`` go to the tokenizer/shape configs."""
    tok = {k: options.pop(k) for k in ("pad_token", "add_eos", "padding_side") if k in options}
    max_length = options.pop("max_length", 32)
    buckets = options.pop("buckets", None)
    build(
        BuildConfig(
            source=SourceConfig(inputs=tuple(str(i) for i in inputs), **options),
            tokenizer=TokenizerConfig(name_or_path=str(tokenizer), **tok),
            shape=ShapeConfig(max_length=max_length, strategy=strategy, buckets=buckets),
            output=OutputConfig(directory=str(directory)),
        )
    )
    return directory


def tiny_model(kind: str, vocab_size: int = 300) -> torch.nn.Module:
    """A seeded tiny random model: ``llama`` (causal LM), ``bert`` or ``roberta`` (masked LM)."""
    from rowkit import tiny_config
    from transformers import (
        BertForMaskedLM,
        LlamaForCausalLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(tiny_config("llama", vocab_size))
    if kind == "bert":
        config = tiny_config("bert", vocab_size)
        config.initializer_range = ENCODER_INIT
        return BertForMaskedLM(config)
    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        # The test tokenizers' pad id. RoBERTa numbers positions from pad_token_id + 1 and, run
        # without position_ids, takes every token with that id for padding: the reference run
        # alone must not mistake a real token (the toy tokenizers' BOS is 1) for a pad.
        pad_token_id=3,
        initializer_range=ENCODER_INIT,
    )
    return RobertaForMaskedLM(config)


@dataclass
class Fed:
    """The keyword arguments a model was called with, one dict per forward call, until
    :meth:`stop` (the comparisons run afterwards call the model too)."""

    calls: list[dict[str, Any]]
    handle: Any = None

    def stop(self) -> None:
        """Record no more calls."""
        self.handle.remove()


def record_feeds(model: torch.nn.Module) -> Fed:
    """Record every call's keyword arguments (what the trainer really fed)."""
    fed = Fed(calls=[])

    def hook(_module, _args, kwargs):
        fed.calls.append(
            {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        )

    fed.handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    return fed


def pack_lookup(output: Path) -> dict[tuple[int, ...], list[int]]:
    """Each packed row of ``output`` (its input ids) → its documents' lengths, from the shards:
    the ground truth, independent of what reached (or was derived by) any collator."""
    manifest = read_manifest(output)
    paths = [str(output / s.path) for s in manifest.shards]
    table = ds.dataset(paths, format="parquet").to_table(columns=["input_ids", "seq_lens"])
    return {tuple(r["input_ids"]): list(r["seq_lens"]) for r in table.to_pylist()}


def documents_in(
    batch: dict[str, Any],
    packs: dict[tuple[int, ...], list[int]] | None,
    *,
    masked_lm: bool = False,
) -> list[tuple[int, int, int]]:
    """(row, start, end) of every document in a fed batch.

    Padded rows: the one run of real tokens, from the 2D mask. Packed rows: looked up by their
    token ids in the shards' ``seq_lens`` (``masked_lm``: ids corrupted for masked-LM training
    are restored from the labels first).
    """
    ids = batch["input_ids"]
    out = []
    for row in range(ids.shape[0]):
        if packs is None:
            real = torch.nonzero(batch["attention_mask"][row]).flatten()
            out.append((row, int(real[0]), int(real[-1]) + 1))
            continue
        original = ids[row]
        if masked_lm:
            labels = batch["labels"][row]
            original = torch.where(labels != IGNORE_INDEX, labels, original)
        start = 0
        for length in packs[tuple(original.tolist())]:
            out.append((row, start, start + length))
            start += length
    return out


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """A fed batch as the model takes it again: no labels, no trainer bookkeeping."""
    return {k: v for k, v in batch.items() if k not in ("labels", "num_items_in_batch")}


def logits(model: torch.nn.Module, feed: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**feed).logits


def _inside_and_alone(
    model: torch.nn.Module,
    batch: dict[str, Any],
    docs: list[tuple[int, int, int]],
    feed: dict[str, Any] | None,
):
    """(logits of a document inside ``feed``, logits of its tokens run alone) per document."""
    model.eval()
    inside = logits(model, model_inputs(batch) if feed is None else feed)
    for row, start, end in docs:
        alone = logits(model, {"input_ids": batch["input_ids"][row : row + 1, start:end]})[0]
        yield inside[row, start:end], alone


def worst_document_diff(
    model: torch.nn.Module,
    batch: dict[str, Any],
    docs: list[tuple[int, int, int]],
    feed: dict[str, Any] | None = None,
) -> float:
    """Largest |logit difference| between each document of ``batch`` inside ``feed`` (default:
    the batch as fed) and the same tokens run alone (the model's defaults: no mask, positions
    from the start), so negative controls can show it is large."""
    return max(float((a - b).abs().max()) for a, b in _inside_and_alone(model, batch, docs, feed))


def assert_documents_alone(
    model: torch.nn.Module, batch: dict[str, Any], docs: list[tuple[int, int, int]]
) -> None:
    """Every document of the fed batch gives the logits it has alone, within (ATOL, RTOL)."""
    for inside, alone in _inside_and_alone(model, batch, docs, None):
        torch.testing.assert_close(inside, alone, atol=ATOL, rtol=RTOL)
