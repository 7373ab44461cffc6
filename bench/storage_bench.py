"""Throughput of maskprep.storage to local disk and to an S3 server on loopback.

``python bench/storage_bench.py [--mb 64] [--repeat 3] [--part-mb 50]``

Starts moto in server mode (tests/s3_server.py) on 127.0.0.1, then writes and reads ``--mb`` MB
of random bytes through the storage layer, on local disk (a temporary directory) and on S3, and
prints one row per operation: the median of ``--repeat`` runs in seconds and MB/s.

- atomic write: ``storage.write`` in 1 MB writes, sha256 on the way, committed (local: temporary
  file, fsync, rename; S3: multipart upload of ``--part-mb`` parts, completed on commit);
- streaming read: ``storage.open_read``, read in 1 MB chunks to the end;
- ranged read: 64 reads of 1 MB at random offsets with ``storage.read_range`` (one ranged GET each);
- copy: ``storage.copy`` within the store (S3: server-side CopyObject; local: streamed + hashed).

Reference rows: sha256 alone over the same bytes; a plain ``open``/``write``/``fsync`` with and
without sha256 (what the shard writer does today); on S3 the same write and ranged reads with
s3fs called directly (no storage layer), and ranged reads of 4 KB (per-request cost).
moto keeps objects in its own process memory and shares the machine's cores with the client, so
the S3 rows measure the client path and the protocol, not a real network or real disks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from s3_server import FOREIGN_AWS_VARIABLES, S3Server  # noqa: E402

from maskprep import storage  # noqa: E402

MB = 1 << 20
RANGES = 64


def timed(run: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write(target: storage.Location, data: bytes) -> None:
    with storage.write(target) as sink:
        view = memoryview(data)
        for start in range(0, len(data), MB):
            sink.write(view[start : start + MB])


def stream(target: storage.Location) -> None:
    with storage.open_read(target) as handle:
        while handle.read(MB):
            pass


def ranged(target: storage.Location, size: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for _ in range(RANGES):
        start = rng.randrange(0, size - MB)
        assert len(storage.read_range(target, start, start + MB)) == MB


def tiny_ranges(target: storage.Location, size: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for _ in range(RANGES):
        start = rng.randrange(0, size - 4096)
        storage.read_range(target, start, start + 4096)


def plain_write(path: str, data: bytes, digest: bool = False) -> None:
    sha = hashlib.sha256()
    with open(path, "wb") as handle:
        view = memoryview(data)
        for start in range(0, len(data), MB):
            handle.write(view[start : start + MB])
            if digest:
                sha.update(view[start : start + MB])
        handle.flush()
        os.fsync(handle.fileno())


def raw_s3fs_write(fs: object, path: str, data: bytes) -> None:
    with fs.open(path, "wb") as handle:  # type: ignore[attr-defined]
        view = memoryview(data)
        for start in range(0, len(data), MB):
            handle.write(view[start : start + MB])


def raw_s3fs_ranges(fs: object, path: str, size: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for _ in range(RANGES):
        start = rng.randrange(0, size - MB)
        fs.cat_file(path, start=start, end=start + MB)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="object size in MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part-mb", type=int, default=50, help="S3 multipart part size")
    args = parser.parse_args()
    data = os.urandom(args.mb * MB)
    size = len(data)
    rows: list[tuple[str, str, float, float]] = []

    def row(target: str, operation: str, seconds: float, megabytes: float = args.mb) -> None:
        rows.append((target, operation, seconds, megabytes / seconds))

    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        row("-", "sha256 alone", timed(lambda: hashlib.sha256(data).hexdigest(), args.repeat))
        plain = str(scratch_path / "plain.bin")
        row("local", "plain open+write+fsync", timed(lambda: plain_write(plain, data), args.repeat))
        seconds = timed(lambda: plain_write(plain, data, digest=True), args.repeat)
        row("local", "plain write+fsync+sha256", seconds)

        with S3Server.start(scratch_path) as server:
            for name in FOREIGN_AWS_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(server.client_env(scratch_path))  # a script, not library code
            import boto3

            boto3.client("s3").create_bucket(Bucket="bench")
            options = storage.parse_option_items([f"s3:default_block_size={args.part_mb * MB}"])
            local_dir = scratch_path / "local"
            local_dir.mkdir()
            targets = {
                "local": storage.parse_location(str(local_dir)),
                "s3 (moto)": storage.parse_location("s3://bench/out", options),
            }
            for label, base in targets.items():
                obj = base.join("object.bin")
                seconds = timed(lambda o=obj: write(o, data), args.repeat)
                row(label, "atomic write (+sha256)", seconds)
                assert storage.stat(obj).size == size
                row(label, "streaming read", timed(lambda o=obj: stream(o), args.repeat))
                row(
                    label,
                    f"ranged read ({RANGES} x 1 MB)",
                    timed(lambda o=obj: ranged(o, size), args.repeat),
                    RANGES,
                )
                seconds = timed(lambda o=obj: tiny_ranges(o, size), args.repeat)
                row(label, f"ranged read ({RANGES} x 4 KB)", seconds, RANGES * 4096 / MB)
                if not base.is_local:
                    from maskprep.storage.location import filesystem

                    fs = filesystem(base)
                    raw = f"{base.path}/raw.bin"
                    seconds = timed(lambda f=fs, r=raw: raw_s3fs_write(f, r, data), args.repeat)
                    row(label, "raw s3fs write (reference)", seconds)
                    seconds = timed(lambda f=fs, r=raw: raw_s3fs_ranges(f, r, size), args.repeat)
                    row(label, f"raw s3fs ranges ({RANGES} x 1 MB)", seconds, RANGES)
                copy_label = "server-side copy" if not base.is_local else "copy (streamed)"
                row(
                    label,
                    copy_label,
                    timed(lambda o=obj, b=base: storage.copy(o, b.join("copy.bin")), args.repeat),
                )

    print(
        f"maskprep.storage, {args.mb} MB object, median of {args.repeat}, "
        f"S3 part size {args.part_mb} MB; {platform.node()} ({os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}"
    )
    print(f"{'target':<10} {'operation':<28} {'seconds':>9} {'MB/s':>9}")
    for target, operation, seconds, rate in rows:
        print(f"{target:<10} {operation:<28} {seconds:>9.3f} {rate:>9.1f}")


if __name__ == "__main__":
    main()
