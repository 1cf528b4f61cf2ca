"""Keep the notebook pairs honest: check sync, sync safely, execute, verify saved outputs.

    python -m course check             # pairs in sync? saved outputs from a full run?
    python -m course sync [--force]    # jupytext --sync, refusing to overwrite edits
    python -m course execute [NAMES]   # full run, outputs saved into notebooks/*.ipynb
    python -m course status OUT.md     # the execution-status table for the book

``notebooks/NN_topic.py`` (percent format) is the file people edit; the paired
``.ipynb`` carries the outputs of one complete run at the default (full)
parameters, which the website shows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

from course.runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
META_KEY = "openmodelslab"
SMOKE_LINE = 'SMOKE = os.environ.get("OML_SMOKE", "0") == "1"'
# "[PASS]"/"[FAIL]" since issue 13; "✅"/"❌" in outputs saved before it; "练习" in the Chinese edition
FAIL_MARKS = ("[FAIL] Exercise", "❌ Exercise", "[FAIL] 练习")


def notebooks_dir() -> Path:
    return ROOT / "notebooks"


def sources() -> list[Path]:
    """Every chapter's ``.py`` file, in chapter order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.py"))


def _cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", [])))
        for cell in notebook.cells
    ]


def pair_problems(py: Path) -> list[str]:
    """Why ``py`` and its ``.ipynb`` disagree (empty when in sync)."""
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{ipynb.name} is missing: run `make sync` to create it from {py.name}"]
    text_cells, nb_cells = _cells(jupytext.read(py)), _cells(jupytext.read(ipynb))
    problems = []
    if len(text_cells) != len(nb_cells):
        problems.append(f"{py.name} has {len(text_cells)} cells, {ipynb.name} has {len(nb_cells)}")
    for index, (a, b) in enumerate(zip(text_cells, nb_cells)):
        if a != b:
            first = (a[1] or a[0]).splitlines()[0][:60] if (a[1] or a[0]) else ""
            problems.append(f"cell {index} differs ({first!r}...)")
            break
    if problems:
        problems.append("run `make sync` (the newer file of the pair wins)")
    return problems


def output_problems(ipynb: Path) -> list[str]:
    """Why the saved outputs are not one clean, complete full run (empty when fine)."""
    problems = _run_problems(nbformat.read(ipynb, as_version=4))
    if problems:
        problems.append(restore_hint(ipynb))
    return problems


def _run_problems(notebook) -> list[str]:
    problems = []
    run = notebook.metadata.get(META_KEY, {}).get("execution", {})
    if run.get("mode") != "full":
        problems.append("no record of a full run (metadata openmodelslab.execution)")
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append("code cells were not all executed once, top to bottom (edited after the run?)")
    for index, cell in enumerate(code):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"code cell {index} saved an error: {output.get('ename')}")
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            if any(mark in text for mark in FAIL_MARKS):
                problems.append(f"code cell {index} saved a failed exercise check")
    if not any(SMOKE_LINE in c.source for c in code if "parameters" in c.metadata.get("tags", [])):
        problems.append(f"no `parameters`-tagged cell containing `{SMOKE_LINE}`")
    return problems


def restore_hint(ipynb: Path) -> str:
    """What to do when a chapter's .ipynb no longer holds a full run (saving it in JupyterLab does that)."""
    number = ipynb.stem[:2]
    rerun = f"`make execute NB={number}` re-runs it at full settings"
    committed, _ = committed_text(ipynb)
    seconds = None
    if committed is not None:
        old = nbformat.reads(committed, as_version=4)
        seconds = old.metadata.get(META_KEY, {}).get("execution", {}).get("seconds")
        if not _run_problems(old):
            relative = ipynb.resolve().relative_to(ROOT.resolve()).as_posix()
            took = f" (the last full run took {format_seconds(seconds)})" if seconds else ""
            return (
                f"{relative} no longer holds the committed full run: saving the chapter in JupyterLab "
                f"(or a sync) rewrites it with that session's outputs. To restore it, run "
                f"`git checkout {relative}` (it keeps your .py; if the .py changed, the pair is then out of "
                f"sync and `make sync` would rewrite the .ipynb again), or {rerun}{took}"
            )
    return f"{rerun} and saves its outputs"


def format_seconds(seconds) -> str:
    """'42 s', '3.5 min', or 'not recorded' for a run with no time."""
    if not isinstance(seconds, (int, float)):
        return "not recorded"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:g} s"


def committed_text(path: Path) -> tuple[str | None, str]:
    """The text of ``path`` in the last commit of the course's own git checkout, or None and why not."""
    name = path.name
    try:
        relative = path.resolve().relative_to(ROOT.resolve()).as_posix()
    except ValueError:
        return None, f"{path} is outside the course folder {ROOT}, so it has no committed copy"
    git = shutil.which("git")
    if git is None:
        return None, "git is not installed, so no committed copy can be read"
    if not (ROOT / ".git").exists():
        return None, (f"{ROOT} is not a git checkout (no .git: a zip download?), "
                      f"so {name} has no committed copy")
    top = subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        return None, f"{ROOT} is not the top of a working git checkout, so {name} has no committed copy"
    shown = subprocess.run([git, "show", f"HEAD:{relative}"], cwd=ROOT, capture_output=True, text=True,
                           check=False)
    if shown.returncode != 0:
        return None, f"{name} was never committed, so there is no committed copy to fall back on"
    return shown.stdout, ""


def _edits_at_risk(path: Path) -> str | None:
    """Why overwriting ``path`` could lose work (None when its cells equal the committed copy)."""
    committed, why_not = committed_text(path)
    if committed is None:
        return why_not
    fmt = "ipynb" if path.suffix == ".ipynb" else "py:percent"
    if _cells(jupytext.reads(committed, fmt=fmt)) != _cells(jupytext.read(path)):
        return f"{path.name} has edited cells since the last commit"
    return None


def sync(paths: list[Path], force: bool = False) -> int:
    """Sync each pair with jupytext (the newer file wins), refusing to overwrite edits it cannot restore.

    The older file of a pair is overwritten only when its cells equal its committed copy; a file that
    was never committed, or a folder that is not a git checkout, has no copy to fall back on, so it is
    refused too, unless ``force``.
    """
    status = 0
    for py in paths:
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and not pair_problems(py):
            continue
        if ipynb.exists() and not force:
            older = py if py.stat().st_mtime < ipynb.stat().st_mtime else ipynb
            risk = _edits_at_risk(older)
            if risk:
                print(
                    f"refusing to sync {py.stem}: {older.name} is older than its pair and syncing would "
                    f"overwrite it, but {risk}. Copy the edits you want into the newer file (or commit "
                    f"{older.name}) and run `make sync` again, or run `make sync FORCE=1` "
                    f"(python -m course sync --force) to let the newer file win.",
                    file=sys.stderr,
                )
                status = 1
                continue
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(py)], check=True)
    return status


def _strip_papermill(notebook) -> None:
    """Drop papermill's bookkeeping so the .ipynb stays identical to its .py in Jupytext's eyes."""
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    notebook.metadata.pop("papermill", None)


# No chapter cell takes near this long even on a busy 2-core machine; a kernel that hangs (it has
# happened at a widget cell) fails the run after it instead of holding the machine for good.
CELL_TIMEOUT = 3600


def print_slowest_cells(name: str, notebook, count: int = 5) -> None:
    """Print the cells that took longest (papermill's durations), so a run's time can be read."""
    timed = [(cell.metadata.get("papermill", {}).get("duration") or 0.0, index, cell)
             for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    for seconds, index, cell in sorted(timed, key=lambda t: t[0], reverse=True)[:count]:
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
        print(f"{name}: cell {index} took {seconds:.1f} s: {first_line[:70]}")


def execute(py: Path, mode: str, out: Path | None = None, parameters: dict | None = None,
            env: dict[str, str] | None = None) -> float:
    """Run one notebook with the course runner and return its run time in seconds.

    ``mode="full"`` writes the executed notebook back over the paired ``.ipynb``
    (only when the pair is in sync, so no edit is lost); ``mode="smoke"``
    injects ``SMOKE=True`` and writes to ``out``.
    """
    import papermill

    problems = pair_problems(py)
    if problems:
        raise SystemExit(f"{py.name}: pair out of sync, not executing: " + "; ".join(problems))
    target = py.with_suffix(".ipynb") if mode == "full" else out
    params = dict(parameters or {})
    if mode == "smoke":
        params.setdefault("SMOKE", True)
    source = jupytext.read(py.with_suffix(".ipynb"))
    # saved after every cell, so a failed run leaves its outputs up to the error here
    partial = ROOT / "_build" / "failed" / f"{py.stem}.{mode}.ipynb"
    try:
        run = run_notebook(source, partial, parameters=params, env=env, cwd=py.parent,
                           cell_timeout=CELL_TIMEOUT)
    except papermill.PapermillExecutionError as error:
        raise SystemExit(
            f"{py.name}: {mode} run failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
            f"The outputs up to the error are in {partial}; {target} was not changed."
        ) from None
    except TimeoutError as error:  # nbclient's CellTimeoutError
        raise SystemExit(
            f"{py.name}: {mode} run stopped: a cell ran longer than {CELL_TIMEOUT} s ({error}).\n"
            f"The outputs up to it are in {partial}; {target} was not changed."
        ) from None
    partial.unlink(missing_ok=True)
    notebook = run.notebook
    print_slowest_cells(py.name, notebook)
    _strip_papermill(notebook)
    import torch

    notebook.metadata[META_KEY] = {
        "execution": {
            "mode": mode,
            "seconds": round(run.seconds, 1),
            # the kernel process's peak resident memory (its child processes not counted)
            "peak_memory_mb": None if run.peak_memory_mb is None else round(run.peak_memory_mb),
            "date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
            "torch": torch.__version__,
            "parameters": params,
        }
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    if mode == "full":
        os.utime(py)  # the .py stays the newer file, so Jupytext in JupyterLab treats it as the source
    return run.seconds


def book_chapters() -> list[Path]:
    """The notebooks the book lists in _toc.yml, in order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.py" for f in files if f.startswith("notebooks/")]


def status_table(out: Path) -> None:
    """Markdown table of the last full run of each chapter in the book, read from the saved notebooks."""
    rows = ["| chapter | full run | peak memory (kernel) | date | machine |", "|---|---|---|---|---|"]
    for py in book_chapters():
        saved = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        run = saved.metadata.get(META_KEY, {}).get("execution", {})
        link = f"[{py.stem}](../notebooks/{py.stem}.ipynb)"
        peak = run.get("peak_memory_mb")
        rows.append(f"| {link} | {format_seconds(run.get('seconds'))} | "
                    f"{f'{peak:,.0f} MB' if peak else 'not recorded'} | {run.get('date', '?')} | "
                    f"{run.get('machine', '?')} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _select(names: list[str]) -> list[Path]:
    chosen = [p for p in sources() if not names or any(p.stem.startswith(n) for n in names)]
    if names and not chosen:
        raise SystemExit(f"No notebook matches {names}; available: {[p.stem for p in sources()]}")
    return chosen


def check_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course check", description="Check every notebook pair.")
    parser.parse_args(argv)
    bad = 0
    for py in sources():
        for problem in pair_problems(py) or output_problems(py.with_suffix(".ipynb")):
            print(f"{py.stem}: {problem}", file=sys.stderr)
            bad = 1
    print("notebooks: all pairs in sync, all outputs from a complete full run" if not bad else "")
    return bad


def sync_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course sync", description="Sync .py and .ipynb pairs.")
    parser.add_argument("names", nargs="*", help="chapter prefixes such as 00 03 (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="let the newer file win even where the older one has no committed copy")
    args = parser.parse_args(argv)
    return sync(_select(args.names), force=args.force)


def execute_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course execute", description="Full runs of chapters.")
    parser.add_argument("names", nargs="*", help="chapter prefixes such as 00 03 (default: all)")
    args = parser.parse_args(argv)
    for py in _select(args.names):
        seconds = execute(py, "full")
        print(f"{py.stem}: full run {seconds:.0f} s, outputs saved to {py.with_suffix('.ipynb').name}")
    return 0


def status_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course status", description="Execution-status table.")
    parser.add_argument("out", type=Path)
    status_table(parser.parse_args(argv).out)
    return 0
