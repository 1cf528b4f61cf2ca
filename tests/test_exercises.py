"""No exercise appears in two places of the course.

An exercise is a code cell tagged ``solution`` whose function body holds a
``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block (see ``course.student``).
Two exercises *share* when

- their stub functions (the ``def`` around the block) have the same name, or
- their solution blocks are the same code once normalised: parsed with ``ast``
  and dumped, so comments, blank lines, line breaks and quoting do not count,
  but any change of a name, a constant or an operation does.

Both are checked across all chapters and within one chapter.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.notebook_runs import NOTEBOOKS

SOLUTION_TAG = "solution"
_MARKER = re.compile(r"^\s*# (BEGIN|END) SOLUTION\s*$")


@dataclass(frozen=True)
class Exercise:
    where: str  # "01_backpropagation.ipynb, cell 92"
    function: str  # the stub's name
    solution: str  # normalised solution source


def normalised(block: str) -> str:
    """The solution block as ``ast.dump`` of its statements (layout and comments ignored)."""
    code = textwrap.dedent(block)
    try:
        return ast.dump(ast.parse(code), annotate_fields=False)
    except SyntaxError:  # not valid on its own (unlikely): compare the code without comments and blanks
        lines = [line.split("#", 1)[0].strip() for line in code.splitlines()]
        return "\n".join(line for line in lines if line)


def exercises_in(source: str, where: str) -> list[Exercise]:
    """Every solution block of one cell, with the name of the function that encloses it."""
    lines = source.splitlines()
    blocks, start = [], None
    for number, line in enumerate(lines, start=1):
        match = _MARKER.match(line)
        if match and match.group(1) == "BEGIN":
            start = number
        elif match and start is not None:
            blocks.append((start, number))
            start = None
    functions = [node for node in ast.walk(ast.parse(source))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = []
    for begin, end in blocks:
        enclosing = [f for f in functions if f.lineno < begin <= f.end_lineno]  # END follows the last line
        assert enclosing, f"{where}: a solution block outside any function"
        innermost = max(enclosing, key=lambda f: f.lineno)
        found.append(Exercise(where, innermost.name, normalised("\n".join(lines[begin:end - 1]))))
    return found


def course_exercises(notebooks: list[Path]) -> list[Exercise]:
    found = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
                found += exercises_in(cell.source, f"{path.name}, cell {index}")
    return found


def shared(exercises: list[Exercise]) -> dict[str, list[str]]:
    """What two or more exercises share: {'function f': [places], 'solution of f, g': [places]}."""
    by_name, by_solution = defaultdict(list), defaultdict(list)
    for exercise in exercises:
        by_name[exercise.function].append(exercise)
        by_solution[exercise.solution].append(exercise)
    problems = {}
    for name, group in by_name.items():
        if len(group) > 1:
            problems[f"function name {name!r}"] = [e.where for e in group]
    for group in by_solution.values():
        if len(group) > 1:
            names = ", ".join(sorted({e.function for e in group}))
            problems[f"identical solution ({names})"] = [e.where for e in group]
    return problems


def test_the_course_has_exercises_to_compare():
    exercises = course_exercises(NOTEBOOKS)
    assert len(exercises) >= 4 * len(NOTEBOOKS) - 3, "fewer exercises than expected: is the parser broken?"
    assert {Path(e.where.split(",")[0]).stem for e in exercises} == {p.stem for p in NOTEBOOKS}


def test_no_two_exercises_share_a_function_name_or_a_solution():
    problems = shared(course_exercises(NOTEBOOKS))
    assert not problems, "exercises repeated across the course:\n" + "\n".join(
        f"  {what}: {', '.join(places)}" for what, places in problems.items())


# The test above must be able to fail: small notebooks with known repeats.

def _write(tmp_path: Path, name: str, *sources: str) -> Path:
    cells = [new_code_cell(source, metadata={"tags": [SOLUTION_TAG]}) for source in sources]
    path = tmp_path / name
    nbformat.write(new_notebook(cells=cells), path)
    return path


ONE = ('def area(r):\n    """Docstring."""\n    # BEGIN SOLUTION\n    return 3.14159 * r ** 2\n'
       '    # END SOLUTION\n')


@pytest.mark.parametrize("other, what", [
    ('def area(r):\n    # BEGIN SOLUTION\n    return r * r * 3.14159\n    # END SOLUTION\n',
     "function name 'area'"),
    # same code, other layout and comments: still the same solution
    ("def disc(r):\n    # BEGIN SOLUTION\n    return (3.14159\n"
     "            * r**2)  # pi r^2\n    # END SOLUTION\n",
     "identical solution (area, disc)"),
])
def test_repeats_are_found_across_chapters(tmp_path, other, what):
    notebooks = [_write(tmp_path, "01_a.ipynb", ONE), _write(tmp_path, "02_b.ipynb", other)]
    problems = shared(course_exercises(notebooks))
    assert list(problems) == [what] and len(problems[what]) == 2


def test_different_exercises_are_not_flagged(tmp_path):
    other = "def disc(r):\n    # BEGIN SOLUTION\n    return 3.14159 * r ** 3\n    # END SOLUTION\n"
    nested = ("def outer(x):\n    def helper(y):\n        return y\n    # BEGIN SOLUTION\n"
              "    return helper(x) + 1\n    # END SOLUTION\n")
    notebooks = [_write(tmp_path, "01_a.ipynb", ONE), _write(tmp_path, "02_b.ipynb", other, nested)]
    exercises = course_exercises(notebooks)
    assert [e.function for e in exercises] == ["area", "disc", "outer"]
    assert shared(exercises) == {}
