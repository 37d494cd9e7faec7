"""One owner per campaign folder: `arborist run` and `arborist resume` hold it for their whole session.

Two drivers on one folder would both append to its journal and write Parquet parts over each
other, so the second one is refused before it touches anything. The lock is an flock on
`<campaign_dir>/.owner.lock`: the kernel drops it when its holder exits or is killed (kill -9
included), so a lock file left behind never blocks anyone. The file also holds an owner record
(pid, host, command, start time), read only to tell a refused user who holds the folder.

Readers (`status`, `report`) and `inject` (the inbox has its own lock) never take it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.config import ConfigError

LOCK_FILE = ".owner.lock"
_RECORD_MAX = 4096


class FolderInUse(ConfigError):
    """Another arborist process owns the campaign folder; nothing was changed."""


@contextmanager
def claim(campaign_dir: Path, command: str) -> Iterator[None]:
    """Own `campaign_dir` (created if needed) for the block, or raise FolderInUse at once."""
    campaign_dir.mkdir(parents=True, exist_ok=True)
    # os.open's descriptor is not inherited across exec, so Ray's processes never hold the lock.
    fd = os.open(campaign_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(_in_use(campaign_dir, _read_owner(fd))) from None
        _write_owner(fd, command)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _write_owner(fd: int, command: str) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        record = json.loads(os.pread(fd, _RECORD_MAX, 0))
    except ValueError:
        return None  # the holder has locked but not yet written its record
    return record if isinstance(record, dict) else None


def _in_use(campaign_dir: Path, owner: dict[str, Any] | None) -> str:
    if owner is None:
        who = "another arborist process (it is starting; its owner record is not written yet)"
        stop = "stop it"
    else:
        who = (f"`{owner.get('command', 'arborist')}` (pid {owner.get('pid')} on host {owner.get('host')}, "
               f"since {owner.get('since')})")
        stop = f"stop it (Ctrl-C where it runs, or `kill {owner.get('pid')}` on {owner.get('host')})"
    return (
        f"campaign folder {campaign_dir} is in use by {who}; nothing was changed. Wait for it to finish or "
        f"{stop}, then run `arborist resume {campaign_dir}`. The lock ends with its process, so if that "
        "process is gone, the folder is on a file system without working flock (some network mounts): "
        "keep campaign_dir on the driver's local disk."
    )


def check_free(campaign_dir: Path) -> None:
    """Raise FolderInUse when another process owns `campaign_dir`; take nothing."""
    try:
        fd = os.open(campaign_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(_in_use(campaign_dir, _read_owner(fd))) from None
    finally:
        os.close(fd)
