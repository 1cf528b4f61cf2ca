"""Binder without Docker: the Dockerfile repo2docker would build, and binder/postBuild run for real.

- repo2docker (pinned) prints the Dockerfile it would build (``--no-build --debug``, no Docker needed):
  it must use binder/environment.yml, run binder/postBuild and start through binder/start.
- binder/postBuild runs in a fresh environment made from a fresh copy of the repository (what a
  commit of the working tree holds) and then every chapter's first code cells, through its imports,
  run there. The fresh environment is a new venv that sees the packages of .venv through one .pth
  file, and pip and npm are offline: a post-build step that would download anything fails the test
  (a second full install of torch would take most of CI's time). What the steps add is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REPO2DOCKER = Path(sys.executable).with_name("jupyter-repo2docker")


def test_binder_environment_is_the_courses_python_and_make_only():
    binder = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert binder["dependencies"] == [*python, "pip", "make"]  # every other pin comes from `make setup`
    for name in ("postBuild", "start"):
        assert os.access(ROOT / "binder" / name, os.X_OK), f"binder/{name} must be executable"


@pytest.mark.skipif(not REPO2DOCKER.exists(), reason="jupyter-repo2docker is not installed (make setup)")
def test_repo2docker_would_build_with_the_binder_folder(tmp_path):
    result = subprocess.run(
        [str(REPO2DOCKER), "--no-build", "--debug", "--user-id", "1000", "--user-name", "jovyan", str(ROOT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dockerfile = result.stdout + result.stderr
    assert "Building conda environment for python=3.11" in dockerfile
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"' in dockerfile
    assert "RUN ./binder/postBuild" in dockerfile
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile


def _fresh_copy(destination: Path) -> None:
    """The files a commit of the working tree would hold (tracked and new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


FIRST_CELLS = r'''
import ast, json, sys
from pathlib import Path
import nbformat

def imports_labutils(source):
    """A top-level import of labutils (the Colab first cell's import sits inside an `if`)."""
    for node in ast.parse(source).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        if any(name.split(".")[0] == "labutils" for name in names):
            return True
    return False

done = {}
for path in sorted(Path.cwd().glob("[0-9][0-9]_*.ipynb")):
    notebook = nbformat.read(path, as_version=4)
    namespace = {"__name__": "__main__"}
    for cell in (c for c in notebook.cells if c.cell_type == "code"):
        exec(compile(cell.source, f"{path.name}", "exec"), namespace)
        if imports_labutils(cell.source):  # through the cell that imports the course's helpers
            break
    done[path.stem] = sys.modules["labutils"].__file__
print(json.dumps(done))
'''


def test_post_build_gives_a_working_environment_from_a_fresh_clone(tmp_path):
    clone, env, home = tmp_path / "open-models-lab", tmp_path / "env", tmp_path / "home"
    _fresh_copy(clone)
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    # After the clone's own .pth files: its editable labutils is found first.
    (site / "zz_oml_course_packages.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    environment = {
        **os.environ, "HOME": str(home), "NB_PYTHON_PREFIX": str(env),
        "PATH": f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0",  # offline: nothing may be downloaded
        "npm_config_offline": "true", "npm_config_cache": str(Path.home() / ".npm"),
    }
    for name in ("OML_COURSE_ROOT", "OML_WORKSPACE", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL"):
        environment.pop(name, None)
    # Keep the suite's offline guard, but not this checkout on the path: labutils must come from the clone.
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT)
    before = _size(clone)
    start = time.monotonic()
    result = subprocess.run(["bash", "binder/postBuild"], cwd=clone, env=environment, capture_output=True,
                            text=True, timeout=400, check=False)
    seconds = time.monotonic() - start
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    added = _size(clone) + _size(env) - before
    print(f"binder/postBuild: {seconds:.0f} s, added {added / 2**20:.1f} MiB beside the installed packages")

    workspace = clone / "workspace"
    chapters = sorted(p.name for p in (clone / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in workspace.glob("*.ipynb")) == chapters
    assert "/lab/tree/workspace" in (home / ".jupyter" / "jupyter_server_config.py").read_text()
    assert (clone / "book" / "_static" / "vendor" / ".package-lock.sha256").is_file()  # the website's scripts
    for npm_folder in ("book/node_modules", "deploy/proxy/node_modules"):
        assert not (clone / npm_folder).exists(), npm_folder

    run = subprocess.run([str(env / "bin" / "python"), "-c", FIRST_CELLS], cwd=workspace, capture_output=True,
                         text=True, timeout=300, check=False,
                         env={**environment, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(imported) == [name.removesuffix(".ipynb") for name in chapters]
    assert all(Path(path).is_relative_to(clone) for path in imported.values()), imported


def _launch_buttons(stem: str) -> dict[str, str]:
    """The launch links sphinx-book-theme, then book/_ext/launch_links.py, give a chapter page."""
    from types import SimpleNamespace

    from jupyter_book.config import get_final_config
    from sphinx_book_theme.header_buttons.launch import add_launch_buttons

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import launch_links
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    config, _ = get_final_config(user_yaml=ROOT / "_config.yml", sourcedir=ROOT,
                                 cli_config={"latex_individualpages": False})
    assert "launch_links" in config["extensions"]
    options = config["html_theme_options"]
    org, repo = options["repository_url"].removeprefix("https://github.com/").split("/")[:2]
    page = f"notebooks/{stem}"
    app = SimpleNamespace(config={"html_theme_options": options}, outdir=str(ROOT / "_build" / "html"),
                          env=SimpleNamespace(doc2path=lambda name: str(ROOT / f"{name}.ipynb"),
                                              metadata={page: {"kernelspec": {"name": "python3"}}}))
    context = {"pagename": page, "sourcename": f"{page}.ipynb", "header_buttons": [],
               "github_url": "https://github.com", "github_user": org, "github_repo": repo}
    add_launch_buttons(app, page, "page.html", context, None)
    launch_links.retarget_binder(app, page, "page.html", context, None)
    (group,) = [g for g in context["header_buttons"] if g["label"] == "launch-buttons"]
    return {button["text"]: button["url"] for button in group["buttons"]}


def test_launch_buttons_open_the_chapter_on_colab_and_its_workspace_copy_on_binder():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url, branch = config["repository"]["url"], config["repository"]["branch"]
    org_repo = url.removeprefix("https://github.com/")
    committed = set(subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True,
                                   check=True).stdout.split())
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if f"notebooks/{path.name}" not in committed:
            continue  # a chapter being written: no button points at it until it is committed
        links = _launch_buttons(path.stem)
        assert links["Colab"] == f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/notebooks/{path.name}"
        assert links["Binder"] == f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/workspace/{path.name}"
