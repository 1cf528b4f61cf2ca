"""Start one student's server on the hub: fill their workspace from the course, then run Jupyter.

JupyterHub's spawner runs this as the student (``c.Spawner.cmd`` in ``jupyterhub_config.py``,
the image's start command on Kubernetes), so every file it writes belongs to them:

1. The course is ``$OML_COURSE_ROOT`` (set by the hub), or ``~/open-models-lab`` when an
   nbgitpuller link has brought a newer copy of the course there (its ``labutils`` then
   comes first on the kernels' path too).
2. ``~/workspace`` (or ``$OML_WORKSPACE``) is filled or brought up to date by
   ``course.workspace.prepare``: new chapters are added, a notebook the student changed is
   never overwritten (the course's new version goes beside it as ``NN_topic.updated.ipynb``).
3. ``jupyterhub-singleuser`` starts with JupyterLab's root at the workspace, with the same
   environment ``make lab`` gives a learner (progress recorded in the workspace).

Arguments are passed on to ``jupyterhub-singleuser``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PULLED_COURSE = "open-models-lab"  # where deploy/README's nbgitpuller links put course updates


def course_root(home: Path) -> Path:
    pulled = home / PULLED_COURSE
    if (pulled / "_toc.yml").is_file() and (pulled / "notebooks").is_dir():
        return pulled.resolve()
    if os.environ.get("OML_COURSE_ROOT"):
        return Path(os.environ["OML_COURSE_ROOT"]).resolve()
    return Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    home = Path(os.environ.get("HOME") or Path.home())
    root = course_root(home)
    sys.path.insert(0, str(root))
    from course.workspace import lab_command, prepare

    workspace = Path(os.environ.get("OML_WORKSPACE") or home / "workspace")
    try:
        for message in prepare(workspace, root=root):
            print(f"workspace: {message}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 (the student still gets their server; the hub log says why)
        print(f"workspace: could not update {workspace}: {error!r}", file=sys.stderr)
        workspace.mkdir(parents=True, exist_ok=True)
    _, env = lab_command(workspace, root=root)
    if not os.access(root, os.W_OK):  # a shared course (lab server, image): outputs go to the student's
        env.setdefault("OML_OUTPUT_DIR", str(workspace / ".oml" / "outputs"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    server = Path(sys.executable).with_name("jupyterhub-singleuser")
    command = [str(server), f"--ServerApp.root_dir={workspace}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")  # only where the hub itself runs every server as root (tests)
    os.execve(command[0], command + argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
