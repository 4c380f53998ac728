"""A job removes the temporaries a killed writer of its own target left behind (issue: two
temporary folders, a member folder's and a fast source's, survived three kills of the mini DAG)."""

import os
import signal
import subprocess
import sys
import time

from helpers import run_generate

from lpe.core.artifacts import atomic_dir, remove_stale_temporaries

HOLD = """
import sys, time
from lpe.core.artifacts import atomic_dir, atomic_path
kind, target, ready = sys.argv[1:]
opener = atomic_dir if kind == "dir" else atomic_path
with opener(target) as tmp:
    (tmp / "partial" if kind == "dir" else tmp).write_bytes(b"half a member")
    open(ready, "w").close()
    time.sleep(600)
"""


def killed_writer(target, kind, tmp_path):
    """A writer of ``target`` killed (SIGKILL) in the middle of its write: its temporary stays."""
    ready = tmp_path / f"ready-{kind}"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(target), str(ready)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = list(target.parent.glob(f".{target.name}.tmp-*"))
    assert len(left) == 1, left
    return left[0]


def test_the_member_writer_removes_what_a_killed_writer_left(tmp_path, checkpoint):
    target = tmp_path / "members" / "bsr-int4-seed2"
    stale = killed_writer(target, "dir", tmp_path)
    run_generate(checkpoint, target, "--method", "bsr", "--format", "int4", "--members", 2)
    assert not stale.exists() and (target / "manifest.json").is_file()
    assert not list(target.parent.glob(".*.tmp-*"))


def test_a_file_writer_removes_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "fast" / "scores.csv"
    stale = killed_writer(target, "file", tmp_path)
    assert remove_stale_temporaries(target) == [stale] and not stale.exists()


def test_a_running_writers_temporary_and_other_targets_stay(tmp_path):
    target = tmp_path / "de"
    other = tmp_path / "de2"
    killed_writer(other, "dir", tmp_path)  # another target's: not this writer's to remove
    with atomic_dir(target) as tmp:  # this process is alive: its temporary is not stale
        assert remove_stale_temporaries(target) == [] and tmp.exists()
    assert len(list(tmp_path.glob(".de2.tmp-*"))) == 1
