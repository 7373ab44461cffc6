"""``--engine ray`` across nodes: a real multi-node Ray cluster simulated on this machine
(``ray.cluster_utils.Cluster``, every node its own raylet), writing to a real S3 server, losing a
worker node while it builds a part. The run is bench/ray_node_loss.py's, so what this test checks
is what that script prints."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.integration


def _node_loss():
    """bench/ray_node_loss.py as a module (registered first: dataclasses look their module up)."""
    if "ray_node_loss" not in sys.modules:
        path = ROOT / "bench" / "ray_node_loss.py"
        spec = importlib.util.spec_from_file_location("ray_node_loss", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["ray_node_loss"] = module
        spec.loader.exec_module(module)
    return sys.modules["ray_node_loss"]


@pytest.mark.slow
def test_losing_a_node_mid_build_still_gives_the_local_build_bytes(s3_server, tmp_path):
    pytest.importorskip("ray")
    node_loss = _node_loss()
    lines: list[str] = []
    report = node_loss.run(tmp_path, s3_server.endpoint, workers=2, parts=4, say=lines.append)
    transcript = "\n".join(lines)
    # A part was seen mid-build (a shard written, no manifest) on a node, and that node was lost.
    assert report.killed is not None, transcript
    assert report.killed_after_shards >= 1
    # Ray reran it on the other node, which resumed what the dead attempt had finished.
    lost = report.part_runs[report.killed_part]
    assert report.workers[lost.node_id] != report.killed, transcript
    assert lost.reused_shards >= report.killed_after_shards, transcript
    assert sorted(report.part_runs) == [0, 1, 2, 3]
    # The S3 output is the single-machine build, byte for byte, with its manifest.
    assert report.manifest_present
    assert report.output and report.output == report.reference, report.differences
    assert not report.differences
    assert report.rows_match_plain
    # Negative control: the same comparison sees one changed record.
    assert report.control_differences, transcript
    assert report.passed
    assert "retried by Ray on" in transcript and "byte-identical" in transcript


def test_the_shard_comparison_names_what_differs():
    node_loss = _node_loss()
    Shard = node_loss.Shard
    same = [Shard("data-00000.parquet", "a" * 64, 10), Shard("data-00001.parquet", "b" * 64, 3)]
    assert node_loss.compare(same, list(same)) == []
    flipped = [same[0], Shard("data-00001.parquet", "c" * 64, 3)]
    assert node_loss.compare(flipped, same) == [
        "data-00001.parquet: 3 rows sha256 cccccccccccc, the reference's data-00001.parquet: "
        "3 rows sha256 bbbbbbbbbbbb"
    ]
    assert node_loss.compare(same[:1], same) == ["1 shards, the reference has 2"]
    assert node_loss.compare([], same)  # an empty output is never "identical"
