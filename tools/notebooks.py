"""Keep the notebook pairs honest: check sync, sync safely, execute, verify saved outputs.

    python tools/notebooks.py check            # pairs in sync? saved outputs from a full run?
    python tools/notebooks.py sync             # jupytext --sync, refusing to overwrite edits
    python tools/notebooks.py execute [NAMES]  # full run, outputs saved into notebooks/*.ipynb
    python tools/notebooks.py status OUT.md    # the execution-status table for the book

``notebooks/NN_topic.py`` (percent format) is the file people edit; the paired
``.ipynb`` carries the outputs of one complete run at the default (full)
parameters, which the website shows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
META_KEY = "openmodelslab"


def sources() -> list[Path]:
    """Every chapter's ``.py`` file, in chapter order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


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
    notebook = nbformat.read(ipynb, as_version=4)
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
            if "[FAIL] Exercise" in text or "❌ Exercise" in text:  # ❌: outputs saved before issue 13
                problems.append(f"code cell {index} saved a failed exercise check")
    if not any(SMOKE_LINE in c.source for c in code if "parameters" in c.metadata.get("tags", [])):
        problems.append(f"no `parameters`-tagged cell containing `{SMOKE_LINE}`")
    if problems:
        problems.append(f"run `make execute NB={ipynb.stem[:2]}` to refresh the outputs")
    return problems


SMOKE_LINE = 'SMOKE = os.environ.get("OML_SMOKE", "0") == "1"'


def _inputs_edited(path: Path) -> bool:
    """Whether the cells (not outputs) of ``path`` differ from the last commit."""
    relative = path.relative_to(ROOT).as_posix()
    committed = subprocess.run(["git", "show", f"HEAD:{relative}"], cwd=ROOT, capture_output=True, text=True)
    if committed.returncode != 0:
        return False  # not committed yet: no earlier version to lose
    fmt = "ipynb" if path.suffix == ".ipynb" else "py:percent"
    return _cells(jupytext.reads(committed.stdout, fmt=fmt)) != _cells(jupytext.read(path))


def sync(paths: list[Path]) -> int:
    """Sync each pair with jupytext (the newer file wins), refusing to overwrite edited cells."""
    status = 0
    for py in paths:
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and not pair_problems(py):
            continue
        if ipynb.exists():
            older = py if py.stat().st_mtime < ipynb.stat().st_mtime else ipynb
            if _inputs_edited(older):
                print(
                    f"refusing to sync {py.stem}: {older.name} is older than its pair but has edited cells "
                    f"since the last commit, which syncing would overwrite. Copy the edits you want into "
                    f"the newer file (or commit {older.name}) and run `make sync` again.",
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


def execute(py: Path, mode: str, out: Path | None = None, parameters: dict | None = None) -> float:
    """Run one notebook with papermill and return its run time in seconds.

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
    env_before = os.environ.get("OML_LIVE_PLOT")
    os.environ["OML_LIVE_PLOT"] = "0"  # headless: only the final figure of each live plot
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / py.with_suffix(".ipynb").name
        nbformat.write(jupytext.read(py.with_suffix(".ipynb")), scratch)
        # papermill saves after every cell, so a failed run leaves its outputs up to the error here
        partial = ROOT / "_build" / "failed" / f"{py.stem}.{mode}.ipynb"
        partial.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            notebook = papermill.execute_notebook(
                str(scratch), str(partial), parameters=params or None, cwd=str(py.parent),
                kernel_name="python3", progress_bar=False, log_output=False,
            )
        except papermill.PapermillExecutionError as error:
            raise SystemExit(
                f"{py.name}: {mode} run failed in cell {error.exec_count} after "
                f"{time.perf_counter() - start:.0f} s: {error.ename}: {error.evalue}\n"
                f"The outputs up to the error are in {partial}; {target} was not changed."
            ) from None
        finally:
            if env_before is None:
                os.environ.pop("OML_LIVE_PLOT", None)
            else:
                os.environ["OML_LIVE_PLOT"] = env_before
        seconds = time.perf_counter() - start
    partial.unlink(missing_ok=True)
    _strip_papermill(notebook)
    import torch

    notebook.metadata[META_KEY] = {
        "execution": {
            "mode": mode,
            "seconds": round(seconds, 1),
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
    return seconds


def book_chapters() -> list[Path]:
    """The notebooks the book lists in _toc.yml, in order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.py" for f in files if f.startswith("notebooks/")]


def status_table(out: Path) -> None:
    """Markdown table of the last full run of each chapter in the book, read from the saved notebooks."""
    rows = ["| chapter | full run | date | machine |", "|---|---|---|---|"]
    for py in book_chapters():
        run = nbformat.read(py.with_suffix(".ipynb"), as_version=4).metadata.get(META_KEY, {}).get("execution", {})
        link = f"[{py.stem}](../notebooks/{py.stem}.ipynb)"
        seconds = run.get("seconds")
        shown = f"{seconds / 60:.1f} min" if seconds and seconds >= 90 else f"{seconds} s"
        rows.append(f"| {link} | {shown} | {run.get('date', '?')} | {run.get('machine', '?')} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _select(names: list[str]) -> list[Path]:
    chosen = [p for p in sources() if not names or any(p.stem.startswith(n) for n in names)]
    if names and not chosen:
        raise SystemExit(f"No notebook matches {names}; available: {[p.stem for p in sources()]}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check, sync and execute the course notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    sub.add_parser("sync").add_argument("names", nargs="*")
    run = sub.add_parser("execute")
    run.add_argument("names", nargs="*", help="chapter prefixes such as 00 03 (default: all)")
    sub.add_parser("status").add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "check":
        bad = 0
        for py in sources():
            for problem in pair_problems(py) or output_problems(py.with_suffix(".ipynb")):
                print(f"{py.stem}: {problem}", file=sys.stderr)
                bad = 1
        print("notebooks: all pairs in sync, all outputs from a complete full run" if not bad else "")
        return bad
    if args.command == "sync":
        return sync(_select(args.names))
    if args.command == "execute":
        for py in _select(args.names):
            seconds = execute(py, "full")
            print(f"{py.stem}: full run {seconds:.0f} s, outputs saved to {py.with_suffix('.ipynb').name}")
        return 0
    status_table(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
