"""Where the course lives and where a run writes, independent of the working directory.

A chapter opened from ``notebooks/``, from a student edition in
``_build/student/`` or from a learner's workspace finds the same folders.
Each run may get its own output folder (the test suite sets ``OML_OUTPUT_DIR``
per run, so parallel runs never write the same files).

Example:
    >>> from labutils.paths import output_dir, shared_output_dir
    >>> out = output_dir("06-bert")          # what this run writes
    >>> teacher = shared_output_dir("06-bert")  # what a full run of chapter 06 left for chapter 07
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT_ENV_VAR = "OML_COURSE_ROOT"
OUTPUT_ENV_VAR = "OML_OUTPUT_DIR"
_MARKER = "_toc.yml"  # the book's table of contents sits at the course root


class CourseRootNotFound(FileNotFoundError):
    """Raised when no course checkout can be found."""


def course_root() -> Path:
    """The course checkout: ``$OML_COURSE_ROOT``, else the folder above labutils, else above the cwd."""
    if os.environ.get(ROOT_ENV_VAR):
        return Path(os.environ[ROOT_ENV_VAR]).resolve()
    candidates = [Path(__file__).resolve().parent.parent, *Path.cwd().resolve().parents]
    for folder in [Path.cwd().resolve(), *candidates]:
        if (folder / _MARKER).is_file() and (folder / "notebooks").is_dir():
            return folder
    raise CourseRootNotFound(
        f"cannot find the course folder (one with {_MARKER} and notebooks/) above {Path.cwd()}; "
        f"run from inside your clone, or set {ROOT_ENV_VAR}=/path/to/the/clone"
    )


def shared_output_dir(name: str) -> Path:
    """``_build/models/<name>`` in the course: where full runs leave models for later chapters."""
    return course_root() / "_build" / "models" / name


def output_dir(name: str) -> Path:
    """The folder this run writes ``name`` into (created): ``$OML_OUTPUT_DIR/<name>`` or the shared one."""
    base = os.environ.get(OUTPUT_ENV_VAR)
    folder = Path(base) / name if base else shared_output_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_atomically(folder: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder, then swap it in as ``folder`` in one step.

    A reader never sees a half-written model: the old folder goes only once the new one is complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(tmp)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
