"""Write the student edition: every notebook with its solutions replaced by stubs.

A solution lives in a code cell tagged ``solution``, between two marker lines
inside a function body::

    def tanh_backward(x):
        # BEGIN SOLUTION
        return 1 - math.tanh(x) ** 2
        # END SOLUTION

The student edition keeps the signature and replaces the block with
``raise NotImplementedError``, which ``labutils.check`` reports as "not
implemented yet". Editions go to a build folder, never into ``notebooks/``,
and a student copy that was edited is kept rather than overwritten.

Usage: ``python -m course student [--out _build/student] [--force]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
SOLUTION_TAG = "solution"
STUB_TAG = "exercise-stub"
_MARKER = re.compile(r"^(\s*)# (BEGIN|END) SOLUTION\s*$")


class StudentEditionError(ValueError):
    """A solution cell that cannot be turned into a stub safely."""


def stub_source(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block in ``source`` with a stub."""
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(), start=1):
        match = _MARKER.match(line)
        if match and match.group(2) == "BEGIN":
            if inside:
                raise StudentEditionError(
                    f"{where}, line {number}: BEGIN SOLUTION inside another solution block")
            inside, indent = True, match.group(1)
            if not indent:
                raise StudentEditionError(
                    f"{where}, line {number}: put the solution inside a function body (indented), "
                    "so the stub's NotImplementedError does not stop the notebook"
                )
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f'{indent}raise NotImplementedError("write your solution here")')
        elif match:
            if not inside:
                raise StudentEditionError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise StudentEditionError(f"{where}: BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out)


def _sources_hash(notebook) -> str:
    text = json.dumps([cell.source for cell in notebook.cells], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def student_notebook(notebook, name: str = "notebook"):
    """A copy of ``notebook`` with stubs for solutions and no outputs."""
    result = nbformat.reads(nbformat.writes(notebook), as_version=4)  # a deep copy
    solutions = 0
    for index, cell in enumerate(result.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        where = f"{name}, cell {index}"
        has_marker = BEGIN in cell.source or END in cell.source
        if SOLUTION_TAG in tags:
            if not has_marker:
                raise StudentEditionError(f"{where} is tagged '{SOLUTION_TAG}' but has no '{BEGIN}' block")
            cell.source = stub_source(cell.source, where)
            cell.metadata["tags"] = [t for t in tags if t != SOLUTION_TAG] + [STUB_TAG]
            solutions += 1
        elif has_marker:
            raise StudentEditionError(f"{where} has solution markers but no '{SOLUTION_TAG}' tag: tag it")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    result.metadata.pop("widgets", None)
    result.metadata.setdefault("openmodelslab", {})["student_edition"] = {
        "solutions_stubbed": solutions,
        "sources_sha256": _sources_hash(result),
    }
    return result


def _was_edited(path: Path) -> bool:
    existing = nbformat.read(path, as_version=4)
    recorded = existing.metadata.get("openmodelslab", {}).get("student_edition", {}).get("sources_sha256")
    return recorded != _sources_hash(existing)


def write_student_edition(sources: list[Path], out_dir: Path, force: bool = False) -> list[Path]:
    """Write a student copy of each notebook into ``out_dir``; return the paths written."""
    out_dir = out_dir.resolve()
    for source in sources:
        if out_dir == source.parent.resolve() or source.parent.resolve() in out_dir.parents:
            raise StudentEditionError(
                f"Refusing to write the student edition into {out_dir}: it is inside the course's own "
                f"notebook folder {source.parent}. Choose a build folder such as _build/student."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out_dir / source.name
        if target.exists() and not force and _was_edited(target):
            print(f"kept {target}: it was edited since it was generated (use --force to replace it)")
            continue
        notebook = student_notebook(nbformat.read(source, as_version=4), source.name)
        nbformat.write(notebook, target)
        written.append(target)
        stubs = notebook.metadata["openmodelslab"]["student_edition"]["solutions_stubbed"]
        print(f"wrote {target} ({stubs} exercise stub{'s' * (stubs != 1)})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course student", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=Path("_build/student"))
    parser.add_argument("--force", action="store_true", help="replace student copies even if edited")
    args = parser.parse_args(argv)
    sources = args.notebooks or sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
    if not sources:
        print("No notebooks found: run from the course folder or name them.", file=sys.stderr)
        return 2
    try:
        write_student_edition(sources, args.out, args.force)
    except StudentEditionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
