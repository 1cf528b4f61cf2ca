"""labutils.distributed: torchrun launches that cannot collide, hang or leave processes behind."""

import os
import re
import socket
import textwrap

import pytest

from labutils import distributed
from labutils.distributed import DistributedLaunchError, free_port, launch, torchrun_command

ALL_REDUCE = """
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
x = torch.tensor([float(rank + 1), 10.0])
dist.all_reduce(x)
print(f"rank {rank} of {world}: {x.tolist()}")
dist.destroy_process_group()
"""

FAILS_ON_RANK_1 = """
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record


@record
def main():
    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        raise ValueError("rank 1 broke on purpose")
    dist.all_reduce(torch.ones(1))


main()
"""

HANGS = """
import os
import time
import torch.distributed as dist

dist.init_process_group("gloo")
print(f"pid {os.getpid()}", flush=True)
time.sleep(600)
"""


def _script(tmp_path, source, name="worker.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_command_uses_torchrun_on_loopback():
    command = torchrun_command("w.py", 3, ["--x", 1], port=12345)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=3" in command and "--master-port=12345" in command
    assert "--master-addr=127.0.0.1" in command and command[-3:] == ["w.py", "--x", "1"]


def test_two_gloo_ranks_all_reduce(tmp_path):
    result = launch(_script(tmp_path, ALL_REDUCE), nproc=2, timeout=120, show=False)
    for rank in (0, 1):
        assert result.rank_lines(rank) == [f"rank {rank} of 2: [3.0, 20.0]"]


def test_a_failing_rank_is_reported_with_its_traceback(tmp_path):
    with pytest.raises(DistributedLaunchError, match="failed on rank 1") as error:
        launch(_script(tmp_path, FAILS_ON_RANK_1), nproc=2, timeout=120, show=False)
    assert error.value.rank == 1
    assert "rank 1 broke on purpose" in str(error.value)


def test_a_hung_launch_is_stopped_with_all_its_ranks(tmp_path):
    with pytest.raises(DistributedLaunchError, match="time limit") as error:
        launch(_script(tmp_path, HANGS), nproc=2, timeout=15, show=False)
    pids = [int(line.split("pid ")[1]) for line in error.value.output.splitlines() if "pid " in line]
    assert len(pids) == 2, error.value.output[-2000:]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_missing_script_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="write it first"):
        launch(tmp_path / "nope.py")


SUMMARY = """[default1]:Traceback (most recent call last):
[default1]:FileNotFoundError: checkpoint-that-is-not-there.pt
[default0]:Traceback (most recent call last):
[default0]:RuntimeError: Connection closed by peer [127.0.0.1]:56491.
============================================================
broken.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-01_11:40:00
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 11)
  traceback : Traceback (most recent call last):
    FileNotFoundError: checkpoint-that-is-not-there.pt
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-01_11:40:00
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 10)
  traceback : Traceback (most recent call last):
    RuntimeError: Connection closed by peer [127.0.0.1]:56491. This is typically caused by a remote worker \
crashing.
============================================================
"""


def test_a_partner_failing_in_its_collective_does_not_hide_the_rank_that_crashed():
    # torchrun may observe the partner's "closed by peer" first and call it the root cause
    rank, traceback = distributed._failing_rank_report(SUMMARY)
    assert rank == 1 and "FileNotFoundError" in traceback and "closed by peer" not in traceback


def test_a_root_cause_of_its_own_is_kept():
    own = re.sub(r"RuntimeError: Connection closed by peer.*", "ValueError: own bug", SUMMARY)
    rank, traceback = distributed._failing_rank_report(own)
    assert rank == 0 and "own bug" in traceback
