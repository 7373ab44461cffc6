"""Regenerate sample_data/tokenizer from the sample texts (offline, deterministic)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The toy tokenizer is a test helper (tests/toy_tokenizer.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from toy_tokenizer import make_tokenizer

ROOT = Path(__file__).resolve().parent.parent / "sample_data"


def sample_texts() -> list[str]:
    """Every text in sample_data: the notes, and the prompt, completion and text fields."""
    texts = (ROOT / "notes.txt").read_text(encoding="utf-8").splitlines()
    for line in (ROOT / "instructions.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        texts += [record["prompt"], record["completion"], record["text"]]
    return texts


if __name__ == "__main__":
    print(make_tokenizer(ROOT / "tokenizer", sample_texts(), vocab_size=600))
