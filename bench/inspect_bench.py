"""Time ``maskprep.inspect`` on synthetic shards: ``python bench/inspect_bench.py [--rows N]``.

Writes ``--rows`` right-padded rows of ``--width`` positions (random lengths, pad == eos, EOS
trained) as Arrow and/or Parquet shards of ``--shard-rows`` rows into a temporary directory, then
inspects them and prints one line per format: rows, positions, seconds, positions per second and
peak memory. Writing the data is not timed.

``--memory-rows 200000,2000000`` adds the memory check: ``python -m maskprep inspect`` of one
narrow Parquet shard (8 positions a row, where what is kept per row weighs most) of each size,
each in a fresh process, with its peak RSS and the growth per million rows between the first and
the last. Inspect keeps counts and the first offending rows, so the growth should be near zero.

``--s3`` also uploads each format's directory to an S3-protocol server on loopback (moto, started
here as the tests start it: ``tests/s3_server.py``) and inspects ``s3://bench/FORMAT`` the same
ways, adding to each row the client's CPU seconds, the server's, and the requests the server saw
(GET and HEAD, from its log): where the gap to the local row goes.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
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
from maskprep.output.manifest import Manifest, RecordedConfig, Totals, write_manifest
from maskprep.output.shards import ShardInfo, sha256_file
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


ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(*args: str) -> float:
    """Peak resident memory of ``python -m maskprep ARGS`` (this checkout), from a fresh parent."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "assert done.returncode == 0, done.returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", probe, sys.executable, "-m", "maskprep", *args]
    done = subprocess.run(command, capture_output=True, env=env, check=True, text=True)
    return int(done.stdout) / 1024


def memory_check(tmp: Path, sizes: list[int]) -> list[str]:
    """Peak RSS of inspecting one narrow shard of each size, and the growth per million rows."""
    lines = [f"{'memory':8} {'rows':>10} {'peak RSS MB':>14}"]
    peaks = []
    for rows in sizes:
        path = tmp / f"narrow-{rows}.parquet"
        batch = synthetic_batch(rows, 8, np.random.default_rng(0))
        pq.write_table(pa.Table.from_batches([batch]), path, row_group_size=1 << 16)
        peaks.append(peak_rss_mb("inspect", str(path)))
        lines.append(f"{'narrow':8} {rows:>10,} {peaks[-1]:>14,.0f}")
        path.unlink()
    if len(sizes) > 1:
        growth = (peaks[-1] - peaks[0]) / ((sizes[-1] - sizes[0]) / 1e6)
        lines.append(f"growth: {growth:,.1f} MB per million rows ({growth:.0f} bytes a row)")
    return lines


class S3Bench:
    """moto on loopback, the client variables set in this process, a bucket ``bench``."""

    BUCKET = "bench"

    def __init__(self, workdir: Path) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from s3_server import FOREIGN_AWS_VARIABLES, S3Server

        (workdir / "moto").mkdir()
        (workdir / "aws").mkdir()
        self.server = S3Server.start(workdir / "moto")
        for name in FOREIGN_AWS_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(self.server.client_env(workdir / "aws"))
        import boto3

        self.client = boto3.client("s3")
        self.client.create_bucket(Bucket=self.BUCKET)

    def upload(self, directory: Path) -> str:
        """Every file of ``directory`` under ``s3://bench/NAME/``; the URL."""
        for path in sorted(directory.iterdir()):
            self.client.upload_file(str(path), self.BUCKET, f"{directory.name}/{path.name}")
        return f"s3://{self.BUCKET}/{directory.name}"

    def requests(self) -> int:
        """GET and HEAD requests the server has logged so far."""
        return self.server.requests("GET|HEAD")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def timed_inspect(where: str, options: maskprep.InspectOptions, s3: S3Bench | None) -> str:
    """One inspect of ``where``: the table's columns (and, with a server, its costs)."""
    requests = s3.requests() if s3 else 0
    server = s3.cpu_seconds() if s3 else 0.0
    cpu = time.process_time()
    started = time.perf_counter()
    result = maskprep.inspect(where, options)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    positions = result.stats.positions
    line = (
        f"{result.stats.rows:>10,} {positions:>14,} {seconds:>8.2f} "
        f"{positions / seconds / 1e6:>8.1f} {'yes' if result.ok else 'NO':>4} {cpu:>7.2f}"
    )
    if s3 is not None and where.startswith("s3://"):
        line += f" {s3.cpu_seconds() - server:>10.2f} {s3.requests() - requests:>9,}"
    return line


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
    parser.add_argument(
        "--memory-rows", default="", help="comma-separated row counts for the memory check"
    )
    parser.add_argument(
        "--s3", action="store_true", help="also inspect the shards on an S3 server on loopback"
    )
    args = parser.parse_args()

    header = (
        f"{'where':8} {'format':8} {'rows':>10} {'positions':>14} {'seconds':>8} {'Mpos/s':>8} "
        f"{'ok':>4} {'CPU s':>7}" + (f" {'server CPU':>10} {'requests':>9}" if args.s3 else "")
    )
    lines = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        s3 = S3Bench(Path(tmp)) if args.s3 else None
        if args.memory_rows:
            sizes = [int(n) for n in args.memory_rows.split(",")]
            print("\n".join(memory_check(Path(tmp), sizes)))
        for fmt in (f for f in args.formats.split(",") if f):
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
            places = [("local", str(directory))]
            if s3 is not None:
                places.append(("s3", s3.upload(directory)))
            for label, options in runs:
                for place, where in places:
                    row = timed_inspect(where, options, s3)
                    lines.append(
                        f"{place:8} {fmt:8} {row}   ({label}; writing took {written:.1f} s)"
                    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(header)
    print("\n".join(lines))
    print(f"peak RSS {peak_mb:,.0f} MB")
    if s3 is not None:
        s3.server.stop()


if __name__ == "__main__":
    main()
