"""Tier 4: the worker pool's placement on the local Ray cluster. A worker spanning several devices (a judge with
tensor_parallel_size > 1) gets a placement group of that many bundles on one node, and the tasks it starts (the
engine's own workers) run inside that group. Only the CPU path can be tested here: the bundles hold CPUs, not GPUs."""

from __future__ import annotations

import time

from rlaif.cluster.pool import Worker, WorkerPool
from rlaif.config.judge import WorkerResources


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
