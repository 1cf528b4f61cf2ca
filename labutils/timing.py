"""Wall-clock timing that is correct on every device.

A GPU runs kernels asynchronously: without a synchronisation, ``time.perf_counter()``
around a CUDA call measures how long it took to *launch* the kernels, not to run them.
``timed`` warms up first (caches, lazy initialisation, kernel selection), synchronises
the device before starting and before stopping the clock, and reports the median of
several runs, which one slow run (another program waking up) does not move.

Example:
    >>> import torch
    >>> from labutils.timing import timed
    >>> x = torch.randn(256, 256)
    >>> seconds = timed(lambda: x @ x, repeats=3)
    >>> seconds > 0
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait until every kernel queued on ``device`` has finished (a no-op on the CPU)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(
    run: Callable[[], object],
    *,
    device: torch.device | str | None = None,
    warmup: int = 1,
    repeats: int = 5,
) -> float:
    """Median wall-clock seconds of ``run()`` over ``repeats`` runs, after ``warmup`` untimed ones.

    ``device`` is where ``run`` queues its work; on CUDA and MPS the clock waits for it.
    """
    return statistics.median(samples(run, device=device, warmup=warmup, repeats=repeats))


def samples(
    run: Callable[[], object],
    *,
    device: torch.device | str | None = None,
    warmup: int = 1,
    repeats: int = 5,
) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` runs of ``run()``, after ``warmup`` untimed ones.

    What :func:`timed` takes the median of, every time kept, so a spread can be shown.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times
