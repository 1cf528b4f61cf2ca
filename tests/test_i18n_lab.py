"""`make lab LANG=zh`: the Chinese workspace in JupyterLab, whose own interface is in Chinese (its zh-CN
language pack, pinned), and whose kernels make check() speak Chinese."""

import asyncio
import json
import os
import shutil
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from course.workspace import lab_command, prepare
from tests.servers import start_lab, stop_lab
from tests.test_book import CHROMIUM_ARGS, _chromium

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "oml-test"


@pytest.fixture(scope="module")
def zh_lab(tmp_path_factory):
    """JupyterLab started as `make lab LANG=zh` starts it, on a fresh Chinese workspace, empty home."""
    (ROOT / "_build").mkdir(exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="test-lab-zh-", dir=ROOT / "_build"))
    home = tmp_path_factory.mktemp("home")
    prepare(workspace, language="zh_CN")
    argv, env = lab_command(workspace, language="zh_CN")
    env = {**env, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    try:
        process, base = start_lab([*argv, "--allow-root"], env, TOKEN)
        try:
            yield base, workspace
        finally:  # the browser test opened a notebook: the shutdown stops its kernel, then the server
            stop_lab(process, base, TOKEN)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _get(base, path, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}?token={TOKEN}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))


def test_the_zh_cn_language_pack_is_offered_and_chosen(zh_lab):
    base, _ = zh_lab
    packs = _get(base, "/lab/api/translations")["data"]
    assert "zh_CN" in packs, f"JupyterLab sees no zh-CN language pack: {packs}"
    messages = _get(base, "/lab/api/translations/zh_CN")["data"]
    assert "jupyterlab" in messages and messages["jupyterlab"], "the pack has no JupyterLab strings"
    settings = _get(base, "/lab/api/settings/@jupyterlab/translation-extension:plugin")
    assert settings["schema"]["properties"]["locale"]["default"] == "zh_CN"  # from locale/zh_CN/jupyter


async def _run_in_kernel(base, path, code):
    """Run ``code`` in a kernel started for the notebook at ``path`` (as opening it in Lab does)."""
    from tornado.websocket import websocket_connect

    session = _get(base, "/api/sessions", "POST", {"path": path, "type": "notebook", "name": path,
                                                    "kernel": {"name": "python3"}})
    kernel = session["kernel"]["id"]
    url = f"{base.replace('http', 'ws')}/api/kernels/{kernel}/channels?token={TOKEN}"
    connection = await websocket_connect(url)
    msg_id = uuid.uuid4().hex
    await connection.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": msg_id,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        message = json.loads(await asyncio.wait_for(connection.read_message(), 120))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            out.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            out.append("\n".join(message["content"]["traceback"]))
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    connection.close()
    stop = urllib.request.Request(f"{base}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")
    urllib.request.urlopen(stop)  # the kernel stops with its session
    return "".join(out)


def test_check_speaks_chinese_in_a_chinese_notebook_of_the_lab(zh_lab):
    base, workspace = zh_lab
    code = "from labutils.check import check\ncheck('00.9', 1, expected=1)\ncheck('00.9', 2, expected=1)"
    out = asyncio.run(_run_in_kernel(base, "00_setup_and_tour.ipynb", code))
    assert "[PASS] 练习 00.9 通过。" in out and "[FAIL] 练习 00.9 未通过：" in out, out


@pytest.mark.book
def test_jupyterlab_menus_are_in_chinese(zh_lab):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires the browser test: install Debian's chromium (apt-get install chromium)")
        pytest.skip("Chromium not found (apt-get install chromium to run the browser test)")
    from playwright.sync_api import sync_playwright

    base, _ = zh_lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 800})
        tab.goto(f"{base}/lab/tree/01_backpropagation.ipynb?token={TOKEN}")
        tab.wait_for_selector("#jp-MainMenu", timeout=60_000)
        menus = tab.inner_text("#jp-MainMenu").split()
        tab.wait_for_selector(".jp-MarkdownOutput h1", timeout=60_000)
        heading = tab.inner_text(".jp-MarkdownOutput h1")
        shots = ROOT / "_build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(shots / "zh-lab.png"))
        browser.close()
    assert menus[:3] == ["文件", "编辑", "查看"], menus
    assert heading == "01 · 反向传播", heading  # chapter 01 is in the edition: its text is Chinese
