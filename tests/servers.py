"""Starting and stopping the local servers the tests talk to (JupyterLab; ports for the hub)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(argv: list[str], env: dict[str, str], token: str) -> tuple[subprocess.Popen, str]:
    """Start ``argv`` (a ``jupyter lab`` command) on a free port; return it once /api/status answers."""
    port = free_port()
    process = subprocess.Popen([*argv, "--no-browser", f"--port={port}", f"--ServerApp.token={token}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
            return process, base
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"JupyterLab did not start within 60 s (exit code {process.poll()})")
            time.sleep(0.5)


def stop_lab(process: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to shut down (it stops its kernels first), else kill it."""
    try:
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"),
                               timeout=10)
        process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait(timeout=30)
