"""Tier 4: the worker pool's placement on the local Ray cluster (2 CPUs). A worker spanning several devices (a judge
with tensor_parallel_size > 1) gets a placement group of that many bundles on one node, and the tasks it starts (the
engine's own workers) run inside that group; only the CPU path can be tested here: the bundles hold CPUs, not GPUs.
More --workers than the nodes hold now start what fits, saying so; a worker no node can hold is refused at once."""

from __future__ import annotations

import time

import pytest

from rlaif.cluster.connect import ClusterError, RayOptions
from rlaif.cluster.pool import Worker, WorkerPool
from rlaif.config.judge import WorkerResources
from rlaif.labeling.job import label
from tests.labeling.jobfiles import job_files, polite_rows, rlaif_label


class _Engine(Worker):
    """Stands in for an engine that starts one task per device, as vLLM's Ray executor does."""

    def placement(self) -> tuple:
        import ray
        from ray.util import get_current_placement_group

        @ray.remote(num_cpus=0.5)
        def shard() -> str:
            group = get_current_placement_group()
            return group.id.hex() if group else ""

        own = get_current_placement_group()
        return own.id.hex() if own else "", ray.get([shard.remote(), shard.remote()])


def test_a_worker_over_two_devices_runs_in_one_placement_group(ray_cluster):
    import ray

    pool = WorkerPool(ray, _Engine, (), WorkerResources(num_cpus=1), workers=1, bundles=2).start()
    try:
        assert len(pool.groups) == 1 and len(pool.groups[0].bundle_specs) == 2
        assert pool.groups[0].bundle_specs == [{"CPU": 0.5}, {"CPU": 0.5}]
        own, shards = ray.get(pool.actors[0].placement.remote())
        assert own == pool.groups[0].id.hex() and shards == [own, own]
    finally:
        pool.close()
    deadline = time.time() + 30
    while ray.available_resources().get("CPU") != 2 and time.time() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU") == 2  # the group's CPUs are given back


def test_more_workers_than_the_cluster_holds_are_capped_with_one_line(tmp_path, ray_cluster, capsys):
    """Ray would keep a million actors waiting for room (its control process growing past 1 GB): the job starts
    what fits now and says so."""
    files = job_files(tmp_path, polite_rows(4))
    result = label(
        files["pairs"],
        files["constitution"],
        files["judge"],
        files["out"],
        batch_size=1,
        progress=False,
        ray=RayOptions(ray_cluster, workers=1_000_000),
    )
    lines = capsys.readouterr().err.strip().splitlines()
    started = result.stats["ray"]["workers"]
    assert lines == [
        f"--workers 1000000: the Ray cluster has room for {started} now, at 1 CPU per worker; starting "
        f"{started} (nodes an autoscaling cluster adds later are not waited for)"
    ]
    assert started == 2 and result.labelled_now == 4  # the cluster's 2 CPUs


def test_a_worker_no_node_can_hold_is_refused_at_once(tmp_path, ray_cluster):
    files = job_files(tmp_path, polite_rows(2))
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text(files["judge"].read_text() + "resources: {num_gpus: 4}\n")
    started = time.time()
    done = rlaif_label({**files, "judge": gpus}, "--ray", "--ray-address", ray_cluster, "--workers", "2", timeout=120)
    assert done.returncode == 2 and time.time() - started < 60
    assert done.stderr.strip().splitlines() == [
        "error: the Ray cluster has no room for one worker of 1 CPU and 4 GPU on one node (the most free on a node "
        "now: 2 CPU, 0 GPU): lower the judge config's resources, or add nodes (an autoscaling cluster: start them "
        "first; workers are placed on what is free now)"
    ]
    assert not files["out"].exists()
    files["judge"].write_text(files["judge"].read_text() + "resources: {num_cpus: 3}\n")  # 2 CPUs a node
    with pytest.raises(ClusterError, match="no room for one worker of 3 CPU on one node"):
        label(
            files["pairs"],
            files["constitution"],
            files["judge"],
            files["out"],
            progress=False,
            ray=RayOptions(ray_cluster),
        )
    assert not files["out"].exists()
