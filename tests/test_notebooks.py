"""Every notebook: pair in sync, saved outputs complete, listed in the book, runs with smoke parameters.

nbval (`pytest --nbval-lax notebooks`) executes each notebook a second way and
compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``.
"""

import sys

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from papermill.exceptions import PapermillExecutionError

from course import notebooks as nbtools
from tests.notebook_runs import IDS, NOTEBOOKS, ROOT, read_check_log, run_with_papermill


def test_there_are_notebooks_and_each_has_a_source_file():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert [p.stem for p in nbtools.sources()] == IDS


@pytest.mark.parametrize("py", nbtools.sources(), ids=lambda p: p.stem)
def test_pair_in_sync(py):
    problems = nbtools.pair_problems(py)
    assert not problems, f"{py.name}: " + "; ".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_outputs_are_one_complete_full_run(notebook):
    problems = nbtools.output_problems(notebook)
    assert not problems, f"{notebook.name}: " + "; ".join(problems)


def test_book_lists_every_notebook():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    missing = {f"notebooks/{nb.stem}" for nb in NOTEBOOKS} - listed
    assert not missing, f"add these to _toc.yml: {sorted(missing)}"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_with_smoke_parameters_and_every_solution_passes(notebook, tmp_path):
    log = tmp_path / "checks.jsonl"
    out = ROOT / "_build" / "executed" / "smoke" / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    run_with_papermill(notebook, out, log, parameters={"SMOKE": True}, label="papermill, smoke",
                       output_dir=tmp_path / "outputs")  # this run's own output folder
    results = read_check_log(log)
    assert results, f"{notebook.name} has no auto-checked exercise"
    failed = [r for r in results if not r["passed"]]
    assert not failed, f"solutions that fail their check: {failed}"
    injected = [c for c in nbformat.read(out, 4).cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "SMOKE = True" in injected[0].source


def _scratch_notebook(tmp_path, code: str):
    notebook = new_notebook(cells=[new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "scratch.ipynb"
    nbformat.write(notebook, path)
    return path


def test_a_notebook_that_raises_fails_its_run(tmp_path):
    path = _scratch_notebook(tmp_path, "raise RuntimeError('boom')")
    with pytest.raises(PapermillExecutionError, match="boom"):
        run_with_papermill(path, tmp_path / "out.ipynb", tmp_path / "log", parameters={})


def test_a_notebook_that_reaches_for_the_network_fails_loudly(tmp_path, monkeypatch):
    own_log = tmp_path / "network.log"  # keep this deliberate attempt out of the suite's log
    monkeypatch.setenv("OML_NETWORK_LOG", str(own_log))
    code = ("import urllib.request\n"
            "urllib.request.urlopen('https://huggingface.co/bert-base-uncased', timeout=5)")
    path = _scratch_notebook(tmp_path, code)
    with pytest.raises(PapermillExecutionError, match="runs offline"):
        run_with_papermill(path, tmp_path / "out.ipynb", tmp_path / "log", parameters={})
    assert "huggingface.co" in own_log.read_text()


def test_an_edited_py_without_sync_is_caught(tmp_path):
    py = nbtools.sources()[0]
    copy = tmp_path / py.name
    copy.write_text(py.read_text().replace("SEED = 0", "SEED = 1"))
    (tmp_path / py.with_suffix(".ipynb").name).write_bytes(py.with_suffix(".ipynb").read_bytes())
    assert any("differs" in p for p in nbtools.pair_problems(copy))


def test_an_unexecuted_cell_is_caught(tmp_path):
    notebook = nbformat.read(NOTEBOOKS[0], 4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    code[-1].execution_count, code[-1].outputs = None, []
    path = tmp_path / NOTEBOOKS[0].name
    nbformat.write(notebook, path)
    assert any("not all executed" in p for p in nbtools.output_problems(path))


def test_sync_refuses_to_overwrite_an_edited_older_file(tmp_path, monkeypatch):
    import os
    import subprocess

    py = tmp_path / "notebooks" / "01_demo.py"
    py.parent.mkdir()
    (tmp_path / "jupytext.toml").write_text('formats = "ipynb,py:percent"\n')  # pair like the course does
    py.write_text('# %%\nx = 1\n')
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", str(py)], check=True,
                   capture_output=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git[:-2] + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "pair"], check=True)
    monkeypatch.setattr(nbtools, "ROOT", tmp_path)

    ipynb = py.with_suffix(".ipynb")
    notebook = nbformat.read(ipynb, 4)
    notebook.cells[0].source = "x = 'edited in Jupyter'"
    nbformat.write(notebook, ipynb)
    py.write_text('# %%\nx = "edited in an editor"\n')  # both edited; the .ipynb is older
    os.utime(ipynb, (1, 1))
    before = ipynb.read_text()
    assert nbtools.sync([py]) == 1
    assert ipynb.read_text() == before  # nothing lost

    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "keep the notebook edit"], check=True)
    os.utime(ipynb, (1, 1))
    assert nbtools.sync([py]) == 0  # the older side has no uncommitted edit: safe to sync
    assert "edited in an editor" in ipynb.read_text()


def test_each_run_gets_its_own_output_folder_and_the_runner_leaves_os_environ_alone(tmp_path):
    import os

    code = ("import os, pathlib\nfrom labutils.paths import output_dir\n"
            "pathlib.Path(os.environ['OML_CHECK_LOG']).write_text(str(output_dir('demo')))")
    path = _scratch_notebook(tmp_path, code)
    before = dict(os.environ)
    seen = []
    for run in ("a", "b"):
        log = tmp_path / f"{run}.log"
        run_with_papermill(path, tmp_path / f"{run}.ipynb", log, parameters={}, output_dir=tmp_path / run)
        seen.append(log.read_text())
    assert seen == [str(tmp_path / "a" / "demo"), str(tmp_path / "b" / "demo")]
    assert dict(os.environ) == before  # the kernel's variables never passed through this process
    # nbval kernels inherit this process's own folder (conftest.py), never the shared one
    assert os.environ["OML_OUTPUT_DIR"] != str(ROOT / "_build" / "models")


def test_the_course_command_dispatches_and_lists_its_commands():
    import subprocess

    listing = subprocess.run([sys.executable, "-m", "course"], cwd=ROOT, capture_output=True, text=True)
    assert listing.returncode == 2 and all(name in listing.stdout for name in ("sync", "execute", "student"))
    status = subprocess.run([sys.executable, "-m", "course", "status", "--help"], cwd=ROOT,
                            capture_output=True, text=True)
    assert status.returncode == 0 and "out" in status.stdout
    assert not (ROOT / "tools" / "notebooks.py").exists() and not (ROOT / "labutils" / "student.py").exists()


def test_a_run_with_no_recorded_time_says_so(tmp_path, monkeypatch):
    notebook = new_notebook(cells=[new_code_cell("1")])
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "01_x.ipynb")
    monkeypatch.setattr(nbtools, "book_chapters", lambda: [tmp_path / "notebooks" / "01_x.py"])
    nbtools.status_table(tmp_path / "status.md")
    text = (tmp_path / "status.md").read_text()
    assert "None s" not in text and "not recorded" in text
    assert nbtools.format_seconds(42) == "42 s" and nbtools.format_seconds(600) == "10.0 min"


def test_a_papermill_kernel_is_detected_as_headless_without_oml_live_plot(tmp_path):
    from course.runner import run_notebook

    flag = tmp_path / "live.txt"
    code = ("import pathlib\nfrom labutils.plot import LivePlot\n"
            f"pathlib.Path({str(flag)!r}).write_text(str(LivePlot().live))")
    run_notebook(_scratch_notebook(tmp_path, code), tmp_path / "out.ipynb", env={"OML_LIVE_PLOT": "1"})
    assert flag.read_text() == "False"


def test_nbval_treats_the_old_and_new_pass_marks_alike(pytestconfig):
    import re

    from nbval.plugin import get_sanitize_patterns

    path = ROOT / "tests" / "nbval_sanitize.cfg"
    assert pytestconfig.option.nbval_sanitize_with == str(path)  # set by conftest.py
    patterns = get_sanitize_patterns(path.read_text(encoding="utf-8"))
    for saved, printed in [("✅ Exercise 00.1 passed.", "[PASS] Exercise 00.1 passed."),
                           ("❌ Exercise 00.1 not passed yet", "[FAIL] Exercise 00.1 not passed yet")]:
        for regex, replace in patterns:
            saved = re.sub(regex, replace, saved)
        assert saved == printed
