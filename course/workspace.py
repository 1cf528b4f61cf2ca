"""The learner's workspace: one notebook per chapter, theirs to edit, never overwritten.

``make lab`` (``python -m course lab``) fills a git-ignored folder (``workspace/``
in the clone by default) with one notebook per chapter, exercises blank (the
student edition) or, with ``--solutions``, with the course's solutions, and
opens JupyterLab there. Later runs, after a ``git pull``:

- add a chapter that is new, and restore one the learner deleted;
- update a notebook the learner never changed to the course's new version;
- keep a notebook the learner changed exactly as it is, and put the course's
  new version beside it as ``NN_topic.updated.ipynb``, with a one-line message.

What was written is remembered in ``.oml/workspace.json`` (hidden, like the
progress log ``.oml/progress.jsonl``), by the SHA-256 of each file written: a
notebook whose bytes are not one of those was touched by the learner.

``--language zh_CN`` (``make lab LANG=zh``) makes the workspace from the Chinese edition
(course/i18n_build.py: a chapter not yet translated comes in English, with a note) in its own
folder (``workspace-zh/`` by default), and opens JupyterLab in Chinese.

Usage: ``python -m course workspace|lab [--workspace DIR] [--solutions] [--language zh_CN]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import nbformat

from labutils.exercises import chapter_exercises
from labutils.language import LANGUAGE_ENV_VAR, normalize
from labutils.paths import ROOT_ENV_VAR, course_root
from labutils.progress import MANIFEST, WORKSPACE_ENV_VAR, write_progress_page

DEFAULT_WORKSPACE = "workspace"
DEFAULT_WORKSPACES = {"en": DEFAULT_WORKSPACE, "zh": "workspace-zh"}
LOCALES = {"en": "en", "zh": "zh_CN"}  # the language's name for JupyterLab, the kernel and the course
UPDATED_SUFFIX = ".updated.ipynb"


def _student_notebook(notebook, name):
    from course.student import student_notebook

    return student_notebook(notebook, name)


def chapter_sources(root: Path | None = None, language: str = "en") -> list[Path]:
    """The course's chapter notebooks, in order (for "zh": the Chinese edition's, generated in _build/)."""
    if normalize(language) == "zh":
        from course.i18n_build import write_notebooks

        return write_notebooks()
    return sorted(((root or course_root()) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _intro_cell(stem: str, edition: str, language: str = "en"):
    chapter = stem[:2]
    reveal = f'`from labutils.progress import reveal; reveal("{chapter}.1")`'
    if normalize(language) == "zh":
        what = "练习留空" if edition == "student" else "附课程的参考答案"
        text = (f"*这是你的第 {chapter} 章副本（{what}）：随意编辑和保存，`make lab` 永远不会覆盖它。"
                f"每次检查的结果都记在本文件夹的 `progress.html` 上。某道练习卡住了？{reveal} "
                "会显示它的答案（并记为已查看）。*")
    else:
        what = "exercises blank" if edition == "student" else "with the course's solutions"
        text = (f"*Your copy of chapter {chapter} ({what}): edit and save freely, `make lab` never "
                f"overwrites it. Each check records its result on `progress.html` in this folder. Stuck on "
                f"an exercise? {reveal} shows its solution (and marks it as revealed).*")
    return nbformat.v4.new_markdown_cell(
        text, metadata={"tags": ["workspace-note"]}, id="oml-workspace-note",  # a fixed id: same bytes
    )


def workspace_notebook(source: Path, edition: str = "student"):
    """The workspace copy of a course notebook: no outputs, no pairing, solutions stubbed unless asked."""
    notebook = nbformat.read(source, as_version=4)
    language = notebook.metadata.get("openmodelslab", {}).get("language")  # the Chinese edition's
    if edition == "student":
        notebook = _student_notebook(notebook, source.name)
    else:
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
    for key in ("jupytext", "widgets", "papermill"):
        notebook.metadata.pop(key, None)
    notebook.metadata["openmodelslab"] = {"chapter": source.stem, "edition": edition}
    if language:  # check() speaks the notebook's language (labutils.language)
        notebook.metadata["openmodelslab"]["language"] = language
    notebook.cells.insert(0, _intro_cell(source.stem, edition, language or "en"))
    return notebook


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(workspace: Path) -> dict:
    path = workspace / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(workspace: Path, edition: str | None = None, root: Path | None = None,
            language: str | None = None) -> list[str]:
    """Create or bring up to date the workspace; return one message per thing that changed.

    ``edition`` ("student" or "solutions") applies to notebooks written from now on; by default
    the workspace keeps the edition it was created with (student for a new one). So does
    ``language`` ("en", or "zh_CN" for the Chinese edition; English for a new one).
    """
    root = (root or course_root()).resolve()
    workspace = Path(workspace).resolve()
    if workspace == root / "notebooks" or root / "notebooks" in workspace.parents:
        raise ValueError(f"the workspace {workspace} must not be inside the course's notebooks/ folder")
    (workspace / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(workspace)
    edition = edition or manifest.get("edition", "student")
    if edition not in ("student", "solutions"):
        raise ValueError(f"edition must be 'student' or 'solutions', not {edition!r}")
    language = normalize(language or manifest.get("language")) or "en"
    chapters = manifest.setdefault("chapters", {})
    manifest.update({"version": 1, "edition": edition, "course_root": str(root),
                     "language": LOCALES[language]})
    messages = []
    for source in chapter_sources(root, language):
        try:
            messages += _prepare_chapter(workspace, source, edition, chapters.setdefault(source.stem, {}))
        except Exception as error:  # noqa: BLE001 -- one unreadable chapter must not block the others
            messages.append(f"skipped {source.name}: the course's copy cannot be read "
                            f"({type(error).__name__}: {str(error)[:120]}); your copy, if any, is unchanged")
    _write(workspace / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    write_progress_page(workspace)
    return messages


def _prepare_chapter(workspace: Path, source: Path, edition: str, entry: dict) -> list[str]:
    notebook = workspace_notebook(source, edition)
    new = nbformat.writes(notebook).encode("utf-8")
    new_sha = _sha(new)
    known = set(entry.get("written", []))
    entry["exercises"] = [{"id": e.id, "points": e.points} for e in chapter_exercises(notebook)]
    main, updated = workspace / source.name, workspace / (source.stem + UPDATED_SUFFIX)

    def write(path: Path) -> None:
        _write(path, new)
        known.add(new_sha)
        entry["written"] = sorted(known)

    def drop_stale_update() -> None:
        if updated.exists() and _sha(updated.read_bytes()) in known:
            updated.unlink()

    if not main.exists():
        message = f"restored {main.name} (it was missing)" if known else f"added {main.name}"
        write(main)
        entry["base"] = new_sha
        drop_stale_update()
        return [message]
    current = _sha(main.read_bytes())
    if current == new_sha:
        entry["base"] = new_sha
        drop_stale_update()
        return []
    if current in known:  # never touched by the learner: take the new version
        write(main)
        entry["base"] = new_sha
        drop_stale_update()
        return [f"updated {main.name} to the course's new version (you had not changed it)"]
    if entry.get("base") == new_sha:  # the learner's edits; the course has not changed since
        return []
    if updated.exists() and _sha(updated.read_bytes()) not in known:
        return [(f"{source.stem} changed in the course, but {updated.name} has your edits: "
                 f"rename or delete it to get the new version")]
    if entry.get("offered") == new_sha and not updated.exists():
        return []  # offered before and the learner removed it: don't insist
    if not (updated.exists() and _sha(updated.read_bytes()) == new_sha):
        write(updated)
    entry["offered"] = new_sha
    return [(f"{source.stem} changed in the course: your {main.name} is kept as it is, "
             f"the new version is beside it as {updated.name}")]


def lab_command(workspace: Path, root: Path | None = None, extra: list[str] | None = None,
                language: str = "en"):
    """The ``jupyter lab`` command line and environment that open ``workspace``.

    In Chinese (``language="zh_CN"``) Lab's own interface uses its zh-CN language pack (a default
    setting from locale/zh_CN/jupyter/labconfig; the learner can still switch in the Settings menu),
    and kernels get ``OML_LANG=zh_CN``.

    With Lab's root at the workspace, Jupytext's pairing from the clone's pyproject.toml (above the
    root, so never read) does not apply: saving a notebook writes that one .ipynb and nothing beside it.
    """
    root = (root or course_root()).resolve()
    workspace = Path(workspace).resolve()
    env = {
        **os.environ,
        ROOT_ENV_VAR: str(root),  # kernels inherit it: a workspace anywhere finds data and models
        WORKSPACE_ENV_VAR: str(workspace),  # where check() records progress
        "JUPYTER_CONFIG_PATH": str(root / ".jupyter"),
    }
    if normalize(language) == "zh":
        env[LANGUAGE_ENV_VAR] = LOCALES["zh"]
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            [str(root / "locale" / "zh_CN" / "jupyter"), env["JUPYTER_CONFIG_PATH"]])
    argv = [str(Path(sys.executable).with_name("jupyter")), "lab", f"--ServerApp.root_dir={workspace}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        argv.append("--allow-root")
    return argv + list(extra or []), env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or update the learner's workspace (and open it).")
    parser.add_argument("--workspace", type=Path, default=None,
                        help=f"default: ${WORKSPACE_ENV_VAR} or {DEFAULT_WORKSPACE}/ in the course folder")
    parser.add_argument("--solutions", action="store_true",
                        help="write new notebooks with the course's solutions instead of blank exercises")
    parser.add_argument("--lab", action="store_true", help="then open JupyterLab in the workspace")
    parser.add_argument("--language", default=None, choices=["en", "zh", "zh_CN"],
                        help="the edition: en, or zh_CN for Chinese (default: the workspace's, else en)")
    args, extra = parser.parse_known_args(argv)
    language = normalize(args.language)
    default = DEFAULT_WORKSPACES[language or "en"]
    workspace = args.workspace or Path(os.environ.get(WORKSPACE_ENV_VAR) or course_root() / default)
    try:
        messages = prepare(workspace, "solutions" if args.solutions else None, language=language)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for message in messages:
        print(message)
    print(f"workspace: {Path(workspace).resolve()} (progress: progress.html there, or `make progress`)")
    if args.lab:
        recorded = _read_manifest(Path(workspace).resolve()).get("language", "en")
        command, env = lab_command(workspace, extra=extra, language=recorded)
        os.execve(command[0], command, env)
    return 0


def lab_main(argv: list[str] | None = None) -> int:
    """``python -m course lab``: the workspace, then JupyterLab on it (what ``make lab`` runs)."""
    return main(["--lab", *(argv or [])])


if __name__ == "__main__":
    sys.exit(main())
