"""Pick where tensors live: CUDA, then Apple MPS, then CPU.

Example:
    >>> from labutils.device import get_device
    >>> device = get_device()          # honours OML_DEVICE=cpu|cuda|mps
    >>> model = model.to(device)
"""

from __future__ import annotations

import os
import platform

import torch

DEVICE_ENV_VAR = "OML_DEVICE"
_KNOWN = ("cuda", "mps", "cpu")


class DeviceUnavailableError(RuntimeError):
    """Raised when a device is requested that this machine does not have."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device types usable here, fastest first, e.g. ``['cuda', 'cpu']``."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device, or the one asked for.

    ``prefer`` (or the ``OML_DEVICE`` environment variable) forces a choice:
    ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``. Asking for a device this
    machine lacks raises :class:`DeviceUnavailableError` naming what exists.
    """
    wanted = prefer or os.environ.get(DEVICE_ENV_VAR, "").strip()
    available = available_devices()
    if not wanted:
        return torch.device(available[0])
    kind = wanted.split(":")[0].lower()
    source = "get_device(prefer=...)" if prefer else f"{DEVICE_ENV_VAR}={wanted}"
    if kind not in _KNOWN:
        raise ValueError(
            f"{source} is not a device type. Use one of: {', '.join(_KNOWN)}."
        )
    if kind not in available:
        raise DeviceUnavailableError(
            f"{source} asks for {kind.upper()}, but this machine has no {kind.upper()} "
            f"device. Available here: {', '.join(available)}. "
            f"Unset {DEVICE_ENV_VAR} (or pass prefer=None) to pick automatically."
        )
    if ":" in wanted:
        number = wanted.split(":", 1)[1].strip()
        if not number.isdigit():
            raise ValueError(
                f"{source}: {wanted!r} is not a device name. After the colon comes a device number, "
                f"as in cuda:0 or cuda:1. Use one of: {', '.join(_KNOWN)}, or cuda:N."
            )
    if kind == "cuda" and ":" in wanted:
        index = int(wanted.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{source} asks for GPU {index}, but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist (0-based)."
            )
    return torch.device(wanted.lower())


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU model, 'Apple GPU (MPS)' or the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return _cpu_model() or platform.processor() or platform.machine() or "CPU"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def device_report(device: torch.device | None = None) -> dict[str, str]:
    """Print and return torch version, chosen device, its name and CPU threads."""
    device = device or get_device()
    report = {
        "torch": torch.__version__,
        "device": str(device),
        "device name": device_name(device),
        "available": ", ".join(available_devices()),
        "CPU threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
    }
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:>{width}} : {value}")
    return report
