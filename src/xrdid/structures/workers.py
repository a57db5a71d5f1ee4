"""Run one ingestion function over many tasks, in worker processes when asked."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int, chunksize: int = 4) -> list[R]:
    """``[fn(t) for t in tasks]``, in order; over ``workers`` forked processes when there is more than one
    worker and more than one task (``fn`` must be a module-level function)."""
    if workers > 1 and len(tasks) > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            return pool.map(fn, tasks, chunksize=chunksize)
    return [fn(t) for t in tasks]
