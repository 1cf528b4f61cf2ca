"""Launch a ``torch.distributed`` script with torchrun, safely, from a notebook or a test.

Each launch gets its own free port on 127.0.0.1, a time limit, and its own
process group, so runs in parallel never collide and no process outlives the
call. When a rank fails, torchrun stops the others and the error raised here
shows the failing rank's traceback.

Example:
    >>> result = launch("allreduce.py", nproc=2, timeout=60)  # doctest: +SKIP
    >>> print(result.output)                                    # every rank's lines, prefixed
    [default0]:rank 0 of 2 ...
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PREFIX = re.compile(r"^\[default(\d+)\]:(.*)$")
_ROOT_CAUSE_RANK = re.compile(r"Root Cause.*?rank\s*:\s*(\d+)", re.DOTALL)
_PORT_TAKEN = ("address already in use", "EADDRINUSE", "The server socket has failed to listen")


class DistributedLaunchError(RuntimeError):
    """A launch that failed or ran past its time limit; ``rank`` is the rank that failed first, if known."""

    def __init__(self, message: str, output: str = "", rank: int | None = None):
        super().__init__(message)
        self.output, self.rank = output, rank


@dataclass
class LaunchResult:
    """What a launch printed (each line prefixed ``[defaultR]:`` by its rank) and how long it took."""

    output: str
    seconds: float
    command: list[str] = field(default_factory=list)

    def by_rank(self) -> str:
        """The output with each rank's lines together, rank 0 first (torchrun's own lines on top)."""
        lines = self.output.splitlines()
        order = [(int(m.group(1)) if (m := _PREFIX.match(line)) else -1, i) for i, line in enumerate(lines)]
        return "\n".join(lines[i] for _, i in sorted(order))

    def rank_lines(self, rank: int) -> list[str]:
        """The lines rank ``rank`` printed, without the prefix."""
        return [m.group(2) for m in map(_PREFIX.match, self.output.splitlines())
                if m and int(m.group(1)) == rank]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(script: str | Path, nproc: int, args: Sequence[str] = (), port: int | None = None,
                     python: str = sys.executable) -> list[str]:
    """The torchrun command line for ``nproc`` ranks on this machine (``python -m torch.distributed.run``)."""
    port = free_port() if port is None else port
    return [python, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
            "--master-addr=127.0.0.1", f"--master-port={port}", "--tee=3", str(script), *map(str, args)]


# Errors a rank gets because another rank died: a consequence, not the cause.
_PEER_FAILURE = re.compile(r"Connection closed by peer|Connection reset by peer|remote worker crashing|"
                           r"DistNetworkError|Broken pipe", re.IGNORECASE)


def _summary_blocks(output: str) -> list[tuple[int, str]]:
    """(rank, text) of each failure in torchrun's summary, the root cause first."""
    if "Root Cause" not in output:
        return []
    summary = output[output.rindex("Failures:") if "Failures:" in output else output.rindex("Root Cause"):]
    failures, _, root = summary.partition("Root Cause")
    blocks = []
    for part in (root, failures):
        for block in re.split(r"^\s*\[\d+\]:\s*$", part, flags=re.M)[1:]:
            block = block.split("=" * 20)[0].split("-" * 20)[0].rstrip()
            match = re.search(r"rank\s*:\s*(\d+)", block)
            if match:
                blocks.append((int(match.group(1)), block))
    return blocks


def _printed_traceback(output: str, rank: int | None) -> str:
    lines = [m.group(2) for m in map(_PREFIX.match, output.splitlines()) if m and int(m.group(1)) == rank]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("Traceback")), None)
    return "\n".join(lines[start:]) if start is not None else ""


def _failing_rank_report(output: str) -> tuple[int | None, str]:
    """The rank that failed first for a reason of its own, and its traceback.

    torchrun's "root cause" is the first failure it observed; when one rank crashes, its partners fail
    a moment later in their collectives ("Connection closed by peer"), and either may be observed
    first. So a failure that is only a peer's consequence gives way to one that is not.
    """
    candidates = []
    for rank, block in _summary_blocks(output):
        text = block if "Traceback" in block else _printed_traceback(output, rank)
        candidates.append((rank, text or block))
    if not candidates:
        match = _ROOT_CAUSE_RANK.search(output)
        rank = int(match.group(1)) if match else None
        text = _printed_traceback(output, rank)
        return rank, text or "\n".join(output.splitlines()[-25:])
    own = [(rank, text) for rank, text in candidates if not _PEER_FAILURE.search(text)]
    return (own or candidates)[0]


def _rank_lines(output: str, last: int = 15) -> str:
    lines = [line for line in output.splitlines() if _PREFIX.match(line)]
    return "\n".join(lines[-last:]) or "(no rank printed anything)"


def _stop(process: subprocess.Popen) -> None:
    """Stop torchrun and every rank it started (they share one process group)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(script: str | Path, nproc: int = 2, args: Sequence[str] = (), *, timeout: float = 120,
           threads: int = 1, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
           show: bool = True, attempts: int = 2) -> LaunchResult:
    """Run ``script`` on ``nproc`` ranks with torchrun; return what they printed.

    ``threads`` sets OMP_NUM_THREADS for each rank. Raises ``DistributedLaunchError`` with the failing
    rank's traceback when a rank fails, and after ``timeout`` seconds (every process is stopped).
    A port taken between choosing and binding it is retried with a new one (``attempts`` in all).
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"no script {script}: write it first (the chapter writes its workers)")
    run_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}
    for attempt in range(1, attempts + 1):
        command = torchrun_command(script, nproc, args)
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd or script.parent, env=run_env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            output, _ = process.communicate()
            raise DistributedLaunchError(
                f"{script.name} ran past its time limit of {timeout:g} s and was stopped "
                f"(all {nproc} ranks). "
                f"A rank that never joins a collective makes the others wait forever: check that every "
                f"rank calls the same collectives in the same order. The ranks' last lines:\n"
                + _rank_lines(output), output) from None
        except BaseException:  # KeyboardInterrupt in a notebook: leave nothing running
            _stop(process)
            raise
        finally:
            _stop(process)  # torchrun has exited; make sure no rank is left behind
        seconds = time.perf_counter() - start
        if process.returncode == 0:
            result = LaunchResult(output, seconds, command)
            if show:
                print(result.by_rank())
            return result
        if attempt < attempts and any(s in output for s in _PORT_TAKEN):
            continue
        rank, traceback = _failing_rank_report(output)
        who = f"rank {rank}" if rank is not None else "a rank"
        raise DistributedLaunchError(
            f"{script.name} failed on {who} (exit code {process.returncode}); "
            f"torchrun stopped the other ranks. "
            f"Traceback of {who}:\n{traceback}", output, rank)
    raise AssertionError("unreachable")
