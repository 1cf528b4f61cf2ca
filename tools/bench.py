"""Timings that matter to a learner on a laptop CPU: loading data and models, one smoke run per chapter.

Prints figures; nothing here is a pass/fail test. Run with `make bench`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import notebooks as nbtools  # noqa: E402


def timed(label: str, fn) -> None:
    start = time.perf_counter()
    result = fn()
    print(f"{label:<40} {time.perf_counter() - start:7.1f} s   {result}")


def main() -> int:
    from labutils import data, models

    venv = Path(sys.prefix)
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 1e9
    print(f"{'virtual environment size':<40} {size:7.2f} GB   {venv}")
    for name in data.DATASETS:
        timed(f"load_dataset('{name}')", lambda name=name: data.load_dataset(name))
    timed("load_minilm_classifier()", lambda: type(models.load_minilm_classifier()[1]).__name__)
    timed("load_smollm2()", lambda: type(models.load_smollm2()[1]).__name__)
    out = Path(tempfile.mkdtemp())
    try:
        for py in nbtools.sources():
            timed(f"smoke run {py.stem}", lambda py=py: nbtools.execute(py, "smoke", out / py.name) and "ok")
    finally:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
