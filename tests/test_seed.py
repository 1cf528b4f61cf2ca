import random

import numpy as np
import pytest
import torch

from labutils.seed import seed_everything


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_same_seed_same_numbers():
    seed_everything(3)
    first = _draw()
    seed_everything(3)
    assert _draw() == first
    seed_everything(4)
    assert _draw() != first


def test_deterministic_mode_is_switched_on_and_off_and_reseeding_keeps_it():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        seed_everything(1)  # a later re-seed must not turn determinism off
        assert torch.are_deterministic_algorithms_enabled()
        seed_everything(0, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
        seed_everything(2)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_cublas_workspace_is_configured_when_labutils_is_imported_before_torch():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = ("import os, sys; import labutils; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'), "
            "'torch' in sys.modules, labutils.CUBLAS_SET_TOO_LATE)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [":4096:8", "False", "False"]  # set before torch (and so CUDA) started


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(bad)
