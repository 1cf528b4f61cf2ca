"""The one papermill runner: ``make execute``, the test suite and ``make bench`` run notebooks with it.

The kernel gets its own environment variables (``env``), so this process's
``os.environ`` is never changed and restored behind anyone's back.

Example:
    >>> from course.runner import run_notebook
    >>> run = run_notebook("notebooks/00_setup_and_tour.ipynb", "/tmp/out.ipynb",
    ...                    parameters={"SMOKE": True}, env={"OML_OUTPUT_DIR": "/tmp/run-1"})
    >>> round(run.seconds)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

CELL_TIMEOUT = 300  # seconds per cell in test runs (the longest smoke cell takes under a minute)


@dataclass
class Run:
    """An executed notebook and how long it took."""

    notebook: Any
    seconds: float
    peak_memory_mb: float | None = None  # the kernel process's peak resident memory (Linux only)


POLL_SLICE = 1.0  # seconds: the longest a missed wake-up can delay a message (see _PollingChannel)


def _polling_client_class():
    """A kernel client whose shell and IOPub channels never sleep through a message.

    A run could hang for good at an ``ipywidgets.interact`` cell with both sides idle: the kernel
    had replied, but the runner's asyncio wait on the ZMQ socket was never woken (nbclient issue
    #312; ZMQ's file descriptor signals edges, so a wake-up can be lost). These channels wait in
    slices of ``POLL_SLICE`` seconds and look at the socket itself (``poll(0)`` is a real zmq_poll)
    after each slice, so a message that is there is always read.
    """
    from queue import Empty

    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type

    class _PollingChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if await self.socket.poll(0):
                    return await self._recv()
                left = POLL_SLICE if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise Empty
                await self.socket.poll(int(1000 * min(POLL_SLICE, left)))

    class PollingKernelClient(AsyncKernelClient):
        shell_channel_class = Type(_PollingChannel)
        iopub_channel_class = Type(_PollingChannel)

    return PollingKernelClient


def kernel_peak_memory_mb(pid: int | None) -> float | None:
    """The peak resident memory (VmHWM) of process ``pid`` so far, in MB; None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # the kernel reports kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _kernel_manager(extra_env: dict[str, str], peaks: list[float] | None = None):
    """A kernel manager class whose kernels start with ``os.environ`` plus ``extra_env``.

    Just before a kernel is shut down, its peak memory is appended to ``peaks`` (if given).
    """
    from jupyter_client.manager import AsyncKernelManager

    client_class = _polling_client_class()

    class KernelManagerWithEnv(AsyncKernelManager):
        def _client_factory_default(self) -> type:
            return client_class

        async def start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **extra_env}
            await super().start_kernel(**kw)

        async def shutdown_kernel(self, *args: Any, **kw: Any) -> None:
            peak = kernel_peak_memory_mb(getattr(self.provisioner, "pid", None))
            if peaks is not None and peak is not None:
                peaks.append(peak)
            await super().shutdown_kernel(*args, **kw)

    return KernelManagerWithEnv


def run_notebook(
    source: str | Path | Any,
    out: str | Path | None,
    *,
    parameters: dict | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    cell_timeout: float | None = None,
) -> Run:
    """Execute ``source`` (a path or a notebook node) with papermill into ``out``; return the run.

    ``out`` is saved after every cell, so a failed run leaves its outputs up to the error there.
    ``parameters`` go into the ``parameters`` cell; ``env`` into the kernel's environment (with
    ``OML_LIVE_PLOT=0`` unless given); ``cwd`` is the kernel's working folder (default: the
    notebook's own folder, else ``notebooks/``); ``cell_timeout`` fails a cell that hangs.
    Raises ``papermill.PapermillExecutionError`` when a cell raises.
    """
    import papermill

    if isinstance(source, (str, Path)):
        source = Path(source)
        notebook = nbformat.read(source, as_version=4)
        default_cwd = source.parent
    else:
        notebook = source
        default_cwd = Path(__file__).resolve().parent.parent / "notebooks"
    kernel_env = {"OML_LIVE_PLOT": "0", **(env or {})}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    start, peaks = time.perf_counter(), []
    executed = papermill.execute_notebook(
        notebook, None if out is None else str(out), parameters=parameters or None,
        cwd=str(cwd or default_cwd), kernel_name="python3", progress_bar=False, log_output=False,
        execution_timeout=cell_timeout, kernel_manager_class=_kernel_manager(kernel_env, peaks),
    )
    return Run(executed, time.perf_counter() - start, max(peaks, default=None))
