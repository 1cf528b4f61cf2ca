"""The gradebook: tamper-proof, safe and bounded grading of a class's notebooks, asserted row by row."""

import ast
import csv
import hashlib
import math
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course.grade import grade_class, learner_code, load_chapter, main
from course.student import student_notebook
from labutils.exercises import chapter_exercises, chapter_source

PARAMETERS = 'import os\n\nSMOKE = os.environ.get("OML_SMOKE", "0") == "1"'


def _tiny_chapter():
    """Chapter 01 of a tiny course: two exercises (1 and 2 points), no torch, fast to run."""
    return new_notebook(
        cells=[
            new_markdown_cell("# 01 · Tiny"),
            new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
            new_code_cell("from labutils.check import check\n\nDATA = [1, 2, 3]"),
            new_code_cell(
                "def double(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION",
                metadata={"tags": ["solution"]},
            ),
            new_code_cell(
                'check("01.1", lambda: [double(v) for v in DATA], expected=[2, 4, 6], hint="times two")'
            ),
            new_code_cell(
                "def halve(x):\n    # BEGIN SOLUTION\n    return x / 2\n    # END SOLUTION",
                metadata={"tags": ["solution", "points-2"]},
            ),
            new_code_cell('check("01.2", lambda: halve(5.0), expected=2.5, hint="divide by two")'),
        ]
    )


def _submission(chapter, bodies: dict, extra_cells=(), first_cell=None, raw: dict | None = None):
    """The student edition of ``chapter`` with some functions written: name -> body source (or raw cell)."""
    notebook = student_notebook(chapter, "chapter.ipynb")
    for cell in notebook.cells:
        if "exercise-stub" not in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(cell.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and raw and node.name in raw:
                cell.source = raw[node.name]
            elif isinstance(node, ast.FunctionDef) and node.name in bodies:
                node.body = ast.parse(bodies[node.name]).body
                cell.source = ast.unparse(tree)
    for source in extra_cells:
        notebook.cells.append(new_code_cell(source))
    if first_cell is not None:
        notebook.cells.insert(0, new_code_cell(first_cell))
    return notebook


def _solutions(chapter) -> dict:
    """name -> the course's own solution body, from the chapter's solution cells."""
    bodies = {}
    for exercise in chapter_exercises(chapter):
        tree = ast.parse(chapter.cells[exercise.solution_cell].source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                bodies[node.name] = "\n".join(ast.unparse(n) for n in node.body)
    return bodies


def _tree_hash(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _rows(out):
    with open(out / "gradebook.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


@pytest.fixture
def tiny_course(tmp_path):
    root = tmp_path / "clone"
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\n")
    nbformat.write(_tiny_chapter(), root / "notebooks" / "01_tiny.ipynb")
    return root


def test_points_hints_and_protected_names_come_from_the_chapter(tiny_course):
    chapter = load_chapter("01", tiny_course)
    assert [(e.id, e.points, e.hint) for e in chapter.exercises] == [
        ("01.1", 1, "times two"),
        ("01.2", 2, "divide by two"),
    ]
    assert {"DATA", "check", "SMOKE"} <= chapter.protected and "double" not in chapter.protected


def test_only_definitions_of_the_solution_cell_are_taken(tiny_course):
    chapter = load_chapter("01", tiny_course)
    raw = (
        "import math\nfrom labutils.check import check\nimport json as DATA\n"
        "check = lambda *a, **k: print('[PASS] Exercise 01.1 passed.')\nDATA = []\n"
        "def check(*a, **k):\n    return True\n\ndef helper(x):\n    return x + x\n\n"
        "def double(x):\n    return helper(x)\n\nprint('passed')"
    )
    code, state, notes = learner_code(
        chapter, chapter.exercises[0], _submission(_tiny_chapter(), {}, raw={"double": raw})
    )
    assert state == "ok"
    assert "def helper" in code and "def double" in code and "import math" in code
    assert "lambda" not in code and "DATA" not in code and "return True" not in code and "print" not in code
    assert len(notes) == 6 and all("ignored line" in n for n in notes)
    blank = _submission(_tiny_chapter(), {})
    assert learner_code(chapter, chapter.exercises[0], blank)[1] == "stub"
    broken = _submission(_tiny_chapter(), {}, raw={"double": "def double(x):\n    return 2 *"})
    assert learner_code(chapter, chapter.exercises[0], broken)[1] == "syntax"


def test_the_gradebook_is_never_written_into_the_submissions(tiny_course, tmp_path):
    (tmp_path / "subs").mkdir()
    with pytest.raises(ValueError, match="outside the submissions folder"):
        grade_class(tmp_path / "subs", tmp_path / "subs" / "grades", "01", root=tiny_course)
    assert main([str(tmp_path / "missing"), "--chapter", "01"]) == 2


@pytest.mark.notebook
def test_a_tiny_class_is_graded_safely_and_bounded(tiny_course, tmp_path):
    """Every way a submission can misbehave gets its row; grading goes on with the next."""
    chapter, subs, out = _tiny_chapter(), tmp_path / "submissions", tmp_path / "grades"
    subs.mkdir()
    ok = {"double": "return 2 * x", "halve": "return x / 2"}
    guard = f"""
import os, socket, subprocess, sys
attempts = [lambda: open({str(subs / "ok.ipynb")!r}, 'w'), lambda: open({str(out / "gradebook.csv")!r}, 'w'),
            lambda: os.remove({str(subs / "guard" / "01_tiny.ipynb")!r}), lambda: subprocess.run(['true']),
            lambda: sys.audit('socket.connect', None, ('203.0.113.5', 80))]
blocked = 0
for attempt in attempts:
    try:
        attempt()
    except PermissionError:
        blocked += 1
open('scratch.txt', 'w').write('my own folder is fine')
guarded = socket.socket.connect.__name__ == '_guarded_connect'
return 2 * x if blocked == len(attempts) and guarded else -1
"""
    notebooks = {
        "ok": _submission(chapter, ok),
        "guard/01_tiny": _submission(chapter, {"double": guard}),
        "looper": _submission(chapter, {"double": "while True:\n    pass", "halve": ok["halve"]}),
        "exiter": _submission(
            chapter,
            {"double": "import sys\nsys.exit(3)", "halve": ok["halve"]},
            first_cell="raise RuntimeError('cell 1 raises')",
        ),
        "killer": _submission(chapter, {"double": "import os\nos._exit(1)", "halve": ok["halve"]}),
        "cheat": _submission(
            chapter,
            {},
            raw={
                "double": (
                    "check = lambda *a, **k: print('[PASS] Exercise 01.1 passed.')\nDATA = []\n"
                    "def double(x):\n    check('01.1', 1, expected=1)\n"
                    "    check('01.2', 1, expected=1)\n    return 0"
                )
            },
            extra_cells=[
                "def check(*a, **k):\n    print('[PASS] Exercise 01.2 passed.')",
                'check("01.1", lambda: 0, expected=0)',
            ],
        ),
        "syntax": _submission(
            chapter, {"halve": ok["halve"]}, raw={"double": "def double(x):\n    return 2 *"}
        ),
        "blank": _submission(chapter, {}),
        "empty": new_notebook(),
        "wrong": new_notebook(cells=[new_markdown_cell("# 02 · Another chapter"), new_code_cell("x = 1")]),
    }
    for name, notebook in notebooks.items():
        path = subs / f"{name}.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(notebook, path)
    (subs / "notjson.ipynb").write_text('{"cells": [')
    roster = tmp_path / "roster.csv"
    roster.write_text("student\nok\nguard\nmallory\n")
    before = _tree_hash(subs)
    start = time.perf_counter()
    results = grade_class(
        subs, out, "01", roster=roster, root=tiny_course, cell_timeout=10, notebook_timeout=60
    )
    seconds = time.perf_counter() - start
    slow = tmp_path / "slow"
    slow.mkdir()
    nbformat.write(
        _submission(chapter, {"double": "import time\ntime.sleep(2)\nreturn 2 * x", "halve": ok["halve"]}),
        slow / "slow.ipynb",
    )
    grade_class(slow, tmp_path / "slow-grades", "01", root=tiny_course, cell_timeout=30, notebook_timeout=5)
    slow_row = _rows(tmp_path / "slow-grades")["slow"]
    assert (slow_row["01.1"], slow_row["01.2"], slow_row["total"]) == ("0", "0", "0")
    assert slow_row["status"].startswith("graded (the notebook time limit (5 s) was reached"), slow_row
    rows = _rows(out)
    got = {name: (row["01.1"], row["01.2"], row["total"], row["status"]) for name, row in rows.items()}
    assert got == {
        "ok": ("1", "2", "3", "graded"),
        "guard": ("1", "0", "1", "graded"),
        "looper": ("0", "2", "2", "graded"),
        "exiter": ("0", "2", "2", "graded"),
        "killer": ("0", "0", "0", got["killer"][3]),
        "cheat": ("0", "0", "0", "graded"),
        "syntax": ("0", "2", "2", "graded"),
        "blank": ("0", "0", "0", "graded (nothing attempted)"),
        "empty": ("0", "0", "0", "empty notebook"),
        "wrong": ("0", "0", "0", "wrong chapter: this is chapter 02, graded as chapter 01"),
        "notjson": ("0", "0", "0", "not a notebook (not valid JSON)"),
        "mallory": ("0", "0", "0", "no submission"),
    }
    died = "graded (the kernel died while checking 01.1 (os._exit, a crash, or out of memory))"
    assert got["killer"][3] == died
    assert _tree_hash(subs) == before  # no submission was changed, none deleted
    feedback = {r.student: (out / "feedback" / f"{r.student}.md").read_text() for r in results}
    assert "Hint: times two" in feedback["looper"] and "did not finish" in feedback["looper"]
    assert "SystemExit" in feedback["exiter"]
    assert "syntax error" in feedback["syntax"] and "ignored line 1 `check = lambda" in feedback["cheat"]
    assert "not on the roster" in feedback["looper"]
    assert seconds < 150, f"grading the tiny class took {seconds:.0f} s"


@pytest.mark.notebook
def test_a_class_of_one_real_chapter_is_graded_end_to_end(tmp_path):
    """Six submissions of chapter 01, derived from today's course notebook, graded in smoke mode."""
    source = chapter_source("01")
    chapter = nbformat.read(source, 4)
    exercises = chapter_exercises(chapter)
    assert len(exercises) >= 2, "the fixture class needs a chapter with at least two exercises"
    solutions = _solutions(chapter)
    names = [name for e in exercises for name in e.functions]
    first, second = exercises[0].functions[0], exercises[1].functions[0]
    half = math.ceil(len(exercises) / 2)
    partly = {n: solutions[n] for e in exercises[:half] for n in e.functions}
    cheat_cells = [
        f"def check(*args, **kwargs):\n    print('[PASS] Exercise {e.id} passed.')" for e in exercises
    ]
    subs, out = tmp_path / "class", tmp_path / "grades"
    notebooks = {
        "alice": _submission(chapter, solutions),  # complete
        "bob": _submission(chapter, partly),  # partly done
        "carol": _submission(chapter, {}),  # blank stubs
        "dave": _submission(
            chapter,
            {n: "return None" for n in names},  # redefines check
            extra_cells=cheat_cells,
            first_cell="def check(*a, **k):\n    return True",
        ),
        "eve": _submission(chapter, {**solutions, first: "while True:\n    pass"}),  # loops forever
        "grace": _submission(
            chapter,
            {**solutions, second: "import sys\nsys.exit(1)"},
            first_cell="raise ValueError('cell 1 raises')",
        ),
    }
    for name, notebook in notebooks.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(notebook, subs / name / source.name)
    (subs / "frank.ipynb").write_text("this is not JSON")  # not a notebook
    dave = notebooks["dave"]
    for cell in dave.cells:  # saved outputs that claim every exercise passed
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="[PASS] Exercise passed.\n")]
    nbformat.write(dave, subs / "dave" / source.name)
    start = time.perf_counter()
    grade_class(subs, out, "01", cell_timeout=60, notebook_timeout=300)
    seconds = time.perf_counter() - start
    ids, points = [e.id for e in exercises], {e.id: e.points for e in exercises}
    full = sum(points.values())
    expected = {
        "alice": (points, full, "graded"),
        "bob": ({i: points[i] if k < half else 0 for k, i in enumerate(ids)}, None, "graded"),
        "carol": ({i: 0 for i in ids}, 0, "graded (nothing attempted)"),
        "dave": ({i: 0 for i in ids}, 0, "graded"),
        "eve": ({i: 0 if k == 0 else points[i] for k, i in enumerate(ids)}, full - points[ids[0]], "graded"),
        "grace": (
            {i: 0 if k == 1 else points[i] for k, i in enumerate(ids)},
            full - points[ids[1]],
            "graded",
        ),
        "frank": ({i: 0 for i in ids}, 0, "not a notebook (not valid JSON)"),
    }
    rows = _rows(out)
    assert sorted(rows) == sorted(expected)
    for student, (want, total, status) in expected.items():
        row = rows[student]
        assert row["chapter"] == source.stem and row["status"] == status, (student, row)
        assert {i: int(row[i]) for i in ids} == want, (student, row)
        assert int(row["total"]) == (total if total is not None else sum(want.values())), (student, row)
    eve = (out / "feedback" / "eve.md").read_text()
    assert f"**{ids[0]}** (0/{points[ids[0]]}): not passed" in eve and "did not finish" in eve
    assert "SystemExit" in (out / "feedback" / "grace.md").read_text()
    print(
        f"\ngraded {len(rows)} submissions of {source.stem} in {seconds:.0f} s\n"
        + (out / "gradebook.csv").read_text()
    )
    assert seconds < 600


def test_magics_are_dropped_and_a_grader_failure_is_one_row(tiny_course, tmp_path, monkeypatch):
    import course.grade as grade

    chapter = load_chapter("01", tiny_course)
    magic = _submission(_tiny_chapter(), {}, raw={"double": "%time\ndef double(x):\n    return 2 * x"})
    code, state, _ = learner_code(chapter, chapter.exercises[0], magic)
    assert state == "ok" and "def double" in code and "%time" not in code
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("ann", "ben"):
        nbformat.write(magic, subs / f"{name}.ipynb")

    def broken(student, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(grade, "grade_notebook", broken)
    grade_class(subs, tmp_path / "out", "01", root=tiny_course)
    rows = _rows(tmp_path / "out")
    assert [rows[n]["status"] for n in ("ann", "ben")] == ["not graded: the grader failed (RuntimeError)"] * 2


@pytest.mark.notebook
def test_two_jobs_give_the_same_rows(tiny_course, tmp_path):
    chapter, subs = _tiny_chapter(), tmp_path / "subs"
    subs.mkdir()
    ok = {"double": "return 2 * x", "halve": "return x / 2"}
    for name, notebook in {"ok": _submission(chapter, ok), "blank": _submission(chapter, {}),
                           "half": _submission(chapter, {"halve": ok["halve"]}),
                           "killer": _submission(chapter, {"double": "import os\nos._exit(1)"})}.items():
        nbformat.write(notebook, subs / f"{name}.ipynb")
    grade_class(subs, tmp_path / "one", "01", root=tiny_course, cell_timeout=20)
    grade_class(subs, tmp_path / "two", "01", root=tiny_course, cell_timeout=20, jobs=2)
    one, two = ((tmp_path / run / "gradebook.csv").read_text() for run in ("one", "two"))
    assert one == two
    assert _rows(tmp_path / "two")["half"]["total"] == "2"
