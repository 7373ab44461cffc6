"""Time ``maskprep.inspect`` on synthetic shards: ``python bench/inspect_bench.py [--rows N]``.

Writes ``--rows`` right-padded rows of ``--width`` positions (random lengths, pad == eos, EOS
trained) as Arrow and/or Parquet shards of ``--shard-rows`` rows into a temporary directory, then
inspects them and prints one line per format: rows, positions, seconds, positions per second and
peak memory. Writing the data is not timed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import maskprep
from maskprep import columns
from maskprep.columns import IGNORE_INDEX
from maskprep.config import BuildConfig, OutputConfig, ShapeConfig, SourceConfig, TokenizerConfig
from maskprep.output.manifest import Manifest, RecordedConfig, write_manifest
from maskprep.output.shards import ShardInfo, sha256_file
from maskprep.results import Totals
from maskprep.shaping.fill import Fill
from maskprep.shaping.fit import ShapeStats
from maskprep.tokenizing.loading import TokenizerInfo

EOS = PAD = 2


def synthetic_batch(rows: int, width: int, rng: np.random.Generator) -> pa.RecordBatch:
    """Right-padded rows: ``<s>`` text ``</s>`` then padding with the EOS id, all real tokens
    trained; lengths uniform in [8, width]."""
    lengths = rng.integers(8, width + 1, size=rows)
    cols = np.arange(width)
    real = cols[None, :] < lengths[:, None]
    ids = rng.integers(3, 32000, size=(rows, width), dtype=np.int32)
    ids[:, 0] = 1
    ids[np.arange(rows), lengths - 1] = EOS
    ids[~real] = PAD
    labels = np.where(real, ids, IGNORE_INDEX).astype(np.int32)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    arrays = [
        pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
        pa.ListArray.from_arrays(offsets, pa.array(real.ravel().astype(np.int8))),
        pa.ListArray.from_arrays(offsets, pa.array(labels.ravel())),
        pa.array(lengths.astype(np.int32)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=columns.schema())


def write_shards(directory: Path, fmt: str, rows: int, width: int, shard_rows: int) -> None:
    """Shards plus a manifest naming them, so the directory inspects like a build."""
    rng = np.random.default_rng(0)
    shards = []
    for index, start in enumerate(range(0, rows, shard_rows)):
        batch = synthetic_batch(min(shard_rows, rows - start), width, rng)
        name = f"data-{index:05d}.{'parquet' if fmt == 'parquet' else 'arrow'}"
        if fmt == "parquet":
            # As maskprep build writes them: zstd, no dictionary pages, a row group per batch
            # of (by default) 1000 documents.
            table = pa.Table.from_batches([batch])
            pq.write_table(
                table,
                directory / name,
                compression="zstd",
                use_dictionary=False,
                row_group_size=1000,
            )
        else:
            with ipc.new_file(str(directory / name), batch.schema) as writer:
                writer.write_batch(batch)
        real = int(np.asarray(batch.column(columns.LENGTH)).sum())
        digest = sha256_file(directory / name)
        shards.append(ShardInfo(name, batch.num_rows, batch.num_rows * width, real, real, digest))
    write_manifest(directory, _manifest(shards, width, fmt))


def _manifest(shards: list[ShardInfo], width: int, fmt: str) -> Manifest:
    """What a pad build of these shards (pad == eos, EOS trained) would have recorded."""
    config = BuildConfig(
        SourceConfig(("synthetic.jsonl",)),
        TokenizerConfig("synthetic"),
        ShapeConfig(max_length=width),
        OutputConfig("synthetic", format=fmt),  # type: ignore[arg-type]
    )
    tokenizer = TokenizerInfo(
        name_or_path="synthetic",
        revision=None,
        tokenizer_class="none",
        vocab_size=32000,
        pad_token="</s>",
        pad_token_id=PAD,
        eos_token="</s>",
        eos_token_id=EOS,
        bos_token_id=1,
        padding_side="right",
        prefix_ids=[1],
        suffix_ids=[],
        fingerprint="",
        files={},
    )
    rows = sum(s.rows for s in shards)
    positions = sum(s.positions for s in shards)
    real = sum(s.real_tokens for s in shards)
    totals = Totals(
        records_read=rows,
        rows_written=rows,
        positions=positions,
        real_tokens=real,
        label_tokens=real,
        shape=ShapeStats(documents_written=rows),
    )
    return Manifest(
        config=RecordedConfig.from_build(config),
        tokenizer=tokenizer,
        inputs=(),
        shards=tuple(shards),
        totals=totals,
        fill=Fill("pad", rows, rows, positions, real),
    )


def main() -> None:
    """Parse arguments, write the data, inspect it and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=100_000)
    parser.add_argument("--formats", default="arrow,parquet")
    parser.add_argument(
        "--sample", type=int, action="append", default=[], help="also time --sample N (repeatable)"
    )
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary dir)")
    args = parser.parse_args()

    header = f"{'format':8} {'rows':>10} {'positions':>14} {'seconds':>8} {'Mpos/s':>8} {'ok':>4}"
    lines = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for fmt in args.formats.split(","):
            directory = Path(tmp) / fmt
            directory.mkdir()
            written = time.perf_counter()
            write_shards(directory, fmt, args.rows, args.width, args.shard_rows)
            written = time.perf_counter() - written
            runs = [
                ("all", maskprep.InspectOptions()),
                ("all, --no-hash-check", maskprep.InspectOptions(check_hashes=False)),
            ]
            for n in args.sample:
                runs.append((f"sample {n}", maskprep.InspectOptions(sample=n)))
            for label, options in runs:
                started = time.perf_counter()
                result = maskprep.inspect(str(directory), options)
                seconds = time.perf_counter() - started
                positions = result.stats.positions
                lines.append(
                    f"{fmt:8} {result.stats.rows:>10,} {positions:>14,} {seconds:>8.2f} "
                    f"{positions / seconds / 1e6:>8.1f} {'yes' if result.ok else 'NO':>4}"
                    f"   ({label}; writing took {written:.1f} s)"
                )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(header)
    print("\n".join(lines))
    print(f"peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
