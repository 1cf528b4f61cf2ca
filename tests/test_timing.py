"""labutils.timing: warm-up, synchronisation on the device, median of the repeats."""

import time

import pytest
import torch

from labutils import timing


def test_timed_runs_warmup_then_repeats_and_returns_the_median(monkeypatch):
    calls, durations = [], iter([0.0, 0.0, 0.05, 0.01, 0.02])

    def run():
        calls.append(1)
        time.sleep(next(durations))

    seconds = timing.timed(run, warmup=2, repeats=3)
    assert len(calls) == 5
    assert 0.015 < seconds < 0.045  # the median (0.02 s), not the slow run (0.05 s) nor the mean


def test_timed_synchronises_the_device_around_every_timed_run(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "synchronize", lambda device: events.append(("sync", str(device))))
    timing.timed(lambda: events.append(("run",)), device="cuda", warmup=1, repeats=2)
    assert events == [("run",), ("sync", "cuda"), ("run",), ("sync", "cuda"),
                      ("sync", "cuda"), ("run",), ("sync", "cuda")]


def test_synchronize_is_a_no_op_on_the_cpu():
    timing.synchronize("cpu")
    timing.synchronize(None)
    timing.synchronize(torch.device("cpu"))


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        timing.timed(lambda: None, repeats=0)
