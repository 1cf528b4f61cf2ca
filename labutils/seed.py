"""One call to make a run repeatable.

Example:
    >>> from labutils.seed import seed_everything
    >>> seed_everything(0)
    0
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

import labutils

# cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts; `import labutils` sets it (labutils/__init__.py).
CUBLAS_ENV_VAR = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int, deterministic: bool | None = None) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU).

    With ``deterministic=True`` torch also refuses non-deterministic kernels,
    which makes GPU runs bit-for-bit repeatable at some cost in speed;
    ``deterministic=False`` allows them again; the default (None) leaves that
    setting as it is, so re-seeding never turns determinism off.
    Returns the seed so a notebook can print what it used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        if getattr(labutils, "CUBLAS_SET_TOO_LATE", False) or CUBLAS_ENV_VAR not in os.environ:
            warnings.warn(
                f"{CUBLAS_ENV_VAR} was not set before CUDA started, so cuBLAS may still be "
                "non-deterministic: restart the kernel and run `import labutils` first",
                stacklevel=2,
            )
        torch.backends.cudnn.benchmark = False
    if deterministic is not None:
        torch.use_deterministic_algorithms(deterministic)
    return seed
