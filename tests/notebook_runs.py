"""Shared helpers for the tests that execute notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from course.runner import CELL_TIMEOUT, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [nb.stem for nb in NOTEBOOKS]
# "[PASS]" since issue 13; "✅" in outputs saved before it; "[PASS] 练习 01.1 通过。" in Chinese
PASSED = re.compile(r"(?:(?:\[PASS\]|✅) Exercise|\[PASS\] 练习) (\S+) (?:passed\.|通过。)")
TIMINGS = ROOT / "_build" / "executed" / "timings.jsonl"  # summarised by conftest.py at the end


def run_with_papermill(notebook, out: Path, check_log: Path, parameters: dict, label: str = "",
                       cwd: Path | None = None, output_dir: Path | None = None) -> float:
    """Execute ``notebook`` (a path or a notebook node) with the course runner, logging every check.

    Exercise checks are not strict here: the caller reads the log instead. The run writes into its
    own ``OML_OUTPUT_DIR`` (``output_dir``, default: a folder beside ``out``), so parallel runs of one
    chapter never share files. Returns the run time; with a ``label`` it is also recorded for the summary.
    """
    output_dir = output_dir or out.with_name(out.stem + ".outputs")
    env = {"OML_CHECK_LOG": str(check_log), "OML_STRICT_CHECKS": "0", "OML_OUTPUT_DIR": str(output_dir)}
    seconds = run_notebook(notebook, out, parameters=parameters, env=env, cwd=cwd,
                           cell_timeout=CELL_TIMEOUT).seconds  # a hung kernel fails the test, not CI
    if label:
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        with open(TIMINGS, "a", encoding="utf-8") as f:
            f.write(json.dumps({"notebook": out.stem, "run": label, "seconds": round(seconds, 1)}) + "\n")
    return seconds


def read_check_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def exercises_passed_in_saved_outputs(notebook_path: Path) -> set[str]:
    """Exercise ids whose check printed a pass in the committed full run."""
    notebook = nbformat.read(notebook_path, as_version=4)
    found = set()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                found.update(PASSED.findall(output.get("text", "")))
    return found
