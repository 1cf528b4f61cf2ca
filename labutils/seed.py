"""One call to make a run repeatable.

Example:
    >>> from labutils.seed import seed_everything
    >>> seed_everything(0)
    0
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU).

    With ``deterministic=True`` torch also refuses non-deterministic kernels,
    which makes GPU runs bit-for-bit repeatable at some cost in speed.
    Returns the seed so a notebook can print what it used.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic (CUDA >= 10.2).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)
    return seed
