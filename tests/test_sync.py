"""`make sync` never loses an edit it cannot restore; `make book` says how to restore a rewritten full run."""

import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course import notebooks as nbtools

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def _pair(root):
    """notebooks/01_demo.py and .ipynb paired; the .ipynb older and edited (in Jupyter), the .py newer."""
    py = root / "notebooks" / "01_demo.py"
    py.parent.mkdir(parents=True)
    (root / "jupytext.toml").write_text('formats = "ipynb,py:percent"\n')
    py.write_text("# %%\nx = 1\n")
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", str(py)], check=True,
                   capture_output=True)
    return py


def _edit_both(py):
    ipynb = py.with_suffix(".ipynb")
    notebook = nbformat.read(ipynb, 4)
    notebook.cells[0].source = "x = 'edited in Jupyter'"
    nbformat.write(notebook, ipynb)
    py.write_text('# %%\nx = "edited in an editor"\n')
    os.utime(ipynb, (1, 1))
    return ipynb


def _git(root, *args):
    subprocess.run([*GIT, "-C", str(root), *args], check=True, capture_output=True)


def _refused(py, capsys, why):
    ipynb = py.with_suffix(".ipynb")
    before = ipynb.read_text()
    assert nbtools.sync([py]) == 1
    assert ipynb.read_text() == before  # nothing lost
    err = capsys.readouterr().err
    assert "refusing to sync 01_demo" in err and "01_demo.ipynb" in err and why in err, err
    assert "--force" in err


def test_an_untracked_older_file_is_not_overwritten(tmp_path, monkeypatch, capsys):
    py = _pair(tmp_path)
    _git(tmp_path, "init", "-q")
    (tmp_path / "README").write_text("x")
    _git(tmp_path, "add", "README")
    _git(tmp_path, "commit", "-qm", "no notebooks yet")
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    _edit_both(py)
    _refused(py, capsys, "never committed")


def test_outside_a_git_checkout_nothing_is_overwritten(tmp_path, monkeypatch, capsys):
    py = _pair(tmp_path)  # a zip download: no .git anywhere
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    _edit_both(py)
    _refused(py, capsys, "not a git checkout")


def test_a_course_folder_without_its_own_git_inside_another_repository(tmp_path, monkeypatch, capsys):
    root = tmp_path / "course"
    py = _pair(root)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "someone else's repository holds the unzipped course")
    monkeypatch.setattr(nbtools, "ROOT", root)
    _edit_both(py)
    _refused(py, capsys, "not a git checkout")


def test_without_git_installed_sync_refuses_instead_of_crashing(tmp_path, monkeypatch, capsys):
    py = _pair(tmp_path)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "pair")
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    _edit_both(py)
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _refused(py, capsys, "git is not installed")


def test_force_lets_the_newer_file_win(tmp_path, monkeypatch):
    py = _pair(tmp_path)
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    ipynb = _edit_both(py)
    assert nbtools.sync([py], force=True) == 0
    assert "edited in an editor" in ipynb.read_text()
    assert nbtools.sync_main(["--force", "01"]) == 0  # the CLI flag (make sync FORCE=1)


def _full_run_notebook():
    cells = [new_code_cell('import os\nSMOKE = os.environ.get("OML_SMOKE", "0") == "1"',
                           metadata={"tags": ["parameters"]}), new_code_cell("print(1)")]
    for count, cell in enumerate(cells, start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    notebook = new_notebook(cells=cells)
    notebook.metadata["openmodelslab"] = {"execution": {"mode": "full", "seconds": 600.0}}
    return notebook


def test_a_full_run_rewritten_by_lab_gets_restore_instructions(tmp_path, monkeypatch):
    ipynb = tmp_path / "notebooks" / "03_demo.ipynb"
    ipynb.parent.mkdir()
    nbformat.write(_full_run_notebook(), ipynb)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "full run")
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    assert nbtools.output_problems(ipynb) == []
    saved_in_lab = nbformat.read(ipynb, 4)  # Lab saves the session: other counts, other outputs
    for cell in saved_in_lab.cells:
        cell.execution_count, cell.outputs = None, []
    nbformat.write(saved_in_lab, ipynb)
    advice = nbtools.output_problems(ipynb)[-1]
    assert "git checkout notebooks/03_demo.ipynb" in advice
    assert "make execute NB=03" in advice and "10.0 min" in advice
    assert "JupyterLab" in advice


@pytest.mark.parametrize("committed", [False, True])
def test_without_a_committed_full_run_the_advice_is_to_re_execute(tmp_path, monkeypatch, committed):
    ipynb = tmp_path / "notebooks" / "03_demo.ipynb"
    ipynb.parent.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), ipynb)
    if committed:
        _git(tmp_path, "init", "-q")
        _git(tmp_path, "add", ".")
        _git(tmp_path, "commit", "-qm", "never a full run")
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    advice = nbtools.output_problems(ipynb)[-1]
    assert "make execute NB=03" in advice and "git checkout" not in advice
