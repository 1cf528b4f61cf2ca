"""The exercises of a chapter, read from the chapter's own notebook (one place for all of them).

An exercise is a code cell tagged ``solution`` (the learner's function, between
``# BEGIN SOLUTION`` and ``# END SOLUTION``) followed by the cell(s) that call
``check("NN.k", ...)`` on it. Its points come from a tag ``points-N`` on the
solution cell (1 when there is none), its hint from the ``hint=`` of its check.
The workspace, the progress page, ``reveal`` and the grader all read this.

Example:
    >>> from labutils.exercises import chapter_exercises, chapter_source
    >>> [e.id for e in chapter_exercises(chapter_source("01"))]
    ['01.1', '01.2', '01.3', '01.4']
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from labutils.paths import course_root

SOLUTION_TAG = "solution"
STUB_TAG = "exercise-stub"
_POINTS_TAG = re.compile(r"^points-(\d+)$")
_CHAPTER_ID = re.compile(r"^(\d\d)\.\d+$")


@dataclass
class Exercise:
    """One auto-checked exercise of a chapter."""

    id: str
    solution_cell: int  # index of its solution cell in the notebook
    check_cells: list[int] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)  # names the solution cell defines
    hint: str = ""
    points: int = 1


def chapter_source(prefix: str) -> Path:
    """The course's own ``notebooks/NN_topic.ipynb`` for a chapter prefix such as ``"03"``."""
    prefix = str(prefix)[:2]
    found = sorted((course_root() / "notebooks").glob(f"{prefix}_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no chapter {prefix!r} in {course_root() / 'notebooks'}")
    return found[0]


def python_source(source: str) -> str:
    """``source`` with IPython magic lines (``%timeit``, ``!ls``) blanked, so that ``ast`` can read it."""
    return "\n".join("" if line.lstrip()[:1] in ("%", "!") else line for line in source.splitlines())


def parse_python(source: str) -> ast.Module:
    """``ast.parse``, retried when CPython 3.11 raises its spurious "AST constructor recursion depth
    mismatch" SystemError (python/cpython#106905, seen when another thread builds an AST meanwhile)."""
    for attempt in range(3):
        try:
            return ast.parse(source)
        except SystemError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _parse(source: str) -> ast.Module | None:
    for text in (source, python_source(source)):
        try:
            return parse_python(text)
        except SyntaxError:
            continue
    return None


def defined_names(source: str) -> list[str]:
    """Top-level functions and classes a cell defines, in order."""
    tree = _parse(source)
    if tree is None:
        return []
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [node.name for node in tree.body if isinstance(node, kinds)]


def check_calls(source: str) -> list[tuple[str, str]]:
    """``(exercise id, hint)`` of every ``check("NN.k", ...)`` call with a literal id in a cell."""
    tree = _parse(source)
    if tree is None:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        if getattr(node.func, "id", getattr(node.func, "attr", "")) != "check":
            continue
        if not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue
        hint = next((k.value for k in node.keywords if k.arg == "hint"), None)
        text = hint.value if isinstance(hint, ast.Constant) and isinstance(hint.value, str) else ""
        found.append((node.lineno, node.col_offset, node.args[0].value, text))
    return [(exercise_id, text) for _, _, exercise_id, text in sorted(found)]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def chapter_exercises(notebook) -> list[Exercise]:
    """The exercises of ``notebook`` (a path or an nbformat node), in order.

    Each ``check("NN.k", ...)`` belongs to the closest solution (or stub) cell above it.
    """
    if isinstance(notebook, (str, Path)):
        import nbformat

        notebook = nbformat.read(notebook, as_version=4)
    exercises: dict[str, Exercise] = {}
    current: tuple[int, list[str], int] | None = None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if SOLUTION_TAG in tags or STUB_TAG in tags:
            points = next((int(m.group(1)) for t in tags if (m := _POINTS_TAG.match(t))), 1)
            current = (index, defined_names(cell.source), points)
            continue
        for exercise_id, hint in check_calls(cell.source):
            if not _CHAPTER_ID.match(exercise_id):
                continue
            if exercise_id in exercises:
                exercises[exercise_id].check_cells.append(index)
                continue
            solution, functions, points = current if current else (-1, [], 1)
            exercises[exercise_id] = Exercise(exercise_id, solution, [index], functions, hint, points)
    return list(exercises.values())
