"""How the Ray tests compare a job's output with the in-process job's: equal, floats within 1e-6 (Ray sets each
worker's thread count from its CPUs, so sums may round apart), timing fields and the Ray settings dropped."""

from __future__ import annotations

import math

TIMING = {"created_at", "finished_at", "wall_time_s", "pairs_per_s", "revisions_per_s", "tokens_per_s", "ray"}


def close(a, b, where: str = "") -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-6), (
            f"{where}: {a!r} != {b!r}"
        )
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
