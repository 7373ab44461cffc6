"""Train a tiny random Llama for a few steps on a maskprep output: the quick start's training side.

    python sample_data/train_tiny.py out/sample --steps 5

Runs offline on a CPU in seconds. The model is built from a config (random weights) sized to the
output's vocabulary; ``transformers.Trainer`` runs at its defaults (it drops the columns the
model's forward does not name) and ``Collator.for_output`` reads the pad id, padding side and
strategy from the output's manifest and the mask form from the model. Works for every strategy.
Needs ``accelerate`` (``pip install -e ".[train]"``).
"""

from __future__ import annotations

import argparse
import tempfile

import maskprep
from maskprep.collate import Collator


def tiny_llama(vocab_size: int, eos_id: int):
    """A 2-layer Llama with random weights: masking is a property of the architecture."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=eos_id,
    )
    return LlamaForCausalLM(config)


def main(argv: list[str] | None = None) -> list[float]:
    """Train for ``--steps`` steps; print and return the loss of each step."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="a finished maskprep output directory")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    tokenizer = maskprep.read_manifest(args.output).tokenizer
    model = tiny_llama(tokenizer.vocab_size, tokenizer.eos_token_id)
    collator = Collator.for_output(args.output, model=model)
    print(f"collator: {collator}")
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = Trainer(
            model=model,
            args=training,
            train_dataset=maskprep.load_dataset(args.output),
            data_collator=collator,
        )
        trainer.remove_callback(PrinterCallback)  # the losses are printed below
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    for step, loss in enumerate(losses, start=1):
        print(f"step {step}: loss {loss:.4f}")
    return losses


if __name__ == "__main__":
    main()
