"""A learner's progress: every check's result, recorded in their workspace, and a page to see it.

``check()`` calls :func:`record` after printing its result. In a workspace (made
by ``make lab``; found from ``$OML_WORKSPACE`` or the working folder) that
appends one line to ``.oml/progress.jsonl`` and refreshes ``progress.html``;
anywhere else (the course's own notebooks, the test suite, the grader) it does
nothing. Recording never raises: a full disk or a read-only folder costs the
record, never the learner's notebook.

Example:
    >>> from labutils.progress import reveal
    >>> reveal("03.2")   # prints the course's solution of exercise 03.2, marked as revealed
"""

from __future__ import annotations

import datetime
import html
import json
import os
from pathlib import Path

WORKSPACE_ENV_VAR = "OML_WORKSPACE"
DISABLE_ENV_VAR = "OML_PROGRESS"  # "0": record nothing (the grader sets it)
MANIFEST = ".oml/workspace.json"
LOG = ".oml/progress.jsonl"
PAGE = "progress.html"
PASSED, FAILED, NEVER = "passed", "failed", "never tried"


def find_workspace(start: Path | None = None) -> Path | None:
    """``$OML_WORKSPACE``, else the first folder at or above ``start`` (the cwd) with a manifest."""
    named = os.environ.get(WORKSPACE_ENV_VAR)
    if named:
        return Path(named) if (Path(named) / MANIFEST).is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST).is_file():
            return folder
    return None


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _append(workspace: Path, entry: dict) -> None:
    with open(workspace / LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def record(exercise_id: str, passed: bool, reason: str | None = None) -> bool:
    """Append one check result to the workspace's progress log and refresh the page; never raises.

    Returns whether it was recorded (False outside a workspace or on any error).
    """
    try:
        if os.environ.get(DISABLE_ENV_VAR) == "0":
            return False
        workspace = find_workspace()
        if workspace is None:
            return False
        entry = {"id": str(exercise_id), "passed": bool(passed), "time": _now()}
        if reason:
            entry["reason"] = str(reason)[:300]
        _append(workspace, entry)
        write_progress_page(workspace)
        return True
    except Exception:  # noqa: BLE001 -- recording is a convenience: it must never break a learner's check
        return False


def read_log(workspace: Path) -> list[dict]:
    """Every record in the workspace's log, oldest first (unreadable lines skipped)."""
    try:
        lines = (Path(workspace) / LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries.append(entry)
    return entries


def _chapters(workspace: Path) -> dict[str, list[str]]:
    try:
        manifest = json.loads((Path(workspace) / MANIFEST).read_text(encoding="utf-8"))
        return {stem: [e["id"] for e in entry.get("exercises", [])]
                for stem, entry in sorted(manifest.get("chapters", {}).items())}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def summary(workspace: Path) -> dict[str, list[dict]]:
    """Per chapter, each exercise's status (passed / failed / never tried), tries, last time, revealed."""
    latest: dict[str, dict] = {}
    for entry in read_log(workspace):
        state = latest.setdefault(entry["id"], {"status": NEVER, "tries": 0, "revealed": False, "time": ""})
        if entry.get("revealed"):
            state["revealed"] = True
            continue
        state.update(status=PASSED if entry.get("passed") else FAILED, time=entry.get("time", ""),
                     reason=entry.get("reason", ""))
        state["tries"] += 1
    chapters = _chapters(workspace)
    listed = {i for ids in chapters.values() for i in ids}
    for exercise_id in sorted(set(latest) - listed):  # an exercise the manifest does not know (yet)
        stem = next((s for s in chapters if s.startswith(exercise_id[:2])), exercise_id[:2])
        chapters.setdefault(stem, []).append(exercise_id)
    empty = {"status": NEVER, "tries": 0, "revealed": False, "time": ""}
    return {stem: [{"id": i, **latest.get(i, empty)} for i in ids] for stem, ids in chapters.items()}


def _mark(state: dict) -> str:
    mark = {PASSED: "[pass]", FAILED: "[fail]", NEVER: "[    ]"}[state["status"]]
    return mark + (" revealed" if state["revealed"] else "")


def progress_text(workspace: Path) -> str:
    """The progress table as plain text, for ``make progress``."""
    rows = []
    for stem, states in summary(workspace).items():
        counts = {s: sum(x["status"] == s for x in states) for s in (PASSED, FAILED, NEVER)}
        rows.append(f"{stem}: {counts[PASSED]} passed, {counts[FAILED]} failed, {counts[NEVER]} never tried")
        for state in states:
            when = f"  (last try {state['time']}, {state['tries']} tr{'y' if state['tries'] == 1 else 'ies'})"
            rows.append(f"  {state['id']:<6} {_mark(state)}{when if state['tries'] else ''}")
    return "\n".join(rows) if rows else "no chapters in this workspace yet: run `make lab`"


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:52em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left} .passed{background:#d9f2d9}"
    ".failed{background:#f9dcdc} .never{color:#777}"
)


def progress_html(workspace: Path) -> str:
    """The progress page: one table per chapter."""
    parts = [("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Progress</title>"
              f"<style>{_STYLE}</style></head><body><h1>Your progress (学习进度)</h1>"
              f"<p>Updated {html.escape(_now())} after each check. Reopen this page to refresh it.</p>")]
    for stem, states in summary(workspace).items():
        done = sum(s["status"] == PASSED for s in states)
        parts.append(f"<h2>{html.escape(stem)}: {done} of {len(states)} passed</h2><table>"
                     "<tr><th>exercise</th><th>status</th><th>tries</th><th>last try</th><th>note</th></tr>")
        for s in states:
            css = {PASSED: "passed", FAILED: "failed", NEVER: "never"}[s["status"]]
            note = ("solution revealed; " if s["revealed"] else "") + (s.get("reason") or "" if
                                                                       s["status"] == FAILED else "")
            parts.append(f"<tr class='{css}'><td>{html.escape(s['id'])}</td><td>{s['status']}</td>"
                         f"<td>{s['tries']}</td><td>{html.escape(s['time'])}</td><td>{html.escape(note)}</td></tr>")
        parts.append("</table>")
    return "".join(parts) + "</body></html>\n"


def write_progress_page(workspace: Path) -> Path:
    """Write ``progress.html`` in the workspace (atomically: an open page never sees half a file)."""
    page = Path(workspace) / PAGE
    tmp = page.with_name(f".{PAGE}.{os.getpid()}.tmp")
    tmp.write_text(progress_html(workspace), encoding="utf-8")
    os.replace(tmp, page)
    return page


def solution_source(exercise_id: str) -> str:
    """The solution of one exercise, from the course's own chapter notebook (marker lines dropped)."""
    import nbformat

    from labutils.exercises import chapter_exercises, chapter_source

    source = chapter_source(exercise_id[:2])
    notebook = nbformat.read(source, as_version=4)
    for exercise in chapter_exercises(notebook):
        if exercise.id == exercise_id and exercise.solution_cell >= 0:
            lines = notebook.cells[exercise.solution_cell].source.splitlines()
            markers = ("# BEGIN SOLUTION", "# END SOLUTION")
            return "\n".join(line for line in lines if line.strip() not in markers)
    known = [e.id for e in chapter_exercises(notebook)]
    raise KeyError(f"no exercise {exercise_id!r} in {source.name}; its exercises are {known}")


def reveal(exercise_id: str) -> str | None:
    """Show the course's solution of one exercise, on purpose; progress marks it as revealed."""
    try:
        code = solution_source(str(exercise_id))
    except (KeyError, FileNotFoundError, OSError) as error:
        print(f"Cannot reveal {exercise_id!r}: {error}")
        return None
    print(f"Solution of exercise {exercise_id} (from the course's own notebook):\n")
    print(code)
    try:
        workspace = find_workspace()
        if workspace is not None and os.environ.get(DISABLE_ENV_VAR) != "0":
            _append(workspace, {"id": str(exercise_id), "revealed": True, "time": _now()})
            write_progress_page(workspace)
            print(f"\n(marked as revealed on {workspace / PAGE})")
    except Exception:  # noqa: BLE001, S110 -- the solution is shown; a failed record must not hide it
        pass
    return None
