"""One owner per campaign folder: a second process is refused with the holder's name; a holder
killed with -9 leaves a lock file that blocks nobody."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.ownership import LOCK_FILE, FolderInUse, check_free, claim

HOLDER = """
import sys
from pathlib import Path
from orchestrator.ownership import claim
with claim(Path(sys.argv[1]), "arborist resume"):
    print("held", flush=True)
    sys.stdin.read()  # holds until the test closes stdin or kills it
"""


def _holder(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_owner_is_refused_with_the_holders_name(tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    holder = _holder(folder)
    try:
        with pytest.raises(FolderInUse) as refused, claim(folder, "arborist run"):
            pytest.fail("two owners at once")
        message = str(refused.value)
        assert f"campaign folder {folder} is in use by `arborist resume`" in message
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert "nothing was changed" in message and f"arborist resume {folder}" in message
        with pytest.raises(FolderInUse, match=f"pid {holder.pid}"):
            check_free(folder)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with claim(folder, "arborist run"):  # a holder that exited released it
        record = json.loads((folder / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["command"] == "arborist run"


def test_a_holder_killed_with_9_leaves_a_lock_file_that_blocks_nobody(tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    holder = _holder(folder)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    stale = json.loads((folder / LOCK_FILE).read_text())
    assert stale["pid"] == holder.pid  # its record is still there, and means nothing now
    check_free(folder)
    with claim(folder, "arborist resume"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_the_lock_is_not_inherited_by_processes_the_owner_starts(tmp_path: Path) -> None:
    # Ray's processes outlive a driver killed alone; they must not keep the folder locked.
    folder = tmp_path / "campaign"
    with claim(folder, "arborist run"):
        child = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, close_fds=False)
    assert child.stdout is not None and child.stdout.readline().strip() == "up"  # alive, past its exec
    try:
        check_free(folder)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
