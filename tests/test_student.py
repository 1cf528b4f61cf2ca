import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course.student import StudentEditionError, stub_source, student_notebook, write_student_edition
from tests.notebook_runs import (
    NOTEBOOKS,
    exercises_passed_in_saved_outputs,
    read_check_log,
    run_with_papermill,
)

SOLUTION = """def f(x):
    \"\"\"Docstring stays.\"\"\"
    # BEGIN SOLUTION
    secret = x * 42
    return secret
    # END SOLUTION
"""


def _notebook(source=SOLUTION, tags=("solution",)):
    cell = new_code_cell(source, metadata={"tags": list(tags)})
    cell.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    return new_notebook(cells=[new_markdown_cell("# title"), cell])


def test_stub_keeps_the_signature_and_hides_the_solution():
    stub = stub_source(SOLUTION)
    assert "def f(x):" in stub and "Docstring stays." in stub
    assert "secret" not in stub and "42" not in stub
    assert '    raise NotImplementedError("write your solution here")' in stub


@pytest.mark.parametrize(
    "source, message",
    [
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "inside a function body"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1", "never closed"),
        ("def f():\n    return 1\n    # END SOLUTION", "without BEGIN"),
    ],
)
def test_malformed_solutions_are_refused(source, message):
    with pytest.raises(StudentEditionError, match=message):
        stub_source(source)


def test_student_notebook_clears_outputs_and_retags():
    student = student_notebook(_notebook())
    cell = student.cells[1]
    assert cell.outputs == [] and cell.metadata["tags"] == ["exercise-stub"]
    assert student.metadata["openmodelslab"]["student_edition"]["solutions_stubbed"] == 1


def test_untagged_markers_and_tag_without_markers_are_refused():
    with pytest.raises(StudentEditionError, match="no 'solution' tag"):
        student_notebook(_notebook(tags=()))
    with pytest.raises(StudentEditionError, match="has no '# BEGIN SOLUTION'"):
        student_notebook(_notebook(source="x = 1"))


def test_never_writes_into_the_notebook_folder(tmp_path):
    source = tmp_path / "notebooks" / "01_x.ipynb"
    source.parent.mkdir()
    nbformat.write(_notebook(), source)
    before = source.read_bytes()
    for out in (source.parent, source.parent / "student"):
        with pytest.raises(StudentEditionError, match="inside the course's own notebook folder"):
            write_student_edition([source], out)
    assert source.read_bytes() == before


def test_an_edited_student_copy_is_kept(tmp_path):
    source = tmp_path / "src" / "01_x.ipynb"
    source.parent.mkdir()
    nbformat.write(_notebook(), source)
    out = tmp_path / "student"
    assert write_student_edition([source], out) == [out / source.name]
    assert write_student_edition([source], out) == [out / source.name]  # untouched copy: regenerated
    copy = nbformat.read(out / source.name, 4)
    copy.cells[1].source = copy.cells[1].source.replace("raise NotImplementedError", "return x * 42  #")
    nbformat.write(copy, out / source.name)
    assert write_student_edition([source], out) == []  # the student's work is kept
    assert "return x * 42" in (out / source.name).read_text()
    assert write_student_edition([source], out, force=True) == [out / source.name]


def test_course_notebooks_make_a_student_edition(tmp_path):
    written = write_student_edition(NOTEBOOKS, tmp_path / "student")
    assert len(written) == len(NOTEBOOKS)
    for path in written:
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "NotImplementedError" in text


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_fails_its_check(notebook, tmp_path):
    """Run the student edition from its own folder, as a learner would: the notebook completes, and each
    exercise solved in the saved run fails."""
    student_dir = tmp_path / "student"
    [student] = write_student_edition([notebook], student_dir)
    log = tmp_path / "checks.jsonl"
    run_with_papermill(student, tmp_path / "run" / notebook.name, log, parameters={"SMOKE": True},
                       label="student edition, smoke", cwd=student_dir, output_dir=tmp_path / "outputs")
    results = read_check_log(log)
    assert results and not [r for r in results if r["passed"]], f"a stub passed its check: {results}"
    assert {r["id"] for r in results} == exercises_passed_in_saved_outputs(notebook)
    stubs = nbformat.read(student, 4).metadata["openmodelslab"]["student_edition"]["solutions_stubbed"]
    assert len({r["id"] for r in results}) == stubs, (
        "every stubbed solution needs its own check, which must fail")
    assert all("not implemented yet" in r["reason"] for r in results)
