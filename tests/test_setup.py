"""`make setup` installs the right torch, checks the machine first, and labutils installs as a package."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from course import setup_checks

ROOT = Path(__file__).resolve().parent.parent
PIN = "torch==2.13.0"


@pytest.mark.parametrize("choice, has_gpu, expected", [
    ("cpu", None, [PIN, "--extra-index-url", setup_checks.CPU_INDEX]),
    ("cuda", None, [PIN, "--extra-index-url", setup_checks.CUDA_INDEX]),
    ("pip", None, [PIN]),
    ("auto", True, [PIN, "--extra-index-url", setup_checks.CUDA_INDEX]),
    ("auto", False, [PIN, "--extra-index-url", setup_checks.CPU_INDEX]),
    ("AUTO ", False, [PIN, "--extra-index-url", setup_checks.CPU_INDEX]),
])
def test_the_pip_arguments_of_each_torch_choice(choice, has_gpu, expected):
    assert setup_checks.torch_pip_args(choice, PIN, has_gpu=has_gpu, local_cpu=None) == expected


def test_auto_uses_a_cpu_build_that_pip_already_holds_locally():
    args = setup_checks.torch_pip_args("auto", PIN, has_gpu=False, local_cpu="2.13.0+cpu")
    assert args == [PIN]  # no index to query: pip's own configuration supplies the CPU wheel
    assert setup_checks.torch_pip_args("auto", PIN, has_gpu=True, local_cpu="2.13.0+cpu")[-1] == \
        setup_checks.CUDA_INDEX


def test_the_local_cpu_build_is_found_offline_or_not_at_all():
    found = setup_checks.local_cpu_build(PIN)
    assert found is None or found.startswith("2.13.0+cpu")
    assert setup_checks.local_cpu_build("torch==0.0.1") is None


def test_the_cpu_index_is_pytorchs_own_and_an_unknown_choice_is_explained():
    assert setup_checks.CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    with pytest.raises(ValueError, match="TORCH='rocm' is not one of auto, cpu, cuda, pip"):
        setup_checks.torch_pip_args("rocm", PIN)


def test_auto_asks_nvidia_smi(monkeypatch):
    monkeypatch.setattr(setup_checks.shutil, "which", lambda name: None)
    assert not setup_checks.nvidia_smi_works()
    assert setup_checks.torch_pip_args("auto", PIN, local_cpu=None)[-1] == setup_checks.CPU_INDEX


def test_preflight_says_how_to_install_what_is_missing():
    assert setup_checks.preflight_problems(has_ensurepip=True, git="/usr/bin/git") == []
    venv, git = setup_checks.preflight_problems(has_ensurepip=False, git=None, platform="linux")
    assert "venv module" in venv and re.search(r"apt-get install python3\.\d+-venv", venv)
    assert "git is missing" in git and "apt-get install git" in git
    [mac] = setup_checks.preflight_problems(has_ensurepip=True, git=None, platform="darwin")
    assert "xcode-select --install" in mac


def test_the_makefile_checks_first_and_passes_the_torch_choice():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH \?= auto$", makefile, re.M)
    setup = makefile[makefile.index("$(INSTALLED):"):]
    assert setup.index("setup_checks preflight") < setup.index("-m venv")
    assert 'setup_checks torch-args "$(TORCH)" "$(TORCH_PIN)"' in setup
    for doc in ("README.md", "book/setup.md"):
        text = (ROOT / doc).read_text()
        assert all(f"TORCH={c}" in text for c in ("cpu", "cuda", "auto")), f"{doc} does not document TORCH="


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_build_backend_pinned_license_spdx_and_file():
    project = _pyproject()
    assert re.fullmatch(r"setuptools==[\d.]+", project["build-system"]["requires"][0].split("#")[0].strip())
    assert project["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


DISTRIBUTIONS = {"sklearn": "scikit-learn", "IPython": "ipython"}


def test_every_third_party_import_of_labutils_is_a_declared_dependency_pinned_like_the_lock():
    declared = dict(d.split("==") for d in _pyproject()["project"]["dependencies"])
    requirements = dict(re.findall(r"^([\w.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    lock = dict(re.findall(r"^([\w.-]+)==(\S+)", (ROOT / "requirements-lock.txt").read_text(), re.M))
    for name, version in declared.items():
        assert requirements.get(name, lock.get(name)) == version, f"{name}=={version} disagrees with the pins"
    imported = set()
    for path in (ROOT / "labutils").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported - set(sys.stdlib_module_names) if m not in ("labutils", "__future__")}
    missing = {DISTRIBUTIONS.get(m, m) for m in third_party} - set(declared)
    assert not missing, f"labutils imports {sorted(missing)}, which pyproject.toml does not declare"


def test_the_wheel_holds_labutils_only_and_imports_from_a_clean_folder(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "labutils", source / "labutils", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("labutils-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        archive.extractall(tmp_path / "site")
    assert "labutils/check.py" in names and not any(n.startswith(("course/", "tests/")) for n in names)
    assert {f"labutils/{p.relative_to(ROOT / 'labutils').as_posix()}"
            for p in (ROOT / "labutils").rglob("*.py")} <= set(names)
    assert "License-Expression: MIT" in metadata and "Requires-Dist: torch==2.13.0" in metadata
    code = (f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); import labutils; "
            "from labutils import check, get_device, seed_everything, device_report; "
            "print(labutils.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith(str(tmp_path / "site"))
