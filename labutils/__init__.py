"""labutils: the small helper package of Open Models Lab (开源模型实验课).

One module per concern: ``device``, ``seed``, ``plot``, ``data``, ``models``,
``train``, ``check`` (exercises), ``paths``, ``sentiment``: only what a
chapter imports (the course tooling is the ``course`` package).
Nothing here downloads anything.
"""

import os as _os
import sys as _sys

# cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts, so it is set here, before labutils imports torch:
# then seed_everything(..., deterministic=True) can make matrix products on a GPU repeatable.
CUBLAS_SET_TOO_LATE = False
if "CUBLAS_WORKSPACE_CONFIG" not in _os.environ:
    _torch = _sys.modules.get("torch")
    CUBLAS_SET_TOO_LATE = bool(_torch is not None and _torch.cuda.is_initialized())
    _os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"

from labutils.check import check  # noqa: E402

__version__ = "0.1.0"
__all__ = ["check", "device_report", "get_device", "seed_everything"]
_LAZY = {"device_report": "labutils.device", "get_device": "labutils.device",
         "seed_everything": "labutils.seed"}


def __getattr__(name: str):
    """Import torch only when a torch helper is used, so torch-free tools (the ONNX CLI) stay torch-free."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"labutils.{name}") is not None:
        import importlib

        return importlib.import_module(f"labutils.{name}")  # `labutils.seed` works without importing it
    raise AttributeError(f"module 'labutils' has no attribute {name!r}")
