"""``--engine ray`` on a real local Ray cluster of 2 CPUs (skipped where Ray is not installed),
and the clear error where it is not."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, make_config, write_jsonl

from maskprep import ConfigError, DataError, build
from maskprep.cli import main
from maskprep.output.finished import shard_paths
from maskprep.output.names import MANIFEST_NAME

pytestmark = pytest.mark.integration

NO_USAGE_STATS = {"RAY_USAGE_STATS_ENABLED": "0"}


def _rows(directory):
    return pq.read_table(shard_paths(directory)).to_pylist()


@pytest.fixture
def corpus_file(tmp_path, corpus):
    texts = [f"{t} ({i})" for i, t in enumerate(corpus * 5)]
    return write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])


def test_without_ray_the_engine_is_a_clear_error(tmp_path, corpus_file, llama_like, monkeypatch):
    from maskprep.distributed import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    config = make_config([corpus_file], llama_like, tmp_path / "out", pad_token="eos")
    with pytest.raises(ConfigError, match=r"needs Ray, which is not installed.*maskprep\[ray\]"):
        ray_engine.build_with_ray(config)


def test_without_ray_the_cli_exits_2(tmp_path, corpus_file, llama_like, monkeypatch, runner):
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["build", str(corpus_file), "-t", str(llama_like), "-o", str(tmp_path / "o")]
    result = runner.invoke(
        main, [*args, "--max-length", "16", "--pad-token", "eos", "--engine", "ray"]
    )
    assert result.exit_code == 2
    assert "pip install 'maskprep[ray]'" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def cluster():
    """A private local cluster with 2 CPUs whose workers import this checkout."""
    ray = pytest.importorskip("ray")
    # Workers inherit the environment from the raylet: this checkout on their path, and no
    # usage statistics sent anywhere (the machine is offline).
    wanted = {"PYTHONPATH": str(ROOT), **NO_USAGE_STATS}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_ray_build_has_the_rows_of_a_local_build(cluster, tmp_path, corpus_file, llama_like):
    from maskprep.distributed.ray_engine import build_with_ray

    options = dict(pad_token="eos", max_length=12, shard_rows=6, strategy="bucket")
    local = build(make_config([corpus_file], llama_like, tmp_path / "local", **options))
    out = tmp_path / "ray"
    result = build_with_ray(make_config([corpus_file], llama_like, out, **options), parts=3)
    assert _rows(out) == _rows(tmp_path / "local")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["engine"] == "ray"
    assert manifest["totals"] == local.manifest.as_dict()["totals"]
    assert manifest["fill"] == local.manifest.as_dict()["fill"]
    assert set(manifest) - set(local.manifest.as_dict()) == {"engine", "merged_from"}
    assert [p["index"] for p in manifest["merged_from"]] == [0, 1, 2]
    assert result.totals.rows_written == local.totals.rows_written
    assert not (tmp_path / "ray.parts").exists()
    assert cluster.is_initialized()  # a cluster it did not start is left running


def test_ray_build_writes_its_parts_and_output_to_s3(
    cluster, s3_server, s3_bucket, tmp_path, corpus_file, llama_like
):
    """Workers read the input from the store and write their parts there; the driver merges
    server-side. The store is named by explicit storage options (workers do not inherit the
    driver's AWS variables), as --storage-option gives them."""
    import boto3
    import pyarrow.parquet as pq

    from maskprep import storage
    from maskprep.distributed.ray_engine import build_with_ray

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="in.jsonl", Body=corpus_file.read_bytes())
    options = storage.parse_option_items(
        [
            f"s3:endpoint_url={s3_server.endpoint}",
            f"s3:key={os.environ['AWS_ACCESS_KEY_ID']}",
            f"s3:secret={os.environ['AWS_SECRET_ACCESS_KEY']}",
        ]
    )
    shape = dict(pad_token="eos", max_length=12, shard_rows=6)
    config = make_config([f"s3://{s3_bucket}/in.jsonl"], llama_like, f"s3://{s3_bucket}/out",
                         **shape)  # fmt: skip
    result = build_with_ray(config, parts=2, storage_options=options)
    assert result.output == f"s3://{s3_bucket}/out"
    local = build(make_config([corpus_file], llama_like, tmp_path / "local", **shape))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert not [k for k in keys if k.startswith("out.parts/")], keys  # parts removed
    rows = []
    for shard in result.manifest.shards:
        body = s3.get_object(Bucket=s3_bucket, Key=f"out/{shard.path}")["Body"].read()
        rows += pq.read_table(pa_buffer(body)).to_pylist()
    assert rows == _rows(tmp_path / "local")
    assert result.manifest.totals == local.manifest.totals


def pa_buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(data)


def test_ray_pack_is_per_part_and_part_errors_are_one_line(
    cluster, tmp_path, corpus_file, llama_like
):
    from maskprep.distributed.ray_engine import build_with_ray

    options = dict(pad_token="eos", max_length=24, strategy="pack")
    out = tmp_path / "packed"
    result = build_with_ray(make_config([corpus_file], llama_like, out, **options), parts=2)
    assert result.manifest.as_dict()["pack_scope"] == "part"
    local = build(make_config([corpus_file], llama_like, tmp_path / "local", **options))
    assert result.totals.real_tokens == local.totals.real_tokens

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}] * 10 + ["{not json"])
    with pytest.raises(DataError) as caught:
        build_with_ray(make_config([bad], llama_like, tmp_path / "bad", pad_token="eos"), parts=2)
    assert str(caught.value).startswith(f"{bad}:11: invalid JSON")
    assert "\n" not in str(caught.value)


def test_ray_cli_connects_to_ray_address_and_leaves_the_cluster_up(
    cluster, tmp_path, corpus_file, llama_like
):
    address = cluster.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": address, **NO_USAGE_STATS}
    out = tmp_path / "cli"
    args = ["build", str(corpus_file), "-t", str(llama_like), "-o", str(out), "--max-length"]
    args += ["16", "--pad-token", "eos", "--engine", "ray", "--num-parts", "2", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "maskprep", *args], capture_output=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["totals"]["records_read"] == 40
    assert b"maskprep: part" not in done.stderr  # --json is quiet on stderr too
    assert cluster.cluster_resources().get("CPU") == 2  # still up after the CLI disconnected
    # Without --json, each part says where it was built as it finishes.
    args = [a for a in args if a != "--json"] + ["--overwrite"]
    done = subprocess.run(
        [sys.executable, "-m", "maskprep", *args], capture_output=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = [line for line in done.stderr.decode().splitlines() if "maskprep: part" in line]
    assert sorted(line.split()[2] for line in lines) == ["0", "1"], lines
    assert all(" built on node " in line for line in lines), lines


def test_ray_unusable_tokenizer_is_a_one_line_error_before_any_work(cluster, tmp_path, corpus_file):
    from maskprep.distributed.ray_engine import build_with_ray

    config = make_config([corpus_file], tmp_path / "no-such-tokenizer", tmp_path / "out")
    with pytest.raises(ConfigError) as caught:
        build_with_ray(config, parts=2)
    assert "no-such-tokenizer" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out.parts").exists()


def _leave_parts(out, config, count: int, built: list[int]):
    """What a Ray build of ``config`` into ``out`` that died after its parts ``built`` leaves:
    the engine's parts directory, with those parts finished."""
    from maskprep import PartSpec
    from maskprep.distributed.ray_engine import open_parts_root, part_configs
    from maskprep.storage import parse_location

    root = open_parts_root(parse_location(str(out)), config, count)
    for index, part in enumerate(part_configs(config, count, root)):
        if index in built:
            build(dataclasses.replace(part, part=PartSpec(index, count)))
    return root


def test_ray_resume_reuses_finished_parts(cluster, tmp_path, corpus_file, llama_like):
    from maskprep.distributed.ray_engine import build_with_ray

    out = tmp_path / "out"
    config = make_config([corpus_file], llama_like, out, pad_token="eos")
    _leave_parts(out, config, 3, built=[1])
    with pytest.raises(ConfigError, match=r"out\.parts: holds the parts of an unfinished Ray"):
        build_with_ray(config, parts=3)  # the left-over parts are not silently replaced
    resumed = make_config([corpus_file], llama_like, out, pad_token="eos", resume=True)
    build_with_ray(resumed, parts=3)
    local = build(make_config([corpus_file], llama_like, tmp_path / "local", pad_token="eos"))
    assert _rows(out) == _rows(tmp_path / "local")
    assert (
        json.loads((out / MANIFEST_NAME).read_text())["totals"]
        == local.manifest.as_dict()["totals"]
    )
    assert not (tmp_path / "out.parts").exists()  # its own: removed once merged


def test_ray_workers_read_the_tokenizer_cache_the_driver_filled(
    cluster, tmp_path, corpus_file, llama_like
):
    from conftest import transformers_only

    from maskprep.distributed.ray_engine import build_with_ray
    from maskprep.tokenizing.cache import TokenizerCache

    llama_like = transformers_only(llama_like, tmp_path / "tok")  # one the cache serves
    cache = TokenizerCache(tmp_path / "cache")
    options = dict(pad_token="eos", max_length=12)
    local = build(make_config([corpus_file], llama_like, tmp_path / "local", **options))
    out = tmp_path / "ray"
    build_with_ray(make_config([corpus_file], llama_like, out, **options), parts=2,
                   tokenizer_cache=cache)  # fmt: skip
    assert len(list(cache.directory.glob("*.json"))) == 1
    assert _rows(out) == _rows(tmp_path / "local")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["tokenizer"] == local.manifest.as_dict()["tokenizer"]


def test_a_part_loads_nothing_when_the_cache_holds_the_tokenizer(
    tmp_path, corpus_file, llama_like, monkeypatch
):
    from conftest import transformers_only

    from maskprep import PartSpec
    from maskprep.distributed import ray_engine
    from maskprep.tokenizing import prepare
    from maskprep.tokenizing.cache import TokenizerCache

    llama_like = transformers_only(llama_like, tmp_path / "tok")  # one the cache serves
    cache = TokenizerCache(tmp_path / "cache")
    build(make_config([corpus_file], llama_like, tmp_path / "first", pad_token="eos"),
          tokenizer_cache=cache)  # fmt: skip

    def refuse(config):
        raise AssertionError("the cache holds this tokenizer")

    monkeypatch.setattr(prepare, "load_tokenizer", refuse)
    out = tmp_path / "second"
    part = make_config([corpus_file], llama_like, out, pad_token="eos", part=PartSpec(0, 2))
    run = ray_engine.build_part(part, cache, node_id="n1")
    assert (run.index, run.node_id, run.pid, run.reused_shards) == (0, "n1", os.getpid(), 0)
    assert (out / MANIFEST_NAME).exists()


def test_a_part_whose_worker_dies_is_rerun_and_resumes(cluster, tmp_path, llama_like):
    """The worker building a part is killed (SIGKILL) once it has written a shard: Ray reruns the
    part, the rerun keeps the dead attempt's complete shards, and the output is the local
    build's."""
    import signal
    import threading
    import time

    from maskprep.distributed.ray_engine import build_with_ray

    texts = [f"document {i}: " + "word " * (5 + i % 30) for i in range(4000)]
    corpus = write_jsonl(tmp_path / "big.jsonl", [{"text": t} for t in texts])
    options = dict(pad_token="eos", max_length=24, shard_rows=20)
    out = tmp_path / "ray"
    victim = tmp_path / "ray.parts" / "part-00000"
    killed: list[int] = []

    def kill_part_zero() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            names = {p.name for p in victim.iterdir()} if victim.is_dir() else set()
            if any(n.startswith("data-") for n in names) and MANIFEST_NAME not in names:
                records = [n for n in names if n.startswith(".maskprep-writer-")]
                try:
                    pid = json.loads((victim / records[0]).read_text())["pid"]
                except (IndexError, OSError, ValueError):
                    pid = None  # not written yet, or already gone
                if pid:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
            time.sleep(0.005)

    runs = {}
    watcher = threading.Thread(target=kill_part_zero, daemon=True)
    watcher.start()
    config = make_config([corpus], llama_like, out, **options)
    build_with_ray(config, parts=2, on_part=lambda run: runs.setdefault(run.index, run))
    watcher.join()
    assert killed, "part 0 was never seen mid-build"
    assert runs[0].pid != killed[0]  # finished by another worker process
    assert runs[0].reused_shards >= 1  # and resumed what the dead one finished
    local = build(make_config([corpus], llama_like, tmp_path / "local", **options))
    assert _rows(out) == _rows(tmp_path / "local")
    assert (
        json.loads((out / MANIFEST_NAME).read_text())["totals"]
        == local.manifest.as_dict()["totals"]
    )


def test_ray_overwrite_removes_its_leftover_parts_but_never_foreign_files(
    cluster, tmp_path, corpus_file, llama_like
):
    from maskprep import OutputError
    from maskprep.distributed.ray_engine import build_with_ray

    out = tmp_path / "out"
    # The parts of another build (another max_length) of this output: never resumed by this one.
    other = make_config([corpus_file], llama_like, out, pad_token="eos", max_length=8)
    root = _leave_parts(out, other, 3, built=[1])
    config = make_config([corpus_file], llama_like, out, pad_token="eos", overwrite=True)
    resume = make_config([corpus_file], llama_like, out, pad_token="eos", resume=True)
    with pytest.raises(OutputError, match="holds the parts of another build"):
        build_with_ray(resume, parts=3)
    build_with_ray(config, parts=3)
    build(make_config([corpus_file], llama_like, tmp_path / "local", pad_token="eos"))
    assert _rows(out) == _rows(tmp_path / "local")
    assert not os.path.exists(root.path)

    foreign = tmp_path / "out.parts" / "part-00002" / "notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine")
    with pytest.raises(OutputError, match=r"out\.parts: exists, and was not made by maskprep"):
        build_with_ray(config, parts=3)
    assert foreign.read_text() == "mine"
    assert _rows(out) == _rows(tmp_path / "local")  # the finished output is untouched


def test_ray_never_touches_a_parts_directory_it_did_not_make(
    cluster, tmp_path, corpus_file, llama_like
):
    """An existing OUT.parts that is not the engine's own (no marker) is neither written into
    nor removed, with any option; a symbolic link there is never followed."""
    from maskprep import OutputError
    from maskprep.distributed.ray_engine import build_with_ray

    out = tmp_path / "out"
    mine = tmp_path / "out.parts"
    (mine / "part-00000").mkdir(parents=True)
    (mine / "part-00000" / "keep.txt").write_text("a user's file")
    (mine / "results.csv").write_text("1,2,3")
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        config = make_config([corpus_file], llama_like, out, pad_token="eos", **flags)
        with pytest.raises(OutputError, match=r"out\.parts: exists, and was not made by maskprep"):
            build_with_ray(config, parts=2)
        assert (mine / "results.csv").read_text() == "1,2,3"
        assert (mine / "part-00000" / "keep.txt").read_text() == "a user's file"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(mine)
    mine.symlink_to(elsewhere)
    config = make_config([corpus_file], llama_like, out, pad_token="eos", overwrite=True)
    with pytest.raises(OutputError, match=r"out\.parts: is a symbolic link"):
        build_with_ray(config, parts=2)
    assert list(elsewhere.iterdir()) == []
    # Negative control: without the link, the engine makes its own directory and builds.
    mine.unlink()
    build_with_ray(config, parts=2)
    assert (out / MANIFEST_NAME).exists() and not mine.exists()


def test_ray_never_touches_an_s3_parts_prefix_it_did_not_make(
    s3_server, s3_bucket, tmp_path, corpus_file, llama_like
):
    """The same on S3, checked before the cluster is started: a prefix OUT.parts/ holding
    anything but the engine's marker is left as it is."""
    import boto3

    from maskprep import OutputError, storage
    from maskprep.distributed.ray_engine import open_parts_root

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="out.parts/part-00000/data-00000.parquet", Body=b"x")
    out = storage.parse_location(f"s3://{s3_bucket}/out")
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        config = make_config([corpus_file], llama_like, out.url, pad_token="eos", **flags)
        with pytest.raises(OutputError, match=r"out\.parts: exists, and was not made by"):
            open_parts_root(out, config, 2)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["out.parts/part-00000/data-00000.parquet"]


def test_a_rerun_part_beside_a_dead_attempts_record_builds_at_once_on_s3(
    s3_server, s3_bucket, tmp_path, corpus_file, llama_like
):
    """A part rerun after its node died finds the dead attempt's record on the store: it does
    not wait (there is no lease to lapse), and the record is swept when the part commits."""
    import time

    from maskprep import PartSpec, storage
    from maskprep.distributed.ray_engine import build_part

    part = storage.parse_location(f"s3://{s3_bucket}/out.parts/part-00000")
    dead = part.join(".maskprep-writer-00000000000000cd.json")
    storage.put(dead, json.dumps({"host": "lost-node", "pid": 7}).encode())
    config = make_config([corpus_file], llama_like, part.url, pad_token="eos",
                         part=PartSpec(0, 2), resume=True)  # fmt: skip
    started = time.monotonic()
    run = build_part(config, node_id="n2")
    assert time.monotonic() - started < 60
    assert (run.index, run.node_id, run.reused_shards) == (0, "n2", 0)
    assert not storage.exists(dead)
    local = build(make_config([corpus_file], llama_like, tmp_path / "p0", pad_token="eos",
                              part=PartSpec(0, 2)))  # fmt: skip
    manifest = json.loads(storage.read_bytes(part.join(MANIFEST_NAME)))
    assert manifest["totals"] == local.manifest.as_dict()["totals"]


# ----------------------------------------------------------------------------- signals


def test_a_private_cluster_starts_marked_with_environments_no_title_overwrites(monkeypatch):
    from maskprep.distributed import reaper

    monkeypatch.setenv("SPT_NOENV", "0")
    monkeypatch.delenv(reaper.MARKER, raising=False)
    seen: dict[str, str] = {}

    class Ray:  # what private_cluster asks of ray, with nothing started
        def init(self, **options) -> None:
            seen.update(os.environ)

        def get_runtime_context(self):
            raise RuntimeError("no node")

        def shutdown(self) -> None:
            pass

    with reaper.private_cluster(Ray()):
        assert reaper.MARKER not in os.environ  # only what ray.init starts carries it
    assert seen["SPT_NOENV"] == "1"
    assert len(seen[reaper.MARKER]) == 16
    assert os.environ["SPT_NOENV"] == "0"
    assert reaper.MARKER not in os.environ


def test_sigterm_after_a_private_cluster_shut_down_still_reaches_the_callers_handler(tmp_path):
    """``ray.shutdown`` sets SIGTERM's default action under Python's handler: a SIGTERM in the
    merge after it killed the build (-15) instead of stopping it cleanly (143)."""
    pytest.importorskip("ray")
    script = tmp_path / "after_shutdown.py"
    script.write_text(
        "import os, signal, ray\n"
        "from maskprep.distributed.reaper import private_cluster\n"
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda number, frame: got.append(number))\n"
        "with private_cluster(ray, num_cpus=1, include_dashboard=False, log_to_driver=False):\n"
        "    pass\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('handled', got)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), **NO_USAGE_STATS}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split("\n")[-2] == "handled [15]"


def _processes_with(variable: str, value: str) -> list[str]:
    """The processes (pid and name) that carry ``variable=value`` in their environment."""
    needle = f"{variable}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    with open(f"/proc/{name}/comm") as comm:
                        found.append(f"{name} {comm.read().strip()}")
        except OSError:
            continue
    return found


def _descendants(root: int) -> dict[int, str]:
    """The processes below ``root`` now, by parent pid: pid to its start time (so that a pid
    the kernel hands out again later is not taken for the same process)."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        parents[int(name)], started[int(name)] = int(fields[1]), fields[19]
    below: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in below:
                below[pid] = started[pid]
                frontier.append(pid)
    return below


def _alive(processes: dict[int, str]) -> list[str]:
    """Those of ``processes`` (pid to start time) still running: pid and name."""
    alive = []
    for pid, started in processes.items():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                head, tail = handle.read().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if fields[19] == started and fields[0] != "Z":
            alive.append(f"{pid} {head.split('(', 1)[1]}")
    return alive


def _titled(processes) -> dict[int, str]:
    """Those of ``processes`` that renamed themselves ``ray::…``: pid to name."""
    titled = {}
    for pid in processes:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as comm:
            name = comm.read().strip()
            if name.startswith("ray::"):
                titled[pid] = name
    return titled


def _environment_of(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        return handle.read().split(b"\0")[:-1]


def _ray_build_stopped_by(signum: int, tmp_path, llama_like) -> tuple[int, list[str]]:
    """A CLI Ray build on its own private cluster, sent ``signum`` once a part has written a
    shard and Ray's processes have renamed themselves; its exit status, and the processes of
    that build still alive 15 s later: those that carry the test's marker in their environment,
    and those that were below the build before the signal. Before the signal, every process of
    the cluster must show the reaper's marker in an intact environment (setproctitle wiped it
    from Ray's agents once, and they lived on after a killed build)."""
    import time
    import uuid

    pytest.importorskip("ray")
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to find the cluster's processes")
    texts = [f"document {i}: " + "word " * (5 + i % 30) for i in range(20000)]
    corpus = write_jsonl(tmp_path / "big.jsonl", [{"text": t} for t in texts])
    marker = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_RAY_BUILD": marker, **NO_USAGE_STATS}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "out"
    args = ["build", str(corpus), "-t", str(llama_like), "-o", str(out), "--max-length", "32",
            "--pad-token", "eos", "--engine", "ray", "--num-parts", "2", "--shard-rows", "500",
            "-q"]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "maskprep", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    part = tmp_path / "out.parts" / "part-00000"
    titled: dict[int, str] = {}  # the processes setproctitle renamed (agents, workers): pid, name
    deadline = time.monotonic() + 180
    # Both parts' workers and an agent renamed, and a shard written: the build is under way.
    while len(titled) < 3 or not (part.is_dir() and any(part.glob("data-*"))):
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"no shard, or too few ray:: processes: {titled}"
        for pid, name in _titled(_descendants(child.pid)).items():
            with contextlib.suppress(OSError):  # a worker may come and go meanwhile
                environment = _environment_of(pid)
                assert all(environment), f"{pid} {name}: its title overwrote its environment"
                assert any(entry.startswith(b"MASKPREP_RAY_CLUSTER=") for entry in environment)
                titled[pid] = name
        time.sleep(0.2)
    assert len(_processes_with("TEST_RAY_BUILD", marker)) > 2  # the driver and its cluster
    cluster = _descendants(child.pid)
    child.send_signal(signum)
    child.wait(timeout=120)
    print(child.stderr.read().decode()[-3000:])  # shown by pytest when an assertion fails
    child.stderr.close()

    def left() -> list[str]:
        return sorted(set(_processes_with("TEST_RAY_BUILD", marker)) | set(_alive(cluster)))

    deadline = time.monotonic() + 15
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    return child.returncode, left()


def test_a_killed_ray_driver_leaves_no_process_of_the_cluster_it_started(tmp_path, llama_like):
    import signal

    code, left = _ray_build_stopped_by(signal.SIGKILL, tmp_path, llama_like)
    assert code == -signal.SIGKILL
    assert left == []


def test_sigterm_stops_a_ray_build_as_a_local_one_with_exit_143(tmp_path, llama_like):
    import signal

    code, left = _ray_build_stopped_by(signal.SIGTERM, tmp_path, llama_like)
    assert code == 143
    assert left == []
