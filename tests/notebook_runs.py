"""Shared helpers for the tests that execute notebooks."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [nb.stem for nb in NOTEBOOKS]
CELL_TIMEOUT = 300  # seconds per smoke cell (the longest takes under a minute), as --nbval-cell-timeout
# "[PASS]" since issue 13; "✅" in outputs saved before it
PASSED = re.compile(r"(?:\[PASS\]|✅) Exercise (\S+) passed\.")
TIMINGS = ROOT / "_build" / "executed" / "timings.jsonl"  # summarised by conftest.py at the end


def run_with_papermill(notebook, out: Path, check_log: Path, parameters: dict, label: str = "") -> float:
    """Execute ``notebook`` (a path or a notebook node) with papermill, logging every check.

    Exercise checks are not strict here: the caller reads the log instead.
    Returns the run time; with a ``label`` it is also recorded for the summary.
    """
    env = {"OML_CHECK_LOG": str(check_log), "OML_STRICT_CHECKS": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if not isinstance(notebook, (str, Path)):
            source = out.with_name(out.stem + ".input.ipynb")
            nbformat.write(notebook, source)
            notebook = source
        start = time.perf_counter()
        papermill.execute_notebook(
            str(notebook), str(out), parameters=parameters, cwd=str(ROOT / "notebooks"),
            kernel_name="python3", progress_bar=False,
            execution_timeout=CELL_TIMEOUT,  # a hung kernel fails the test instead of stalling CI
        )
        seconds = time.perf_counter() - start
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
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
