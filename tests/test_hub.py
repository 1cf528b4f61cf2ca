"""The classroom JupyterHub of deploy/, started for real: two students, two workspaces, two kernels.

The hub loads deploy/jupyterhub_config.py unchanged and overrides only what a test machine lacks:
- a test authenticator with one password per student (the real config uses the machine's accounts);
- SimpleLocalProcessSpawner, homes in a temporary folder (the real config runs each server as the
  student's own account with LocalProcessSpawner; CI runs as root with no such accounts, and creating
  accounts on the machine running the tests is not a test's business);
- 127.0.0.1 and free ports.
Everything it starts (hub, proxy, two servers, their kernels) is stopped in the fixture's teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

from course.workspace import chapter_sources
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PROXY = ROOT.joinpath("deploy", "proxy", "node_modules", "configurable-http-proxy", "bin",
                      "configurable-http-proxy")
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-2"}
CHAPTER = "00_setup_and_tour.ipynb"
FIRST_CELLS_AFTER_IMPORTS = 1  # run through the cell importing labutils (torch, widgets) and the next one

if not PROXY.is_file():
    pytest.skip("the hub's proxy is not installed: run `make setup-hub`", allow_module_level=True)

TEST_CONFIG = '''
c = get_config()
load_subconfig({deploy!r})
from jupyterhub.auth import Authenticator


class TwoStudents(Authenticator):
    """One password per student: the test's stand-in for the machine's accounts."""

    async def authenticate(self, handler, data):
        name = data.get("username")
        return name if {passwords!r}.get(name) == data.get("password") else None


c.JupyterHub.authenticator_class = TwoStudents
c.Authenticator.allowed_users = set({passwords!r})
c.Authenticator.allow_all = False
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.Spawner.environment["OML_OUTPUT_DIR"] = {outputs!r}
c.JupyterHub.services.append({{"name": "test-teacher", "api_token": {admin!r}}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["test-teacher"]}})
'''


class Hub:
    def __init__(self, url: str, admin_token: str, homes: Path):
        self.url, self.admin_token, self.homes = url, admin_token, homes

    def call(self, path, token=None, method="GET", body=None, raw=False, timeout=30):
        """(status, parsed JSON or bytes) of one request to the hub's public URL."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        if raw:
            return status, payload
        try:
            return status, json.loads(payload) if payload.strip() else None
        except ValueError:  # an HTML or plain-text error page (the proxy before the hub is routed)
            return status, payload.decode(errors="replace")


def _processes_under(folder: Path) -> list[int]:
    """Processes whose command line names ``folder`` (only this test's: the folder is new)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    state, homes, outputs = base / "state", base / "homes", base / "outputs"
    for folder in (state, homes, outputs):
        folder.mkdir()
    port, admin = free_port(), uuid.uuid4().hex
    config = base / "test_config.py"
    config.write_text(TEST_CONFIG.format(
        deploy=str(ROOT / "deploy" / "jupyterhub_config.py"), passwords=PASSWORDS, homes=str(homes),
        port=port, hub_port=free_port(), api_port=free_port(), outputs=str(outputs), admin=admin,
    ))
    env = {**os.environ, "OML_HUB_STATE": str(state), "OML_COURSE_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("OML_WORKSPACE", None)
    with open(base / "hub.log", "wb") as log:  # the hub keeps its own handle
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)],
            cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        hub = Hub(f"http://127.0.0.1:{port}", admin, homes)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log = (base / "hub.log").read_text()[-3000:]
                pytest.fail(f"JupyterHub exited ({process.returncode}):\n{log}")
            try:
                if hub.call("/hub/api/", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = (base / "hub.log").read_text()[-3000:]
                pytest.fail(f"JupyterHub did not answer within 30 s:\n{log}")
            time.sleep(0.25)
        hub.log = base / "hub.log"
        yield hub
    finally:
        proxy_pid_file = state / "jupyterhub-proxy.pid"
        proxy = [int(proxy_pid_file.read_text())] if proxy_pid_file.is_file() else []
        process.send_signal(signal.SIGTERM)  # the hub stops the servers it spawned and its proxy
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        try:  # the hub's services (the idle culler) run in the hub's own session and process group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in _processes_under(base) + proxy:  # whatever did not stop with the hub
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _login(hub: Hub, name: str, password: str) -> str:
    """Log in through the hub's REST API: the password buys a token."""
    status, body = hub.call(f"/hub/api/users/{name}/tokens", method="POST",
                            body={"auth": {"username": name, "password": password}, "note": "test login"})
    assert status in (200, 201), (status, body)
    return body["token"]


def _wait_ready(hub: Hub, name: str, token: str, timeout: float = 45) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, user = hub.call(f"/hub/api/users/{name}", token=token)
        server = (user or {}).get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        if server is None and status == 200 and not user.get("pending"):
            pytest.fail(f"{name}'s server stopped while starting:\n{hub.log.read_text()[-3000:]}")
        time.sleep(0.25)
    pytest.fail(f"{name}'s server was not ready within {timeout} s:\n{hub.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def students(hub):
    """Both students logged in with their passwords, their servers started at the same time."""
    tokens = {name: _login(hub, name, password) for name, password in PASSWORDS.items()}
    for name, token in tokens.items():
        status, body = hub.call(f"/hub/api/users/{name}/server", token=token, method="POST")
        assert status in (201, 202), (status, body)
    for name, token in tokens.items():
        _wait_ready(hub, name, token)
    return tokens


def test_a_wrong_password_or_another_students_password_gets_no_token(hub):
    for name, password in [("alice", "wrong"), ("alice", PASSWORDS["bob"]), ("mallory", "x")]:
        status, _ = hub.call(f"/hub/api/users/{name}/tokens", method="POST",
                             body={"auth": {"username": name, "password": password}})
        assert status == 403, (name, status)


def test_each_student_has_their_own_workspace_with_every_chapter(hub, students):
    chapters = sorted(path.name for path in chapter_sources(ROOT))
    for name, token in students.items():
        status, listing = hub.call(f"/user/{name}/api/contents/", token=token)
        assert status == 200, (name, status, listing)
        names = sorted(item["name"] for item in listing["content"])
        assert sorted(n for n in names if n.endswith(".ipynb")) == chapters  # one file per chapter
        assert "progress.html" in names
        assert (hub.homes / name / "workspace" / CHAPTER).is_file()
        status, notebook = hub.call(f"/user/{name}/api/contents/{CHAPTER}", token=token)
        assert notebook["content"]["metadata"]["openmodelslab"]["edition"] == "student"


def test_a_student_cannot_read_another_students_files_through_the_hub(hub, students):
    alice, bob = students["alice"], students["bob"]
    status, _ = hub.call("/user/bob/api/contents/", token=bob)
    assert status == 200
    for path in [f"/user/bob/api/contents/{CHAPTER}", f"/user/bob/files/{CHAPTER}", "/user/bob/api/kernels"]:
        status, _ = hub.call(path, token=alice, raw=True)
        assert status == 403, (path, status)  # bob's server refuses alice's token
    status, _ = hub.call("/user/alice/api/contents/../../bob/workspace/" + CHAPTER, token=alice, raw=True)
    assert status != 200  # alice's own server serves nothing outside her workspace
    status, _ = hub.call("/hub/api/users/bob", token=alice)
    assert status in (403, 404)
    status, _ = hub.call("/hub/api/users/bob/server", token=alice, method="DELETE")
    assert status in (403, 404)


async def _run_cells(hub: Hub, name: str, token: str, cells: list[str], timeout: float = 60) -> list[str]:
    """Run ``cells`` in a new kernel of ``name``'s server (REST + websocket); return each cell's text."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    status, kernel = hub.call(f"/user/{name}/api/kernels", token=token, method="POST",
                              body={"name": "python3"})
    assert status == 201, (status, kernel)
    ws_url = hub.url.replace("http", "ws", 1) + f"/user/{name}/api/kernels/{kernel['id']}/channels"
    headers = {"Authorization": f"token {token}"}
    connection = await asyncio.wait_for(websocket_connect(HTTPRequest(ws_url, headers=headers)), 20)
    session, outputs = uuid.uuid4().hex, []
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            connection.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": name, "session": session,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            text, reply, idle = [], None, False
            while reply is None or not idle:
                raw = await asyncio.wait_for(connection.read_message(), timeout)
                assert raw is not None, "the kernel's websocket closed"
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["msg_type"]
                if kind == "stream":
                    text.append(message["content"]["text"])
                elif kind == "error":
                    text.append("\n".join(message["content"]["traceback"]))
                elif kind == "execute_reply":
                    reply = message["content"]
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    idle = True
            assert reply["status"] == "ok", f"{name}: {code[:60]!r} failed:\n{''.join(text)}"
            outputs.append("".join(text))
    finally:
        connection.close()
        await asyncio.to_thread(hub.call, f"/user/{name}/api/kernels/{kernel['id']}", token=token,
                                method="DELETE")
    return outputs


def test_both_servers_run_a_chapters_first_cells(hub, students):
    source = nbformat.read(ROOT / "notebooks" / CHAPTER, as_version=4)
    code = [cell.source for cell in source.cells if cell.cell_type == "code"]
    first_import = next(i for i, text in enumerate(code) if "\nfrom labutils import" in f"\n{text}")
    cells = code[:first_import + FIRST_CELLS_AFTER_IMPORTS + 1]
    probe = "import os, labutils.paths as p; print(os.environ['OML_WORKSPACE'], p.course_root())"

    async def both():
        return await asyncio.gather(*(_run_cells(hub, name, token, [*cells, probe])
                                      for name, token in students.items()))

    results = asyncio.run(both())
    for name, outputs in zip(students, results):
        assert "seed: 0" in "".join(outputs), outputs
        workspace, course = outputs[-1].split()
        assert workspace == str(hub.homes / name / "workspace") and course == str(ROOT)


def test_idle_culler_runs_as_a_hub_service(hub):
    status, services = hub.call("/hub/api/services", token=hub.admin_token)
    assert status == 200 and "idle-culler" in services
    assert services["idle-culler"]["command"][1:3] == ["-m", "jupyterhub_idle_culler"]


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_course_pulled_by_nbgitpuller_is_the_one_the_workspace_is_filled_from(tmp_path, monkeypatch):
    singleuser = _load(ROOT / "deploy" / "singleuser.py")
    monkeypatch.setenv("OML_COURSE_ROOT", str(ROOT))
    assert singleuser.course_root(tmp_path) == ROOT
    pulled = tmp_path / singleuser.PULLED_COURSE
    (pulled / "notebooks").mkdir(parents=True)
    (pulled / "_toc.yml").write_text("format: jb-book\n")
    assert singleuser.course_root(tmp_path) == pulled


def test_nbgitpuller_links_pull_the_course_beside_the_workspace_and_open_it():
    from urllib.parse import parse_qs, urlsplit

    import yaml

    links, singleuser = _load(ROOT / "deploy" / "links.py"), _load(ROOT / "deploy" / "singleuser.py")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = urlsplit(links.nbgitpuller_link("https://hub.example.edu/", "04"))
    assert (url.netloc, url.path) == ("hub.example.edu", "/hub/user-redirect/git-pull")
    query = {key: value for key, (value,) in parse_qs(url.query).items()}
    (chapter,) = (ROOT / "notebooks").glob("04_*.ipynb")
    assert query == {"repo": config["repository"]["url"], "branch": config["repository"]["branch"],
                     "targetPath": singleuser.PULLED_COURSE, "urlpath": f"lab/tree/workspace/{chapter.name}"}
    with pytest.raises(ValueError, match="no chapter"):
        links.nbgitpuller_link("https://hub.example.edu", "99")


def test_kubernetes_values_run_the_image_built_from_the_course():
    import yaml

    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text())
    dockerfile = (ROOT / "deploy" / "image" / "Dockerfile").read_text()
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert f"FROM python:{python.split('=')[1]}-slim" in dockerfile
    assert "COPY . /opt/open-models-lab" in dockerfile
    assert "make setup-hub VENV=/opt/venv TORCH=cpu" in dockerfile  # jupyterhub-singleuser starts each server
    assert "nbgitpuller==1.3.0" in dockerfile  # pinned like everything else
    assert values["singleuser"]["cmd"] == ["python", "/opt/open-models-lab/deploy/singleuser.py"]
    assert 'CMD ["python", "/opt/open-models-lab/deploy/singleuser.py"]' in dockerfile
    assert values["singleuser"]["extraEnv"]["OML_COURSE_ROOT"] == "/opt/open-models-lab"
    assert values["cull"]["enabled"] and values["cull"]["timeout"] == 3600
    assert values["singleuser"]["cpu"]["limit"] == 2
