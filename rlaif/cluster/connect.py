"""Connecting to Ray for a job run with `--ray`: the one place that imports Ray (lazily: `rlaif --help` and a job
without `--ray` never do), turns "not installed" and "no cluster there" into one line saying what to do, and keeps
Ray's own logging to what a user can act on.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Optional

INSTALL = "pip install 'rlaif[ray]'"


class ClusterError(RuntimeError):
    """A job the cluster cannot run: no Ray here, no cluster there, no room for a worker, a worker that failed. A
    refused job (exit 2), as rlaif.jobs.folder.JobError is."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs on Ray. `address` None: RAY_ADDRESS, else a local cluster on this machine;
    `workers` None: as many as the cluster's free resources hold."""

    address: Optional[str] = None
    workers: Optional[int] = None

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ClusterError(f"--workers must be a positive number, got {self.workers}")


def import_ray():
    """The ray module, or a ClusterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed here: {INSTALL} (or run without --ray)") from None
    return ray


def connect(options: RayOptions):
    """Join the cluster at `options.address` (or RAY_ADDRESS), or start a local one; returns the ray module. A
    driver that is connected already (a notebook, a test) keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = options.address or os.environ.get("RAY_ADDRESS") or "local"
    where = "--ray-address" if options.address else "RAY_ADDRESS"
    problem = _unreachable(address)
    if problem:  # Ray itself would retry an address where nothing listens for minutes, in many log lines
        raise ClusterError(
            f"no Ray cluster at {address} ({where}: {problem}): start one there with `ray start --head`, "
            f"or leave out --ray-address and unset RAY_ADDRESS to start one on this machine"
        )
    _quiet()
    if address == "local":
        # Ray starts workers at niceness 15 (so that a node's driver stays responsive). A cluster started here for
        # one job runs that job's judging, which should get the CPU the in-process job would get.
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
        )
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise ClusterError(
            f"no Ray cluster at {address} ({where}): start one there with `ray start --head`, or "
            f"leave out --ray-address and unset RAY_ADDRESS to start one on this machine "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
        ) from None
    return ray


def _unreachable(address: str, timeout_s: float = 5.0) -> Optional[str]:
    """Why nothing answers at a HOST:PORT address (ray:// included), or None; "local" and "auto" are Ray's."""
    if address in ("local", "auto"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return "give HOST:PORT, e.g. 10.0.0.1:6379"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def cluster_address(ray) -> str:
    """The address of the cluster the driver joined (the GCS address), for the manifest."""
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - only a label for the manifest
        return "unknown"


def _quiet() -> None:
    """Ray's messages a user can do nothing about: the usage-stats notice, and its INFO and WARNING logging (the
    workers' own output stays in the cluster's logs: log_to_driver=False)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
