"""`make lab` opens .py chapters as notebooks, from the project's own settings."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = _free_port(), "oml-test"
    home = tmp_path_factory.mktemp("home")  # an empty home: settings must come from the project
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_PATH": str(ROOT / ".jupyter"),
           "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={ROOT}", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield lambda path: json.load(urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={token}"))
    process.terminate()
    process.wait(timeout=30)


def test_python_files_open_with_the_jupytext_notebook_viewer(lab):
    settings = lab("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    default_viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert default_viewers.get("python") == "Jupytext Notebook"


def test_a_chapter_py_is_served_as_a_notebook(lab):
    chapter = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))[0]
    model = lab(f"/api/contents/notebooks/{chapter.name}?type=notebook&content=1")
    assert model["type"] == "notebook"
    assert any("parameters" in c["metadata"].get("tags", []) for c in model["content"]["cells"])
