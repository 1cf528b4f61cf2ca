"""Progress: each check() in a workspace is recorded; the page and `make progress` show it; reveal()."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course.progress import main as progress_main
from course.workspace import lab_command, prepare
from labutils.check import check
from labutils.progress import LOG, PAGE, find_workspace, progress_text, record, reveal, summary
from tests.notebook_runs import ROOT


def _chapter(number):
    cells = [new_markdown_cell(f"# {number} · tiny")]
    for k in (1, 2):
        cells += [
            new_code_cell(
                f"def f{k}(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION",
                metadata={"tags": ["solution"]},
            ),
            new_code_cell(f'check("{number}.{k}", lambda: f{k}(1), expected=1)'),
        ]
    return new_notebook(cells=cells)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    root = tmp_path / "clone"
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\n")
    for number, name in (("00", "intro"), ("01", "backprop")):
        nbformat.write(_chapter(number), root / "notebooks" / f"{number}_{name}.ipynb")
    ws = tmp_path / "ws"
    prepare(ws, root=root)
    monkeypatch.setenv("OML_COURSE_ROOT", str(root))
    monkeypatch.delenv("OML_WORKSPACE", raising=False)
    monkeypatch.delenv("OML_PROGRESS", raising=False)
    monkeypatch.chdir(ws)  # a kernel's working folder is its notebook's folder
    return ws


def test_outside_a_workspace_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OML_WORKSPACE", raising=False)
    assert find_workspace() is None and record("01.1", True) is False
    assert list(tmp_path.iterdir()) == []


def test_every_check_is_recorded_and_shown(workspace, capsys):
    check("01.1", 3, expected=3)
    check("01.2", 2, expected=3, hint="three", strict=False)
    check("01.2", 3, expected=3)
    check("00.1", 0, expected=1, strict=False)
    rows = [json.loads(line) for line in (workspace / LOG).read_text().splitlines()]
    assert [(r["id"], r["passed"]) for r in rows] == [
        ("01.1", True),
        ("01.2", False),
        ("01.2", True),
        ("00.1", False),
    ]
    assert all(r["time"] for r in rows) and "reason" in rows[1]
    states = summary(workspace)
    assert [(s["id"], s["status"], s["tries"]) for s in states["01_backprop"]] == [
        ("01.1", "passed", 1),
        ("01.2", "passed", 2),
    ]
    assert [(s["id"], s["status"]) for s in states["00_intro"]] == [
        ("00.1", "failed"),
        ("00.2", "never tried"),
    ]
    page = (workspace / PAGE).read_text()
    assert (
        "01_backprop: 2 of 2 passed" in page and "00_intro: 0 of 2 passed" in page and "never tried" in page
    )
    text = progress_text(workspace)
    assert "00_intro: 0 passed, 1 failed, 1 never tried" in text and "01_backprop: 2 passed" in text
    assert progress_main(["--workspace", str(workspace)]) == 0
    assert "01.2   [pass]" in capsys.readouterr().out


def test_recording_never_breaks_a_check(workspace, capsys):
    (workspace / LOG).mkdir()  # appending to it fails
    result = check("01.1", 1, expected=1)
    assert result and "passed" in capsys.readouterr().out
    assert record("01.1", True) is False


def test_the_grader_turns_recording_off(workspace, monkeypatch):
    monkeypatch.setenv("OML_PROGRESS", "0")
    check("01.1", 1, expected=1)
    assert not (workspace / LOG).exists()


def test_reveal_shows_the_course_solution_and_marks_it(workspace, capsys):
    reveal("01.2")
    out = capsys.readouterr().out
    assert "def f2(x):" in out and "return x" in out and "BEGIN SOLUTION" not in out
    assert [s["revealed"] for s in summary(workspace)["01_backprop"]] == [False, True]
    assert "solution revealed" in (workspace / PAGE).read_text()
    assert "01.2   [    ] revealed" in progress_text(workspace)
    reveal("01.9")
    assert "no exercise '01.9'" in capsys.readouterr().out


def test_reveal_reads_the_real_course(capsys, monkeypatch, tmp_path):
    """Whatever exercise 01.2 is today (chapters are being rewritten), reveal shows its solution."""
    from labutils.exercises import chapter_exercises, chapter_source

    monkeypatch.chdir(tmp_path)
    exercise = next(e for e in chapter_exercises(chapter_source("01")) if e.id == "01.2")
    reveal("01.2")
    assert f"def {exercise.functions[0]}" in capsys.readouterr().out


def test_progress_needs_a_workspace(tmp_path):
    assert progress_main(["--workspace", str(tmp_path)]) == 2


@pytest.mark.notebook
def test_a_learners_solution_shows_up_as_passed(tmp_path):
    """A workspace chapter, solved and run in a kernel started the way `make lab` starts it."""
    from nbclient import NotebookClient

    ws = tmp_path / "ws"
    prepare(ws)
    path = next(ws.glob("00_*.ipynb"))
    notebook = nbformat.read(path, 4)
    course = nbformat.read(ROOT / "notebooks" / path.name, 4)
    solutions = [c for c in course.cells if "solution" in c.metadata.get("tags", [])]
    stubs = [c for c in notebook.cells if "exercise-stub" in c.metadata.get("tags", [])]
    for stub, solution in zip(stubs, solutions, strict=True):
        stub.source = solution.source  # the learner writes the answer
    _, env = lab_command(ws)
    env.update(OML_SMOKE="1", OML_LIVE_PLOT="0", MPLBACKEND="Agg")
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ws)}}
    )
    with client.setup_kernel(env=env):
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
    states = summary(ws)[path.stem]
    assert states and all(s["status"] == "passed" for s in states), states
    assert f"{path.stem}: {len(states)} of {len(states)} passed" in (ws / PAGE).read_text()
