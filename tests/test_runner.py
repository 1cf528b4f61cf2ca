"""The runner's kernel channels read a message that has arrived even when no wake-up comes.

The hang this guards against (nbclient issue #312) is intermittent, so the test makes it certain: a
socket whose waiting poll never reports the message (a lost wake-up), while the message is there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from queue import Empty

import pytest

from course import runner


class LostWakeUpSocket:
    """Holds one message from the start; a waiting poll sleeps its whole timeout and reports nothing."""

    def __init__(self, has_message: bool):
        self.has_message = has_message

    async def poll(self, timeout_ms: int) -> int:
        if timeout_ms == 0:
            return int(self.has_message)  # zmq_poll itself: it sees the message
        await asyncio.sleep(timeout_ms / 1000)
        return 0  # the event loop was never woken

    async def recv_multipart(self, **kwargs):
        raise AssertionError("replaced by _recv in the test")


def _channel(has_message: bool):
    channel_class = runner._polling_client_class().shell_channel_class.klass
    channel = channel_class.__new__(channel_class)  # no session or real socket needed
    channel.socket = LostWakeUpSocket(has_message)

    async def recv(**kwargs):
        return {"msg_type": "execute_reply"}

    channel._recv = recv
    return channel


def test_a_message_is_read_without_a_wake_up(monkeypatch):
    monkeypatch.setattr(runner, "POLL_SLICE", 0.05)
    channel = _channel(has_message=True)
    channel.socket.has_message = False

    async def arrives_later():
        await asyncio.sleep(0.2)
        channel.socket.has_message = True  # it arrives, and nothing wakes the waiting poll

    async def main():
        asyncio.get_running_loop().create_task(arrives_later())
        return await channel.get_msg(timeout=None)

    start = time.monotonic()
    assert asyncio.run(main()) == {"msg_type": "execute_reply"}
    assert time.monotonic() - start < 2  # read one slice after it arrived, not never


def test_a_timeout_still_raises_empty(monkeypatch):
    monkeypatch.setattr(runner, "POLL_SLICE", 0.05)
    with pytest.raises(Empty):
        asyncio.run(_channel(has_message=False).get_msg(timeout=0.2))


def test_kernels_of_the_runner_use_the_polling_channels():
    client = runner._kernel_manager({})().client()
    assert client.shell_channel_class.__name__ == client.iopub_channel_class.__name__ == "_PollingChannel"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is read from Linux's /proc")
def test_a_run_records_the_kernels_peak_memory():
    import nbformat

    allocate = "import numpy as np\nblock = np.ones(300_000_000 // 8)\ndel block"  # 300 MB, then freed
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(allocate)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    run = runner.run_notebook(notebook, None)
    assert run.peak_memory_mb is not None and run.peak_memory_mb > 300, run.peak_memory_mb
    assert runner.kernel_peak_memory_mb(None) is None  # no process: unknown, not zero
