"""ruff (pinned in requirements-dev.txt, configured in pyproject.toml) passes on the course's Python code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["labutils", "course", "tools", "tests", "conftest.py"]


def test_ruff_check_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check {' '.join(CHECKED)}:\n{result.stdout[-6000:]}{result.stderr}"


def test_ruff_is_the_pinned_version():
    requirements = (ROOT / "requirements-dev.txt").read_text().splitlines()
    pinned = next(line.split("==")[1].split()[0] for line in requirements if line.startswith("ruff=="))
    version = subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True,
                             text=True).stdout
    assert version.split()[-1] == pinned
