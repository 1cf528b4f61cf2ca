"""The teacher's gradebook: score a folder of submitted notebooks with the course's own checks.

    python -m course grade SUBMISSIONS [--chapter 01] [--out DIR] [--roster roster.csv]

``SUBMISSIONS`` holds one folder or one ``.ipynb`` per student; the student's name
is the folder's or the file's name. The grader writes ``gradebook.csv``
(student, chapter, one column per exercise, total, status) and one feedback file
per student into ``--out`` (default ``_build/grades/<folder name>``), never into
the submissions folder.

Tamper-proof: saved outputs are never read, and the submission's notebook is never
run as it is. For each exercise the grader takes only the *function definitions*
(and imports) from the learner's solution cell, puts them in place of the solution
cell in the course's own copy of the chapter, and runs that in a fresh kernel: the
checks, their expected values and everything around them come from the course.
A redefined ``check``, an edited expected value, or a cell printing "passed" is
simply not there when grading runs; the feedback lists what was ignored.

Safe and bounded: each submission runs in its own temporary folder (its cwd and
HOME; the submission is a copy), in smoke mode, with a per-cell and a
per-notebook time limit, with the network blocked (the course's offline guard),
and with a Python audit hook that refuses writes, deletes, renames and new
processes outside that folder. This guards against accidents and casual tricks;
it is not a sandbox for code written to attack the grader (see the teaching guide).
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import nbformat

from course.student import stub_source
from labutils.exercises import (
    Exercise, chapter_exercises, chapter_source, defined_names, parse_python, python_source,
)
from labutils.paths import ROOT_ENV_VAR, course_root

_AST_LOCK = threading.Lock()
CELL_TIMEOUT = 60  # seconds for one cell (smoke cells of the course take a few seconds)
NOTEBOOK_TIMEOUT = 600  # seconds for one submission, kernel start included
PROBE_TIMEOUT = 10  # seconds for the kernel to answer again after an interrupted cell
_HEADING = re.compile(r"^#\s*(\d\d)\s*[·.:-]", re.MULTILINE)
_SUSPICIOUS = re.compile(
    r"\b(globals|builtins|__builtins__|sys\.modules|setattr|__dict__|labutils\.check|_oml_\w*|"
    r"subprocess|socket|os\.system|os\._exit|ctypes|OML_CHECK_LOG)\b"
)


@dataclasses.dataclass
class Result:
    """One student's grade: points per exercise, a status, and the feedback lines."""

    student: str
    chapter: str
    points: dict[str, int]
    status: str = "graded"
    feedback: dict[str, str] = dataclasses.field(default_factory=dict)  # exercise id -> one line
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.points.values())


# ---------------------------------------------------------------- the course side


@dataclasses.dataclass
class Chapter:
    """What the grader knows of a chapter, all from the course's own notebook."""

    stem: str
    notebook: nbformat.NotebookNode
    exercises: list[Exercise]
    protected: set[str]  # names the course binds (not imports), which a submission may not redefine
    imports: dict[str, str]  # name -> module the course imports under that name
    stubs: dict[str, str]  # function name -> its stub's AST dump (to spot untouched stubs)

    @property
    def max_points(self) -> int:
        return sum(e.points for e in self.exercises)


def _bound_names(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    names, imports = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                origin = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                imports[(alias.asname or alias.name).split(".")[0]] = origin
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names, imports


def load_chapter(prefix: str, root: Path | None = None) -> Chapter:
    """Read a chapter's exercises, protected names and stubs from the course's own notebook."""
    if root is not None:
        found = sorted((root / "notebooks").glob(f"{prefix[:2]}_*.ipynb"))
        if not found:
            raise FileNotFoundError(f"no chapter {prefix!r} in {root / 'notebooks'}")
        source = found[0]
    else:
        source = chapter_source(prefix)
    notebook = nbformat.read(source, as_version=4)
    exercises = chapter_exercises(notebook)
    if not exercises:
        raise ValueError(f"{source.name} has no auto-checked exercises to grade")
    functions = {f for e in exercises for f in e.functions}
    protected, imports = {"check"}, {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            names, found_imports = _bound_names(parse_python(cell.source))
        except SyntaxError:
            continue
        protected |= names
        imports.update(found_imports)
    stubs = {}
    for exercise in exercises:
        if exercise.solution_cell >= 0:
            stub = parse_python(stub_source(notebook.cells[exercise.solution_cell].source))
            stubs.update({n.name: ast.dump(n) for n in stub.body if isinstance(n, ast.FunctionDef)})
    return Chapter(source.stem, notebook, exercises, protected - functions, imports, stubs)


# ---------------------------------------------------------------- the submission side


def chapter_of(notebook) -> str | None:
    """The chapter a notebook says it is (workspace metadata, else its first heading), or None."""
    stem = notebook.metadata.get("openmodelslab", {}).get("chapter")
    if isinstance(stem, str) and re.match(r"^\d\d", stem):
        return stem[:2]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = _HEADING.search(cell.source)
            if match:
                return match.group(1)
    return None


def _segment(source: str, node: ast.stmt) -> str:
    lines = source.splitlines()
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1 : node.end_lineno])


def learner_code(chapter: Chapter, exercise: Exercise, notebook) -> tuple[str | None, str, list[str]]:
    """``(code, state, notes)`` for one exercise: the learner's definitions, filtered.

    ``state`` is "ok", "missing", "stub" (untouched) or "syntax"; ``code`` is None unless "ok".
    """
    wanted = set(exercise.functions)
    cell_source, broken = None, None
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if wanted & set(defined_names(cell.source)):
            cell_source = cell.source
        elif any(re.search(rf"^\s*def\s+{re.escape(f)}\s*\(", cell.source, re.MULTILINE) for f in wanted):
            broken = cell.source
    names = ", ".join(f"`{f}`" for f in exercise.functions)
    if cell_source is None:
        if broken is not None:
            try:
                parse_python(broken)
            except SyntaxError as error:
                return (
                    None,
                    "syntax",
                    [(f"{exercise.id}: the cell defining {names} has a syntax error "
                      f"(line {error.lineno}: {error.msg})")],
                )
        return None, "missing", [f"{exercise.id}: no definition of {names} found"]
    cell_source = python_source(cell_source)  # parses: defined_names() found the functions in it
    tree = parse_python(cell_source)
    kept, notes = [], []
    for node in tree.body:
        reason = None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in chapter.protected:
                reason = f"it redefines `{node.name}`, which the course defines"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = (alias.asname or alias.name).split(".")[0]
                origin = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                if bound in chapter.protected or chapter.imports.get(bound, origin) != origin:
                    reason = f"it rebinds `{bound}`, which the course defines"
        else:
            reason = "only function definitions and imports of a solution cell are graded"
        segment = _segment(cell_source, node)
        if reason:
            first = segment.strip().splitlines()[0][:60]
            notes.append(f"{exercise.id}: ignored line {node.lineno} `{first}`: {reason}")
        else:
            kept.append(segment)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted}
    if (
        functions
        and all(ast.dump(n) == chapter.stubs.get(name) for name, n in functions.items())
        and len(functions) == len(wanted)
    ):
        return None, "stub", notes
    if _SUSPICIOUS.search("\n".join(kept)):
        notes.append(
            f"{exercise.id}: the code uses names that can reach the grader's machinery "
            f"({_SUSPICIOUS.search(chr(10).join(kept)).group(0)}): worth a look by hand"
        )
    return "\n\n".join(kept), "ok", notes


# ---------------------------------------------------------------- running


def _guard_code(sandbox: Path) -> str:
    """The grader's first cell: the course's checker kept aside, and an audit hook on the sandbox."""
    return textwrap.dedent(f"""\
        import os as _oml_os, sys as _oml_sys
        def _oml_make_guard():
            allowed = ({str(sandbox)!r}, "/dev/", "/proc/self/")
            local = ("127.", "::1", "localhost", "0.0.0.0")
            def inside(path):
                if isinstance(path, int):
                    return True
                try:
                    path = _oml_os.path.realpath(_oml_os.fsdecode(path))
                except Exception:
                    return False
                return any(path == a.rstrip("/") or path.startswith(a.rstrip("/") + "/") for a in allowed)
            writes = _oml_os.O_WRONLY | _oml_os.O_RDWR | _oml_os.O_CREAT | _oml_os.O_APPEND | _oml_os.O_TRUNC
            paths = {{"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1,
                     "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1, "os.rename": 2, "os.link": 2,
                     "os.symlink": 2, "shutil.copyfile": 2, "shutil.move": 2}}
            def hook(event, args):
                if event == "open":
                    path, mode, flags = args
                    if mode is None:
                        writing = bool(flags & writes)
                    else:
                        writing = any(c in str(mode) for c in "wax+")
                    if writing and path is not None and not inside(path):
                        raise PermissionError(f"grading: writing {{path}} is not allowed")
                elif event in paths:
                    for path in args[:paths[event]]:
                        if not inside(path):
                            raise PermissionError(f"grading: {{event}} on {{path}} is not allowed")
                elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                               "os.fork", "os.forkpty", "pty.spawn"):
                    raise PermissionError(f"grading: starting a process ({{event}}) is not allowed")
                elif event == "socket.connect":
                    address = args[1]
                    if isinstance(address, tuple) and not str(address[0]).startswith(local):
                        raise PermissionError(f"grading: the network ({{address[0]}}) is not allowed")
            return hook
        _oml_sys.addaudithook(_oml_make_guard())
        del _oml_make_guard
        from labutils.check import check as _oml_check
        """)


def grading_notebook(chapter: Chapter, codes: dict[str, str | None], sandbox: Path):
    """The course's own notebook, in smoke mode, with the learner's code in place of each solution."""
    notebook = nbformat.reads(nbformat.writes(chapter.notebook), as_version=4)
    stub_sources = {}
    for exercise in chapter.exercises:
        if exercise.solution_cell < 0:
            continue
        cell = notebook.cells[exercise.solution_cell]
        stub_sources[exercise.solution_cell] = stub_source(cell.source)
        code = codes.get(exercise.id)
        cell.source = code if code is not None else stub_sources[exercise.solution_cell]
        cell.metadata["tags"] = ["learner-code"]
    checks = {i for e in chapter.exercises for i in e.check_cells}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if index in checks:  # whatever ran before, this check is the course's own
                cell.source = "check = _oml_check\n" + cell.source
            if "parameters" in cell.metadata.get("tags", []):
                cell.source += "\nSMOKE = True  # grading runs in smoke mode"
    notebook.cells.insert(0, nbformat.v4.new_code_cell(_guard_code(sandbox), metadata={"tags": ["grader"]}))
    return notebook


def _kernel_env(sandbox: Path, root: Path, cell_timeout: float) -> dict[str, str]:
    offline = Path(__file__).resolve().parent.parent / "tests" / "offline"  # the course's offline guard
    keep = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VIRTUAL_ENV", "SYSTEMROOT")
    }
    return {
        **keep,
        "HOME": str(sandbox),
        "TMPDIR": str(sandbox / "tmp"),
        "MPLCONFIGDIR": str(sandbox / "mpl"),
        "MPLBACKEND": "Agg",
        "OML_SMOKE": "1",
        "OML_LIVE_PLOT": "0",
        "OML_STRICT_CHECKS": "0",
        "OML_PROGRESS": "0",
        "OML_CHECK_LOG": str(sandbox / "checks.jsonl"),
        ROOT_ENV_VAR: str(root),
        "OML_OUTPUT_DIR": str(sandbox / "outputs"),
        "OML_NETWORK_LOG": str(sandbox / "network.log"),
        "OML_CHECK_TIMEOUT": f"{max(1.0, cell_timeout * 0.75):g}",  # check() gives up before the cell does
        "OML_OFFLINE_GUARD": "1",
        "PYTHONPATH": str(offline) if offline.is_dir() else "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }


def _prepare_sandbox(sandbox: Path) -> None:
    for sub in ("tmp", "mpl", "outputs"):
        (sandbox / sub).mkdir(parents=True, exist_ok=True)
    try:  # reuse the grader's font cache: building it in every sandbox costs seconds
        import matplotlib

        for font_list in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy(font_list, sandbox / "mpl" / font_list.name)
    except Exception:  # noqa: BLE001 -- only a speed-up
        pass


def _read_checks(log: Path, seen: int) -> tuple[list[dict], int]:
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return [], seen
    rows = []
    for line in lines[seen:]:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows, len(lines)


def run_submission(
    chapter: Chapter,
    codes: dict[str, str | None],
    sandbox: Path,
    root: Path,
    cell_timeout: float,
    notebook_timeout: float,
) -> tuple[dict[str, tuple[bool, str]], list[str]]:
    """Run the grading notebook in a fresh kernel; return each exercise's (passed, reason) and notes."""
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    _prepare_sandbox(sandbox)
    notebook = grading_notebook(chapter, codes, sandbox)
    client = NotebookClient(
        notebook,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(sandbox)}},
    )
    by_cell: dict[int, list[str]] = {}
    for exercise in chapter.exercises:
        for index in exercise.check_cells:
            by_cell.setdefault(index + 1, []).append(exercise.id)  # +1: the grader's cell comes first
    results: dict[str, tuple[bool, str]] = {}
    notes: list[str] = []
    log, seen = sandbox / "checks.jsonl", 0
    deadline = time.monotonic() + notebook_timeout
    stopped = None
    with client.setup_kernel(env=_kernel_env(sandbox, root, cell_timeout), cwd=str(sandbox)):
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            left = deadline - time.monotonic()
            where = (f"checking {', '.join(by_cell[index])}" if index in by_cell
                     else f"running course cell {index - 1}")  # -1: the grader's own first cell
            if left <= 0:
                stopped = f"the notebook time limit ({notebook_timeout:.0f} s) was reached before {where}"
                break
            client.timeout = max(1, int(min(cell_timeout, left)))
            error = None
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                error = f"timed out after {client.timeout} s"
                run_sync(client.km.interrupt_kernel)()
                if left < cell_timeout:  # the notebook's budget ran out, not the cell's: nothing runs after
                    stopped = f"the notebook time limit ({notebook_timeout:.0f} s) was reached while {where}"
                else:
                    try:
                        client.timeout = PROBE_TIMEOUT
                        client.execute_cell(nbformat.v4.new_code_cell("pass"), index)
                    except (CellTimeoutError, DeadKernelError):
                        stopped = f"the kernel stopped answering after {where} timed out"
            except DeadKernelError:
                error = stopped = f"the kernel died while {where} (os._exit, a crash, or out of memory)"
            except CellExecutionError as exc:  # not expected with allow_errors, but never fatal
                error = str(exc).splitlines()[0][:200]
            if error is None:
                failed = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                if failed:
                    error = f"{failed[0].get('ename')}: {str(failed[0].get('evalue'))[:200]}"
            rows, seen = _read_checks(log, seen)
            for exercise_id in by_cell.get(index, []):
                mine = [r for r in rows if r.get("id") == exercise_id]
                if mine:  # the last record: a check nested inside the learner's code comes before it
                    results[exercise_id] = (bool(mine[-1].get("passed")), str(mine[-1].get("reason") or ""))
                else:
                    results[exercise_id] = (False, f"the check could not run: {error or 'no result'}")
            if error and index not in by_cell and "learner-code" not in cell.metadata.get("tags", []):
                notes.append(f"course cell {index - 1} failed with your code: {error}")
            elif error and "learner-code" in cell.metadata.get("tags", []):
                notes.append(f"your solution cell (course cell {index - 1}) failed: {error}")
            if stopped:
                break
    for exercise in chapter.exercises:
        results.setdefault(exercise.id, (False, f"not run: {stopped or 'the notebook stopped early'}"))
    if stopped:
        notes.append(stopped)
    return results, notes


# ---------------------------------------------------------------- one student, a class


def grade_notebook(
    student: str,
    path: Path | None,
    chapter: Chapter,
    root: Path,
    work: Path,
    cell_timeout: float = CELL_TIMEOUT,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
) -> Result:
    """Grade one student's notebook (a file that may be anything) and return their row."""
    start = time.perf_counter()
    prefix = chapter.stem[:2]
    result = Result(student, chapter.stem, {e.id: 0 for e in chapter.exercises})

    def finish(status: str, line: str | None = None) -> Result:
        result.status = status
        for exercise in chapter.exercises:
            result.feedback.setdefault(exercise.id, line or status)
        result.seconds = round(time.perf_counter() - start, 1)
        return result

    if path is None:
        return finish("no submission")
    sandbox = Path(tempfile.mkdtemp(prefix="grade-", dir=work))
    try:
        copy = sandbox / "submission.ipynb"
        shutil.copyfile(path, copy)  # the kernel never sees the submissions folder
        try:
            notebook = nbformat.reads(copy.read_text(encoding="utf-8", errors="replace"), as_version=4)
        except Exception as error:  # noqa: BLE001 -- anything that is not a notebook gets a row
            what = "not valid JSON" if "JSON" in type(error).__name__ else type(error).__name__
            return finish(f"not a notebook ({what})")
        if not notebook.cells:
            return finish("empty notebook")
        found = chapter_of(notebook)
        if found is not None and found != prefix:
            return finish(f"wrong chapter: this is chapter {found}, graded as chapter {prefix}")
        codes, states = {}, {}
        for exercise in chapter.exercises:
            with _AST_LOCK:  # CPython 3.11's ast is not safe in parallel threads (jobs > 1)
                code, state, notes = learner_code(chapter, exercise, notebook)
            codes[exercise.id], states[exercise.id] = code, state
            result.notes += notes
        if all(state in ("missing", "stub") for state in states.values()):
            if all(state == "missing" for state in states.values()):
                return finish("no exercise found: is this the right chapter?")
            for exercise in chapter.exercises:
                result.feedback[exercise.id] = _line(
                    exercise, False, "not attempted yet" if states[exercise.id] == "stub" else "not found"
                )
            return finish("graded (nothing attempted)")
        outcomes, notes = run_submission(
            chapter, codes, sandbox / "run", root, cell_timeout, notebook_timeout
        )
        result.notes += notes
        for exercise in chapter.exercises:
            passed, reason = outcomes[exercise.id]
            if states[exercise.id] == "stub":
                passed, reason = False, "not attempted yet"
            elif states[exercise.id] != "ok":
                passed, reason = False, "not found" if states[exercise.id] == "missing" else "syntax error"
            result.points[exercise.id] = exercise.points if passed else 0
            result.feedback[exercise.id] = _line(exercise, passed, reason)
        stopped = [n for n in notes if n.startswith(("the notebook time limit", "the kernel"))]
        return finish(f"graded ({stopped[0]})" if stopped else "graded")
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _line(exercise: Exercise, passed: bool, reason: str) -> str:
    if passed:
        return "passed"
    hint = f" Hint: {exercise.hint}" if exercise.hint else ""
    end = "" if reason.rstrip().endswith((".", "?", "!")) else "."
    return f"not passed: {reason}{end}{hint}"


def find_submissions(folder: Path, prefix: str) -> dict[str, Path | None]:
    """Student name -> their notebook: a folder per student, or a file per student."""
    found: dict[str, Path | None] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            chosen = [p for p in notebooks if p.name.startswith(prefix)] or notebooks
            found[entry.name] = chosen[0] if chosen else None
        elif entry.suffix == ".ipynb":
            name = re.sub(rf"[-_ .]*{prefix}_[A-Za-z0-9_]+$", "", entry.stem) or entry.stem
            found[name] = entry
    return found


def read_roster(path: Path) -> list[str]:
    """Student names from the first column of a CSV (a header row named student/name is skipped)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    return rows[1:] if rows and rows[0].lower() in ("student", "name") else rows


def feedback_text(result: Result, chapter: Chapter) -> str:
    lines = [
        f"# Feedback for {result.student}: chapter {result.chapter}",
        "",
        f"Score: {result.total} of {chapter.max_points} points ({result.status}).",
        "",
    ]
    for exercise in chapter.exercises:
        got = result.points.get(exercise.id, 0)
        lines.append(f"- **{exercise.id}** ({got}/{exercise.points}): {result.feedback.get(exercise.id, '')}")
    if result.notes:
        lines += ["", "Notes from the grader:", ""] + [f"- {note}" for note in result.notes]
    lines += ["", "Grading ran the course's own checks on the functions of your solution cells, in a fresh "
              "kernel (smoke mode); your other cells were not run."]
    return "\n".join(lines) + "\n"


def write_gradebook(results: list[Result], chapter: Chapter, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    ids = [e.id for e in chapter.exercises]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "chapter", *ids, "total", "status"])
    for r in results:
        writer.writerow([r.student, r.chapter, *[r.points.get(i, 0) for i in ids], r.total, r.status])
    gradebook = out / "gradebook.csv"
    tmp = out / ".gradebook.csv.tmp"
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, gradebook)
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for r in results:
        safe = re.sub(r"[^\w.-]+", "_", r.student) or "student"
        (feedback / f"{safe}.md").write_text(feedback_text(r, chapter), encoding="utf-8")
    return gradebook


def _detect_chapter(submissions: dict[str, Path | None]) -> str | None:
    votes: dict[str, int] = {}
    for path in submissions.values():
        if path is None:
            continue
        match = re.match(r"^(\d\d)_", path.name)
        found = match.group(1) if match else None
        if found is None:
            try:
                found = chapter_of(nbformat.read(path, as_version=4))
            except Exception:  # noqa: BLE001 -- a broken submission has no vote
                found = None
        if found:
            votes[found] = votes.get(found, 0) + 1
    return max(votes, key=votes.get) if votes else None


def grade_class(
    folder: Path,
    out: Path,
    chapter: str | None = None,
    roster: Path | None = None,
    root: Path | None = None,
    cell_timeout: float = CELL_TIMEOUT,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
    log=print,
    jobs: int = 1,
) -> list[Result]:
    """Grade every submission in ``folder``; write ``out/gradebook.csv`` and ``out/feedback/``.

    ``jobs`` submissions run at once (each in its own kernel); 1 (the default) suits a 2-core machine.
    """
    root = (root or course_root()).resolve()
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}")
    if out == folder or folder in out.parents or out in folder.parents:
        raise ValueError(f"write the gradebook outside the submissions folder (not {out})")
    submissions = find_submissions(folder, chapter or "")
    chapter = chapter or _detect_chapter(submissions)
    if chapter is None:
        raise ValueError("cannot tell which chapter these are: pass --chapter NN")
    course = load_chapter(chapter, root)
    submissions = find_submissions(folder, chapter[:2])
    if roster is not None:
        names = read_roster(roster)
        for name in names:
            submissions.setdefault(name, None)
    work = Path(tempfile.mkdtemp(prefix="oml-grading-"))
    start = time.perf_counter()

    def one(student: str, path: Path | None) -> Result:
        try:
            result = grade_notebook(student, path, course, root, work, cell_timeout, notebook_timeout)
        except Exception as error:  # noqa: BLE001 -- one odd submission must not stop the class
            result = Result(student, course.stem, {e.id: 0 for e in course.exercises},
                            status=f"not graded: the grader failed ({type(error).__name__})",
                            notes=[f"grader error: {type(error).__name__}: {str(error)[:200]}"])
        if roster is not None and student not in names:
            result.notes.append("not on the roster")
        log(f"{student}: {result.total}/{course.max_points} ({result.status}, {result.seconds:.0f} s)")
        return result

    try:
        if jobs > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(lambda item: one(*item), sorted(submissions.items())))
        else:
            results = [one(student, path) for student, path in sorted(submissions.items())]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gradebook = write_gradebook(results, course, out)
    log(
        f"graded {len(results)} submissions of {course.stem} in {time.perf_counter() - start:.0f} s: "
        f"{gradebook} and {out / 'feedback'}/"
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("submissions", type=Path, help="a folder with one folder or .ipynb per student")
    parser.add_argument("--chapter", help="chapter prefix such as 01 (default: from the submissions)")
    parser.add_argument("--out", type=Path, help="default: _build/grades/<submissions folder name>")
    parser.add_argument("--roster", type=Path, help="CSV whose first column lists the students")
    parser.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT)
    parser.add_argument("--notebook-timeout", type=float, default=NOTEBOOK_TIMEOUT)
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    args = parser.parse_args(argv)
    out = args.out or course_root() / "_build" / "grades" / args.submissions.resolve().name
    try:
        grade_class(
            args.submissions,
            out,
            args.chapter,
            args.roster,
            cell_timeout=args.cell_timeout,
            notebook_timeout=args.notebook_timeout,
            jobs=args.jobs,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
