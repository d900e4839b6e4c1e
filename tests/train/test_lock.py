"""One run per work directory: the lock, its refusal, and the takeover of a stale one."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlf_jax.train import LockedError, RunLock
from mlf_jax.train.lock import LOCK_NAME


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acquire_refuse_release(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(LockedError, match=f"process {os.getpid()} on host"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    RunLock(tmp_path / "run").acquire()  # free again


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path):
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    notices = []
    with RunLock(tmp_path, notify=notices.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    (notice,) = notices
    assert f"stale lock {tmp_path / LOCK_NAME} of process {pid}" in notice


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path):
    """The pid runs, but it is another process than the one that took the lock."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": "1"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(owner))
    notices = []
    RunLock(tmp_path, notify=notices.append).acquire()
    assert len(notices) == 1 and "stale" in notices[0]


def test_a_lock_of_another_host_is_refused_with_the_way_out(tmp_path):
    owner = {"host": "other-host", "pid": 1, "since": "yesterday"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(owner))
    with pytest.raises(LockedError, match=f"host other-host since yesterday.*delete {tmp_path}"):
        RunLock(tmp_path).acquire()


_RACE = """
import json, multiprocessing as mp, os, socket, sys, time
from mlf_jax.train.lock import RunLock

def worker(workdir, barrier, queue):
    lock = RunLock(workdir, notify=lambda m: None)
    barrier.wait()
    try:
        lock.acquire()
        queue.put("got")
        time.sleep(0.3)
    except Exception as e:
        queue.put(type(e).__name__)

if __name__ == "__main__":
    mp.set_start_method("fork")
    holders = []
    for trial in range(24):
        workdir = os.path.join(sys.argv[1], str(trial))
        os.makedirs(workdir)
        with open(os.path.join(workdir, "run.lock"), "w") as f:  # of a dead process
            json.dump({"host": socket.gethostname(), "pid": 2**22 + 7, "start_time": "1"}, f)
        barrier, queue = mp.Barrier(6), mp.Queue()
        procs = [mp.Process(target=worker, args=(workdir, barrier, queue)) for _ in range(6)]
        [p.start() for p in procs]
        [p.join() for p in procs]
        holders.append(sorted(queue.get() for _ in procs))
    print(json.dumps(holders))
"""


# 24 races of 6 processes: with the earlier rename-aside takeover, 1 race in 40 ended with
# two holders (a loser's put-back window let a third process in); 0 in 200 since the
# takeover runs under flock.
@pytest.mark.slow
def test_of_six_processes_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _RACE, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    for holders in json.loads(out.stdout.strip().splitlines()[-1]):
        assert holders == ["LockedError"] * 5 + ["got"], holders
