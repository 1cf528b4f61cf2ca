"""Environment for the whole test suite (unit tests, nbval, papermill, book build).

- Notebooks run their quick setting (OML_SMOKE=1) and exercise checks are
  strict (OML_STRICT_CHECKS=1): a failing solution fails the test.
- Each kernel computes on one thread (OMP_NUM_THREADS=1, unless set): `make
  test` runs two workers on two cores, and two kernels each spinning two
  threads made small RNN steps 10x slower.
- Every run writes into its own output folder (OML_OUTPUT_DIR, read by
  labutils.paths.output_dir): papermill runs get one each (tests/notebook_runs.py),
  and the nbval kernels of each pytest process share one made here, so two
  workers running the same chapter never write the same files.
- The offline guard (tests/offline/sitecustomize.py) is put first on
  PYTHONPATH, so every Python process the tests start, notebook kernels
  included, cannot reach the network. Attempts are logged, and any logged
  attempt fails the run even if the code caught the error.
"""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OFFLINE = ROOT / "tests" / "offline"
NETWORK_LOG = ROOT / "_build" / "network-attempts.log"

os.environ["OML_SMOKE"] = "1"
os.environ["OML_STRICT_CHECKS"] = "1"
os.environ["OML_LIVE_PLOT"] = "0"
os.environ["OML_NETWORK_LOG"] = str(NETWORK_LOG)
_paths = (str(OFFLINE), str(ROOT), os.environ.get("PYTHONPATH"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in _paths if p)
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # quiet debugpy warning in kernels
RUN_OUTPUTS = tempfile.mkdtemp(prefix="oml-test-outputs-")  # this pytest process's own output folder
os.environ["OML_OUTPUT_DIR"] = RUN_OUTPUTS
atexit.register(shutil.rmtree, RUN_OUTPUTS, ignore_errors=True)

_spec = importlib.util.spec_from_file_location("oml_offline_guard", OFFLINE / "sitecustomize.py")
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # guard this process too


TIMINGS = ROOT / "_build" / "executed" / "timings.jsonl"


def pytest_configure(config):
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(ROOT / "tests" / "nbval_sanitize.cfg")  # old and new marks
    if not hasattr(config, "workerinput"):  # the controller starts with empty logs
        NETWORK_LOG.parent.mkdir(exist_ok=True)
        NETWORK_LOG.write_text("")
        TIMINGS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    """Each notebook's run times, so CI logs show how long every chapter takes."""
    if not TIMINGS.exists():
        return
    import json

    terminalreporter.section("notebook run times")
    for line in sorted(TIMINGS.read_text().splitlines()):
        row = json.loads(line)
        terminalreporter.write_line(f"{row['notebook']:<32} {row['run']:<26} {row['seconds']:>6.1f} s")


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not NETWORK_LOG.exists():
        return
    attempts = NETWORK_LOG.read_text().strip()
    if attempts:
        print(f"\nOFFLINE GUARD: code tried to reach the network during the tests:\n{attempts}")
        session.exitstatus = 1
