"""One real Ray cluster on 127.0.0.1 for the tests of this folder, started by this pytest process (2 CPUs, no
dashboard) and shut down with it. Drivers started as subprocesses join it by its address, as a user's driver joins a
cluster started with `ray start --head`."""

from __future__ import annotations

import os

import pytest

from tests.helpers import ROOT

ray = pytest.importorskip("ray", reason="the Ray tests need ray (the dev extra)")


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """The cluster's address (HOST:PORT of its GCS); the workers import `tests.*` (PYTHONPATH)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a token file in ~/.ray is not this test's to make
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
