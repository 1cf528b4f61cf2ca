"""The learner's workspace: filled once, updated after a pull, and nothing the learner wrote is lost."""

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course.workspace import UPDATED_SUFFIX, chapter_sources, lab_command, prepare
from labutils.exercises import chapter_exercises
from tests.notebook_runs import ROOT


def _chapter(number: str, title: str, answer: str = "x * 2"):
    solution = f"def double(x):\n    # BEGIN SOLUTION\n    return {answer}\n    # END SOLUTION\n"
    return new_notebook(cells=[
        new_markdown_cell(f"# {number} · {title}"),
        new_code_cell(solution, metadata={"tags": ["solution"]}),
        new_code_cell(f'check("{number}.1", lambda: double(2), expected=4, hint="twice x")'),
    ], metadata={"jupytext": {"formats": "ipynb,py:percent"}})


@pytest.fixture
def course(tmp_path):
    """A tiny course checkout with two chapters; returns a function that (re)writes a chapter."""
    root = tmp_path / "clone"
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\n")

    def write(number, title, **kw):
        nbformat.write(_chapter(number, title, **kw), root / "notebooks" / f"{number}_{title}.ipynb")

    write("00", "intro")
    write("01", "backprop")
    write.root = root
    return write


def _visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_first_start_writes_one_blank_notebook_per_chapter(course, tmp_path):
    ws = tmp_path / "ws"
    messages = prepare(ws, root=course.root)
    assert messages == ["added 00_intro.ipynb", "added 01_backprop.ipynb"]
    assert _visible(ws) == ["00_intro.ipynb", "01_backprop.ipynb", "progress.html"]
    text = (ws / "01_backprop.ipynb").read_text()
    assert "NotImplementedError" in text and "x * 2" not in text and "BEGIN SOLUTION" not in text
    notebook = nbformat.read(ws / "01_backprop.ipynb", 4)
    assert "jupytext" not in notebook.metadata  # no pairing: saving never creates a .py beside it
    assert [e.id for e in chapter_exercises(notebook)] == ["01.1"]
    assert prepare(ws, root=course.root) == []  # a second start changes nothing


def test_solutions_are_a_choice(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, "solutions", root=course.root)
    assert "return x * 2" in (ws / "00_intro.ipynb").read_text()
    course("02", "loss")
    prepare(ws, root=course.root)  # the workspace keeps the edition it was made with
    assert "return x * 2" in (ws / "02_loss.ipynb").read_text()


def test_a_new_chapter_is_added_and_nothing_else_changes(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    before = (ws / "00_intro.ipynb").read_bytes()
    course("02", "loss")
    assert prepare(ws, root=course.root) == ["added 02_loss.ipynb"]
    assert (ws / "00_intro.ipynb").read_bytes() == before


def test_a_changed_chapter_replaces_an_untouched_notebook(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    course("01", "backprop", answer="x + x")
    assert prepare(ws, root=course.root) == [
        "updated 01_backprop.ipynb to the course's new version (you had not changed it)"]
    assert not (ws / f"01_backprop{UPDATED_SUFFIX}").exists()


def _edit(path, text="return x * 2  # my answer"):
    notebook = nbformat.read(path, 4)
    stub = next(c for c in notebook.cells if "exercise-stub" in c.metadata.get("tags", []))
    stub.source = stub.source.replace('raise NotImplementedError("write your solution here")', text)
    nbformat.write(notebook, path)
    return path.read_bytes()


def test_a_changed_chapter_is_offered_beside_an_edited_notebook(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    mine = _edit(ws / "01_backprop.ipynb")
    assert prepare(ws, root=course.root) == []  # edited, course unchanged: nothing to say
    course("01", "backprop", answer="x + x")
    message = ("01_backprop changed in the course: your 01_backprop.ipynb is kept as it is, "
               "the new version is beside it as 01_backprop.updated.ipynb")
    assert prepare(ws, root=course.root) == [message]
    assert (ws / "01_backprop.ipynb").read_bytes() == mine
    offered = nbformat.read(ws / f"01_backprop{UPDATED_SUFFIX}", 4)
    assert any("double" in c.source for c in offered.cells)
    assert prepare(ws, root=course.root) == [message]  # still waiting: same one line, no second copy
    visible = ["00_intro.ipynb", "01_backprop.ipynb", f"01_backprop{UPDATED_SUFFIX}", "progress.html"]
    assert _visible(ws) == visible
    (ws / f"01_backprop{UPDATED_SUFFIX}").unlink()  # the learner looked and removed it
    assert prepare(ws, root=course.root) == []
    assert (ws / "01_backprop.ipynb").read_bytes() == mine


def test_an_edited_offer_is_not_overwritten(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    mine = _edit(ws / "01_backprop.ipynb")
    course("01", "backprop", answer="x + x")
    prepare(ws, root=course.root)
    offer = _edit(ws / f"01_backprop{UPDATED_SUFFIX}", "return 2 * x")
    course("01", "backprop", answer="2 * x")
    assert "has your edits" in prepare(ws, root=course.root)[0]
    assert (ws / "01_backprop.ipynb").read_bytes() == mine
    assert (ws / f"01_backprop{UPDATED_SUFFIX}").read_bytes() == offer


def test_taking_the_offer_by_renaming_it(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    _edit(ws / "01_backprop.ipynb")
    course("01", "backprop", answer="x + x")
    prepare(ws, root=course.root)
    os.replace(ws / f"01_backprop{UPDATED_SUFFIX}", ws / "01_backprop.ipynb")
    assert prepare(ws, root=course.root) == []
    course("01", "backprop", answer="2 * x")  # untouched again, so the next change replaces it
    assert prepare(ws, root=course.root)[0].startswith("updated 01_backprop.ipynb")


def test_a_deleted_notebook_is_restored(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    (ws / "00_intro.ipynb").unlink()
    assert prepare(ws, root=course.root) == ["restored 00_intro.ipynb (it was missing)"]
    assert (ws / "00_intro.ipynb").exists()


def test_an_unknown_file_with_a_chapter_name_is_kept(course, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "00_intro.ipynb").write_text("my own notes, not a notebook")
    messages = prepare(ws, root=course.root)
    assert (ws / "00_intro.ipynb").read_text() == "my own notes, not a notebook"
    assert "00_intro changed in the course" in messages[0] and (ws / f"00_intro{UPDATED_SUFFIX}").exists()


def test_the_workspace_is_never_the_course_notebooks(course):
    with pytest.raises(ValueError, match="must not be inside"):
        prepare(course.root / "notebooks", root=course.root)


def test_the_real_course_makes_a_workspace(tmp_path):
    ws = tmp_path / "ws"
    chapters = chapter_sources()
    prepare(ws)
    visible = _visible(ws)
    assert {p.name for p in chapters} <= set(visible) and "progress.html" in visible
    assert all(re.match(r"^\d\d_\w+\.ipynb$", name) for name in visible if name != "progress.html")
    for path in chapters:
        text = (ws / path.name).read_text()
        assert "BEGIN SOLUTION" not in text and '"outputs": []' in text
    manifest = json.loads((ws / ".oml" / "workspace.json").read_text())
    assert manifest["chapters"]["01_backpropagation"]["exercises"][0] == {"id": "01.1", "points": 1}


def test_a_workspace_elsewhere_finds_the_course(tmp_path):
    """make lab puts OML_COURSE_ROOT into Lab's environment, which every kernel inherits."""
    ws = tmp_path / "elsewhere"
    argv, env = lab_command(ws)
    assert f"--ServerApp.root_dir={ws.resolve()}" in argv and env["OML_COURSE_ROOT"] == str(ROOT)
    assert env["JUPYTER_CONFIG_PATH"] == str(ROOT / ".jupyter") and env["OML_WORKSPACE"] == str(ws.resolve())
    ws.mkdir()
    code = ("from labutils.paths import course_root, shared_output_dir; "
            "print(course_root()); print(shared_output_dir('x'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ws, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [str(ROOT), str(ROOT / "_build" / "models" / "x")]


def test_python_m_course_has_the_learner_and_teacher_commands(tmp_path, capsys):
    from course.__main__ import COMMANDS
    from course.__main__ import main as course_main

    assert {"lab", "workspace", "progress", "grade"} <= set(COMMANDS)
    assert course_main(["workspace", "--workspace", str(tmp_path / "ws")]) == 0
    assert "added 00_" in capsys.readouterr().out
    assert course_main(["progress", "--workspace", str(tmp_path / "ws")]) == 0
    assert "never tried" in capsys.readouterr().out


def test_switching_to_solutions_later_keeps_edits(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    mine = _edit(ws / "01_backprop.ipynb")
    messages = prepare(ws, "solutions", root=course.root)
    assert "return x * 2" in (ws / "00_intro.ipynb").read_text() and len(messages) == 2
    assert (ws / "01_backprop.ipynb").read_bytes() == mine
    assert "BEGIN SOLUTION" in (ws / f"01_backprop{UPDATED_SUFFIX}").read_text()
    assert prepare(ws, root=course.root) == [messages[1]]  # remembered: no switch back, same offer


def test_an_unreadable_course_chapter_is_skipped(course, tmp_path):
    ws = tmp_path / "ws"
    prepare(ws, root=course.root)
    mine = _edit(ws / "01_backprop.ipynb")
    (course.root / "notebooks" / "01_backprop.ipynb").write_text('{"cells": [')  # half written
    course("02", "loss")
    messages = prepare(ws, root=course.root)
    assert messages[0].startswith("skipped 01_backprop.ipynb: the course's copy cannot be read")
    assert messages[1:] == ["added 02_loss.ipynb"] and (ws / "01_backprop.ipynb").read_bytes() == mine
