"""What an arm cost to prepare, and how sure its scores are.

``Meter`` measures a stretch of work: wall time, CPU time of this process and its
children (``resource.getrusage``, user plus system), and peak resident memory. The
peak is the process's high-water mark (``ru_maxrss``) at the end of the stretch: the
operating system keeps no per-stretch peak, so an arm run after a bigger one reports
the bigger one's peak; arms are run in order of growing size for this reason.

``bootstrap_interval`` is the percentile bootstrap: resample the per-question scores
with replacement (seeded), take the mean each time, report the 2.5th and 97.5th
percentiles of those means.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass
class Cost:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    tokens: int = 0

    @property
    def cpu_hours(self) -> float:
        return self.cpu_s / 3600

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "cpu_hours": self.cpu_hours}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Meter:
    """``with Meter() as meter: ...`` then ``meter.cost`` (add ``tokens`` yourself)."""

    def __init__(self) -> None:
        self.cost = Cost()
        self._wall = self._cpu = 0.0

    def __enter__(self) -> Meter:
        self._wall, self._cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *_: object) -> None:
        self.cost.wall_s = time.perf_counter() - self._wall
        self.cost.cpu_s = _cpu_seconds() - self._cpu
        self.cost.peak_rss_mb = _peak_rss_mb()


def bootstrap_interval(
    values: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """The ``level`` percentile-bootstrap interval of the mean of ``values``; None when
    there are no values."""
    if not values:
        return None
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
