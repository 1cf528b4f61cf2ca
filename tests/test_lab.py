"""`make lab` opens the learner's workspace (one .ipynb per chapter); `make lab-course` the .py chapters."""

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.servers import start_lab, stop_lab

ROOT = Path(__file__).resolve().parent.parent


def _start_lab(tmp_path_factory, argv=None, env=None):
    token = "oml-test"
    home = tmp_path_factory.mktemp("home")  # an empty home: settings must come from the project
    argv = argv or [str(Path(sys.executable).with_name("jupyter")), "lab", f"--ServerApp.root_dir={ROOT}",
                    "--allow-root"]
    env = {**(env or os.environ), "HOME": str(home), "JUPYTER_CONFIG_PATH": str(ROOT / ".jupyter"),
           "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    process, base = start_lab(argv, env, token)

    def call(path, method="GET", body=None):
        url = f"{base}{path}{'&' if '?' in path else '?'}token={token}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        return json.load(urllib.request.urlopen(request))

    try:
        yield call
    finally:
        stop_lab(process, base, token)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from _start_lab(tmp_path_factory)


@pytest.fixture(scope="module")
def workspace_lab(tmp_path_factory):
    """JupyterLab started the way `make lab` starts it, on a fresh workspace."""
    import shutil
    import tempfile

    from course.workspace import lab_command, prepare

    # inside the clone, where the course's pyproject.toml would pair every notebook with a .py
    (ROOT / "_build").mkdir(exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="test-lab-workspace-", dir=ROOT / "_build"))
    chapters = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    prepare(workspace)
    argv, env = lab_command(workspace)
    try:
        for call in _start_lab(tmp_path_factory, [*argv, "--allow-root"], env):
            call.workspace, call.chapters = workspace, chapters
            yield call
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_python_files_open_with_the_jupytext_notebook_viewer(lab):
    settings = lab("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    default_viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default_viewers.get("python") == "Jupytext Notebook"


def test_a_chapter_py_is_served_as_a_notebook(lab):
    chapter = min((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    model = lab(f"/api/contents/notebooks/{chapter.name}?type=notebook&content=1")
    assert model["type"] == "notebook"
    assert any("parameters" in c["metadata"].get("tags", []) for c in model["content"]["cells"])


def test_the_workspace_shows_one_notebook_per_chapter(workspace_lab):
    listing = workspace_lab("/api/contents/?content=1")["content"]
    assert sorted(item["name"] for item in listing) == sorted(workspace_lab.chapters + ["progress.html"])
    assert {item["type"] for item in listing if item["name"].endswith(".ipynb")} == {"notebook"}


def test_a_workspace_notebook_opens_and_saves_without_a_paired_py(workspace_lab):
    settings = workspace_lab("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert "notebook" not in viewers and "json" not in viewers  # .ipynb opens in the notebook editor
    name = min(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    model = workspace_lab(f"/api/contents/{name}?type=notebook&content=1")
    assert model["type"] == "notebook"
    assert not any("BEGIN SOLUTION" in c["source"] for c in model["content"]["cells"])
    model["content"]["cells"][0]["source"] += "\nmy note"
    workspace_lab(f"/api/contents/{name}", "PUT", {"type": "notebook", "format": "json",
                                                   "content": model["content"]})
    assert "my note" in (workspace_lab.workspace / name).read_text()
    assert not list(workspace_lab.workspace.glob("*.py"))  # jupytext pairing is off in the workspace
