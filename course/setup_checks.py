"""What ``make setup`` checks and decides before it installs anything (standard library only).

    python -m course.setup_checks preflight [--have-venv]  # Python's venv module and git present?
    python -m course.setup_checks torch-args auto      # the pip arguments that install torch

``TORCH`` (``make setup TORCH=...``) picks the torch build:

- ``auto`` (default): CUDA when ``nvidia-smi`` works; else the CPU build pip's own configuration
  already holds on this machine (a local wheel folder, as on the course's CI), else ``cpu``;
- ``cpu``: the CPU-only build from PyTorch's own CPU wheel index (no ``nvidia-*`` packages);
- ``cuda``: the CUDA build from PyTorch's CUDA wheel index (PyPI's Linux wheel is a CUDA build too);
- ``pip``: whatever pip's own configuration supplies (a local mirror, a company index).

The PyTorch index is an *extra* index: the pinned version still comes from pip's configured index
when that one has the right build (or the PyTorch index cannot be reached).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
CHOICES = ("auto", "cpu", "cuda", "pip")


def nvidia_smi_works() -> bool:
    """Whether ``nvidia-smi`` runs and lists a GPU (an NVIDIA driver is installed)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def local_cpu_build(pin: str) -> str | None:
    """The version of a CPU-only build of ``pin`` that pip finds without any index (``+cpu``), or None.

    Asks pip offline (``--no-index``: only the wheel folders its configuration names), so a machine
    that already holds the CPU wheel does not query, or wait for, PyTorch's index.
    """
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
               "--ignore-installed", "--quiet", "--report", "-", pin]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        versions = [item["metadata"]["version"] for item in json.loads(result.stdout)["install"]]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None
    return versions[0] if versions and versions[0].endswith("+cpu") else None


def torch_pip_args(choice: str, pin: str, has_gpu: bool | None = None,
                   local_cpu: str | None | bool = True) -> list[str]:
    """The arguments after ``pip install`` that install ``pin`` (e.g. ``torch==2.13.0``) for ``choice``."""
    choice = (choice or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"TORCH={choice!r} is not one of {', '.join(CHOICES)} (e.g. make setup TORCH=cpu)")
    if choice == "auto":
        if nvidia_smi_works() if has_gpu is None else has_gpu:
            choice = "cuda"
        else:
            choice = "pip" if (local_cpu_build(pin) if local_cpu is True else local_cpu) else "cpu"
    if choice == "pip":
        return [pin]
    return [pin, "--extra-index-url", CUDA_INDEX if choice == "cuda" else CPU_INDEX]


def preflight_problems(has_ensurepip: bool | None = None, git: str | None | bool = True,
                       platform: str = sys.platform) -> list[str]:
    """What a fresh machine lacks before setup can start, each with how to install it."""
    if has_ensurepip is None:
        has_ensurepip = importlib.util.find_spec("ensurepip") is not None and \
            importlib.util.find_spec("venv") is not None
    if git is True:
        git = shutil.which("git")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    problems = []
    if not has_ensurepip:
        hint = (f"on Debian/Ubuntu: sudo apt-get install python{version}-venv" if platform.startswith("linux")
                else "install Python from python.org, which includes it")
        problems.append(f"Python's venv module (with ensurepip) is missing, so .venv cannot be created: "
                        f"{hint}")
    if not git:
        hint = {"linux": "sudo apt-get install git (Debian/Ubuntu) or sudo dnf install git (Fedora)",
                "darwin": "xcode-select --install, or brew install git"}.get(
            "linux" if platform.startswith("linux") else platform, "https://git-scm.com/downloads")
        problems.append(f"git is missing (the course's safe sync and updates need it): {hint}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["preflight"]:
        problems = preflight_problems(has_ensurepip=True if "--have-venv" in argv else None)
        for problem in problems:
            print(f"setup: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv[:1] == ["torch-args"] and len(argv) in (2, 3):
        pin = argv[2] if len(argv) == 3 else "torch==2.13.0"
        try:
            print(" ".join(torch_pip_args(argv[1], pin)))
        except ValueError as error:
            print(f"setup: {error}", file=sys.stderr)
            return 2
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
