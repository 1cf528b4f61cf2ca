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


def test_deterministic_mode_is_switched_on_and_off():
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(bad)
