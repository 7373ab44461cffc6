"""``--engine ray`` across nodes, losing one mid-build: a transcript anyone can rerun.

``python bench/ray_node_loss.py [--workers 2] [--parts 4] [--records 6000] [--shard-rows 100]
[--no-kill] [--all-shards]``

Simulates a multi-node Ray cluster on this machine with ``ray.cluster_utils.Cluster``: a head
with no CPUs (so no part runs there) and ``--workers`` worker nodes of one CPU each, every node
its own raylet. Starts an S3 server on loopback (moto, tests/s3_server.py), puts a generated
JSONL corpus there and runs ``build_with_ray`` (what ``maskprep build s3://… --engine ray -o
s3://…`` runs) from the S3 input to an S3 output. Meanwhile it watches the parts on the store:
as soon as a part has written its first shard and no manifest (it is demonstrably mid-build),
it reads the part's writer record (``.maskprep-writer-<id>.json``, which names the writing
process), finds the node that process belongs to and loses that node (its processes killed,
then ``Cluster.remove_node``). Ray reruns the lost part on a surviving node at once (no lease to
wait for), which resumes the shards the dead attempt finished.

Then it compares the output, shard by shard (sha256 of the bytes and row count), with a
single-machine build of the same corpus and config (the same parts built locally one after the
other, merged), checks the manifest is there, compares the rows with a plain local build (no
parts), and shows that the comparison catches a difference (a local build of a corpus with one
record changed). Prints a transcript (Ray's own messages, marked ``(raylet)``, say when it
retries the task); exit 0 when everything matched, 1 otherwise. ``--no-kill`` runs the same
build without losing a node.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from maskprep import (  # noqa: E402
    BuildConfig,
    OutputConfig,
    PartSpec,
    ShapeConfig,
    SourceConfig,
    TokenizerConfig,
    build,
)
from maskprep.output.names import MANIFEST_NAME, is_writer_name  # noqa: E402

TOKENIZER = ROOT / "sample_data" / "tokenizer"
#: Shards shown at the start of the comparison table (all with --all-shards).
SHOWN = 3
WORDS = tuple(
    [
        "padding",
        "must",
        "never",
        "leak",
        "into",
        "attention",
        "while",
        "labels",
        "of",
        "minus",
        "one",
        "hundred",
        "are",
        "ignored",
        "by",
        "the",
        "loss",
        "and",
        "a",
        "packed",
        "row",
        "holds",
        "several",
        "documents",
        "that",
        "must",
        "not",
        "see",
        "each",
        "other",
    ]
)


@dataclass(frozen=True)
class Shard:
    """One shard as compared: its name, the sha256 of its bytes and its row count."""

    name: str
    sha256: str
    rows: int


@dataclass
class NodeLossRun:
    """What one run saw; ``lines`` is the transcript."""

    workers: dict[str, str] = field(default_factory=dict)  # node id -> label
    killed: str | None = None  # label of the node removed
    killed_part: int | None = None
    killed_after_shards: int = 0
    part_runs: dict[int, object] = field(default_factory=dict)  # part index -> PartRun
    output: list[Shard] = field(default_factory=list)
    reference: list[Shard] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    control_differences: list[str] = field(default_factory=list)
    manifest_present: bool = False
    #: The output's rows, in order, are those of a plain build (no parts) of the same corpus.
    rows_match_plain: bool = False
    lines: list[str] = field(default_factory=list)

    @property
    def retried_elsewhere(self) -> bool:
        """The lost part finished, on a node other than the one removed."""
        if self.killed_part is None or self.killed_part not in self.part_runs:
            return False
        finished_on = self.workers.get(self.part_runs[self.killed_part].node_id)  # type: ignore[attr-defined]
        return finished_on is not None and finished_on != self.killed

    @property
    def passed(self) -> bool:
        """Everything the run set out to show held."""
        identical = bool(self.output) and not self.differences and self.manifest_present
        identical = identical and self.rows_match_plain
        killed_ok = self.killed is None or self.retried_elsewhere
        return identical and killed_ok and bool(self.control_differences)


def corpus_lines(records: int, changed: int | None = None) -> list[str]:
    """A deterministic JSONL corpus of ``records`` documents of varied length; ``changed``: the
    index of one record whose text differs (the negative control)."""
    import json

    lines = []
    for i in range(records):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + (i * 13) % 40)]
        text = f"document {i}: " + " ".join(words)
        if i == changed:
            text += " (changed)"
        lines.append(json.dumps({"text": text}))
    return lines


def make_config(inputs: list[str], output: str, shard_rows: int, part: PartSpec | None = None):
    """The build every run here makes: pad to 64 with EOS, ``shard_rows`` rows a shard."""
    return BuildConfig(
        source=SourceConfig(inputs=tuple(inputs)),
        tokenizer=TokenizerConfig(name_or_path=str(TOKENIZER), pad_token="eos", add_eos=True),
        shape=ShapeConfig(max_length=64),
        output=OutputConfig(directory=output, shard_rows=shard_rows),
        part=part,
    )


def local_shards(directory: Path) -> list[Shard]:
    """The shards a local output's manifest lists, hashed from disk."""
    import json

    import pyarrow.parquet as pq

    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    shards = []
    for entry in manifest["shards"]:
        path = directory / entry["path"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shards.append(Shard(entry["path"], digest, pq.ParquetFile(path).metadata.num_rows))
    return shards


def s3_shards(s3, bucket: str, prefix: str) -> tuple[list[Shard], bool]:
    """The shards an S3 output's manifest lists, hashed from the bytes the store returns, and
    whether the manifest is there."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST_NAME}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return [], False
    shards = []
    for entry in json.loads(body)["shards"]:
        data = s3.get_object(Bucket=bucket, Key=f"{prefix}/{entry['path']}")["Body"].read()
        rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
        shards.append(Shard(entry["path"], hashlib.sha256(data).hexdigest(), rows))
    return shards, True


def local_rows(directory: Path) -> list[dict]:
    """Every row of a local output, in order."""
    import pyarrow.parquet as pq

    return [row for shard in local_shards(directory) for row in
            pq.read_table(directory / shard.name).to_pylist()]  # fmt: skip


def s3_rows(s3, bucket: str, prefix: str) -> list[dict]:
    """Every row of an S3 output, in order."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST_NAME}")["Body"].read()
    rows = []
    for entry in json.loads(body)["shards"]:
        data = s3.get_object(Bucket=bucket, Key=f"{prefix}/{entry['path']}")["Body"].read()
        rows += pq.read_table(pa.BufferReader(data)).to_pylist()
    return rows


def compare(output: list[Shard], reference: list[Shard]) -> list[str]:
    """Every way ``output`` differs from ``reference``, one line each (none: byte-identical)."""
    problems = []
    if len(output) != len(reference):
        problems.append(f"{len(output)} shards, the reference has {len(reference)}")
    for got, want in zip(output, reference, strict=False):
        if got != want:
            problems.append(
                f"{got.name}: {got.rows} rows sha256 {got.sha256[:12]}, the reference's "
                f"{want.name}: {want.rows} rows sha256 {want.sha256[:12]}"
            )
    return problems


def local_reference(
    corpus: Path, workdir: Path, shard_rows: int, parts: int, name: str
) -> list[Shard]:
    """A single-machine build of ``corpus``: its ``parts`` parts built here one after the
    other (the deterministic split every engine uses), merged."""
    from maskprep.distributed.merge import merge

    part_dirs = []
    for index in range(parts):
        directory = workdir / f"{name}.parts" / f"part-{index:05d}"
        build(make_config([str(corpus)], str(directory), shard_rows, PartSpec(index, parts)))
        part_dirs.append(directory)
    merge(part_dirs, workdir / name)
    return local_shards(workdir / name)


def _raylet_pids(cluster, ray_constants) -> dict[int, object]:
    pids = {}
    for node in cluster.worker_nodes:
        for info in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []):
            pids[info.process.pid] = node
    return pids


def node_of_process(pid: int, cluster, ray_constants):
    """The cluster node whose raylet started process ``pid`` (a Ray worker), or ``None``."""
    import psutil

    raylets = _raylet_pids(cluster, ray_constants)
    with contextlib.suppress(psutil.NoSuchProcess):
        for parent in psutil.Process(pid).parents():
            if parent.pid in raylets:
                return raylets[parent.pid]
    return None


def lose_node(cluster, node, ray_constants) -> None:
    """Lose ``node`` as a machine is lost: every process on it killed at once (its raylet's
    workers first: ``remove_node`` alone stops the raylet and leaves a running task to finish),
    then the node removed from the cluster."""
    import psutil

    for raylet in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []):
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(raylet.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
    cluster.remove_node(node, allow_graceful=False)


class NodeKiller:
    """Watches ``PREFIX.parts/`` on the store; removes the node of the first part seen with a
    complete shard and no manifest."""

    def __init__(self, s3, bucket: str, prefix: str, cluster, say: Callable[[str], None]):
        self.s3, self.bucket, self.prefix, self.cluster, self.say = s3, bucket, prefix, cluster, say
        self.killed_node = None
        self.killed_part: int | None = None
        self.shards_at_kill = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> NodeKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _listing(self) -> dict[int, list[str]]:
        parts: dict[int, list[str]] = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}.parts/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                part, _, name = item["Key"][len(self.prefix) + len(".parts/") :].partition("/")
                if part.startswith("part-"):
                    parts.setdefault(int(part[5:]), []).append(name)
        return parts

    def _watch(self) -> None:
        from ray._private import ray_constants

        try:
            while not self._stop.wait(0.02):
                for index, names in sorted(self._listing().items()):
                    shards = [n for n in names if n.startswith("data-")]
                    records = [n for n in names if is_writer_name(n)]
                    if not shards or MANIFEST_NAME in names or not records:
                        continue
                    key = f"{self.prefix}.parts/part-{index:05d}/{records[0]}"
                    try:
                        record = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    except self.s3.exceptions.NoSuchKey:
                        continue  # the part finished (its record went) meanwhile
                    import json

                    pid = json.loads(record)["pid"]
                    node = node_of_process(pid, self.cluster, ray_constants)
                    if node is None:
                        continue
                    lose_node(self.cluster, node, ray_constants)
                    self.killed_node, self.killed_part = node, index
                    self.shards_at_kill = len(shards)
                    self.say(
                        f"part {index} is mid-build on node {node.node_id[:8]} (pid {pid}, "
                        f"{len(shards)} shard(s) written, no manifest): node lost"
                    )
                    return
        except BaseException as exc:  # reported by the caller, never swallowed
            self.error = exc


@contextlib.contextmanager
def cluster_of(workers: int, pythonpath: str) -> Iterator[object]:
    """A head with no CPUs and ``workers`` one-CPU worker nodes, each its own raylet; the
    driver (this process) connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    saved = {key: os.environ.get(key) for key in ("RAY_USAGE_STATS_ENABLED", "PYTHONPATH")}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers start from the raylet's environment: they must import this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p
    )
    # Find a node that stopped answering in about a second, not the default half a minute.
    health = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": health},
    )
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(
    workdir: Path,
    endpoint: str,
    *,
    workers: int = 2,
    parts: int = 4,
    records: int = 6000,
    shard_rows: int = 100,
    kill: bool = True,
    show_all: bool = False,
    say: Callable[[str], None] = print,
) -> NodeLossRun:
    """Run the whole demonstration against the S3 server at ``endpoint`` (credentials from the
    standard AWS variables) and return what it saw."""
    import boto3

    from maskprep import storage
    from maskprep.distributed.ray_engine import build_with_ray

    started = time.monotonic()
    report = NodeLossRun()

    def log(line: str) -> None:
        line = f"[{time.monotonic() - started:6.1f} s] {line}"
        report.lines.append(line)
        say(line)

    s3 = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"node-loss-{os.getpid()}-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    corpus = workdir / "in.jsonl"
    corpus.write_text("\n".join(corpus_lines(records)) + "\n")
    s3.upload_file(str(corpus), bucket, "in.jsonl")
    log(
        f"corpus: {records} JSONL records ({corpus.stat().st_size} bytes) at s3://{bucket}/in.jsonl"
    )
    options = storage.parse_option_items(
        [
            f"s3:endpoint_url={endpoint}",
            f"s3:key={os.environ['AWS_ACCESS_KEY_ID']}",
            f"s3:secret={os.environ['AWS_SECRET_ACCESS_KEY']}",
        ]
    )
    config = make_config([f"s3://{bucket}/in.jsonl"], f"s3://{bucket}/out", shard_rows)

    with cluster_of(workers, str(ROOT)) as cluster:
        report.workers = {
            node.node_id: f"worker-{i + 1}" for i, node in enumerate(cluster.worker_nodes)
        }
        log(f"cluster: head {cluster.head_node.node_id[:8]} (0 CPUs) at {cluster.address}")
        for node_id, label in report.workers.items():
            log(f"  {label} {node_id[:8]}: 1 CPU, its own raylet")

        def on_part(run) -> None:
            report.part_runs[run.index] = run
            label = report.workers.get(run.node_id, run.node_id[:8])
            resumed = f", resumed {run.reused_shards} shard(s)" if run.reused_shards else ""
            log(f"part {run.index} finished on {label} {run.node_id[:8]} (pid {run.pid}){resumed}")

        killer = NodeKiller(s3, bucket, "out", cluster, log) if kill else None
        log(f"build_with_ray: s3://{bucket}/in.jsonl -> s3://{bucket}/out, {parts} parts")
        with killer or contextlib.nullcontext():
            result = build_with_ray(config, parts=parts, storage_options=options, on_part=on_part)
        if killer is not None:
            if killer.error is not None:
                raise killer.error
            if killer.killed_node is not None:
                report.killed = report.workers[killer.killed_node.node_id]
                report.killed_part = killer.killed_part
                report.killed_after_shards = killer.shards_at_kill
        log(
            f"build finished: {result.totals.rows_written} rows in {len(result.shards)} shards, "
            f"{result.elapsed_s:.1f} s"
        )
    if kill:
        if report.killed is None:
            log("no part was seen mid-build: no node was removed")
        elif report.retried_elsewhere:
            run_ = report.part_runs[report.killed_part]  # type: ignore[index]
            log(
                f"part {report.killed_part} was lost with {report.killed}, retried by Ray on "
                f"{report.workers[run_.node_id]}"  # type: ignore[attr-defined]
            )
        else:
            log(f"part {report.killed_part} was NOT retried on another node")

    report.output, report.manifest_present = s3_shards(s3, bucket, "out")
    present = "present" if report.manifest_present else "MISSING"
    log(f"manifest s3://{bucket}/out/{MANIFEST_NAME}: {present}")
    leftovers = s3.list_objects_v2(Bucket=bucket, Prefix="out.parts/").get("KeyCount", 0)
    log(f"parts left under out.parts/: {leftovers}")

    report.reference = local_reference(corpus, workdir, shard_rows, parts, "local")
    report.differences = compare(report.output, report.reference)
    log("shard                 rows  sha256 (S3, Ray)    sha256 (local)      same")
    pairs = list(zip(report.output, report.reference, strict=False))
    for number, (got, want) in enumerate(pairs):
        # The first and last shards, and every one that differs; the rest are counted.
        if got == want and SHOWN <= number < len(pairs) - 1 and not show_all:
            if number == SHOWN:
                log(f"  … {len(pairs) - SHOWN - 1} more shards, shown only where they differ")
            continue
        same = "yes" if got == want else "NO"
        log(f"{got.name:<20} {got.rows:>5}  {got.sha256[:16]}    {want.sha256[:16]}    {same}")
    same_count = sum(got == want for got, want in pairs)
    log(f"{same_count} of {len(report.reference)} shards identical (sha256 and rows)")
    verdict = "byte-identical" if not report.differences else "DIFFERENT: " + report.differences[0]
    log(f"S3 output vs local single-machine build: {verdict}")

    plain = workdir / "plain"
    build(make_config([str(corpus)], str(plain), shard_rows))
    report.rows_match_plain = s3_rows(s3, bucket, "out") == local_rows(plain)
    same_rows = "the same rows, in order" if report.rows_match_plain else "DIFFERENT rows"
    log(f"S3 output vs a plain local build (no parts, other shard boundaries): {same_rows}")

    changed = workdir / "changed.jsonl"
    changed.write_text("\n".join(corpus_lines(records, changed=records // 2)) + "\n")
    control = local_reference(changed, workdir, shard_rows, parts, "control")
    report.control_differences = compare(report.output, control)
    seen = report.control_differences[0] if report.control_differences else "NOTHING (broken)"
    log(f"negative control (record {records // 2} changed): the comparison reports {seen}")
    log("PASS" if report.passed else "FAIL")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (1 CPU each)")
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--shard-rows", type=int, default=100)
    parser.add_argument("--no-kill", action="store_true", help="lose no node")
    parser.add_argument("--all-shards", action="store_true", help="list every shard compared")
    args = parser.parse_args()

    from s3_server import FOREIGN_AWS_VARIABLES, S3Server

    os.environ["HF_HUB_OFFLINE"] = "1"
    for name in FOREIGN_AWS_VARIABLES:
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp, S3Server.start(Path(tmp)) as server:
        os.environ.update(server.client_env(Path(tmp)))
        print(f"S3 server (moto) at {server.endpoint}")
        report = run(
            Path(tmp),
            server.endpoint,
            workers=args.workers,
            parts=args.parts,
            records=args.records,
            shard_rows=args.shard_rows,
            kill=not args.no_kill,
            show_all=args.all_shards,
        )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
