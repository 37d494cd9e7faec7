"""Containment of one trial step with bubblewrap: what it sees, what it may write, what outlives it.

Each step runs in its own PID, mount, IPC and UTS namespace (and optionally network namespace).
Its file system is built from nothing: the system folders and the Python installation read-only,
the inputs the campaign declares read-only, and the few folders the step writes, each bound at
its own path so that every path arborist hands the step stays valid. The rest of the machine (the
campaign folder, other trials, the cached repositories, Ray's sockets and token, the worker's
/proc) does not exist in there. When the step's main process exits, bwrap's init process exits
with it and the kernel kills everything left in the namespace, setsid daemons included.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("auto", "bwrap", "none")
BWRAP = "bwrap"
NONE = "none"

# /sys read-only: CPU topology for thread pools, PCI data for NVML; it holds no secrets of the worker.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys")
_PROBE_TIMEOUT_S = 20.0
_log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """mode bwrap was asked for and bubblewrap cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Room:
    """What one step sees besides the system: folders it may write, paths it may only read."""

    cwd: Path
    writable: list[Path] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)
    network: bool = True


def containment(mode: str) -> str:
    """The containment a trial gets under `mode`: BWRAP or NONE.

    Raises SandboxUnavailable for mode bwrap when bubblewrap does not work on this machine.
    """
    if mode == NONE:
        return NONE
    problem = bwrap_problem()
    if problem is None:
        return BWRAP
    if mode == BWRAP:
        raise SandboxUnavailable(
            f"sandbox.mode is bwrap but bubblewrap cannot run on this machine ({problem}); install it "
            "(apt-get install bubblewrap, dnf install bubblewrap) and allow unprivileged user "
            "namespaces, or set sandbox.mode: auto to run unsandboxed with a warning"
        )
    _warn_unsandboxed(problem)
    return NONE


@functools.cache
def _warn_unsandboxed(problem: str) -> None:
    # Once per process: every trial of the worker would repeat it.
    _log.warning(
        "TRIALS RUN UNSANDBOXED on this machine: bubblewrap is not usable (%s). Changes can read the "
        "campaign folder, other trials and the worker's secrets. Install bubblewrap, or set "
        "sandbox.mode: none to accept this knowingly.",
        problem,
    )


@functools.cache
def bwrap_problem() -> str | None:
    """None when bwrap can start a contained process here, else why not (probed once per process)."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "no bwrap program on PATH"
    argv = wrap(["true"], Room(cwd=Path("/")))
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{exe} could not be run: {exc}"
    if proc.returncode != 0:
        return f"{exe} failed: {proc.stderr.decode(errors='replace').strip() or f'exit {proc.returncode}'}"
    return None


def wrap(argv: list[str], room: Room) -> list[str]:
    """The bwrap command line that runs argv in `room`."""
    args = [
        BWRAP,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        # No --new-session: the step already runs in a session of its own without a terminal, and
        # staying in bwrap's process group is what lets the budget's SIGTERM reach it first.
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
    ]
    if not room.network:
        args.append("--unshare-net")
    binds: dict[str, str] = {}
    for path in (*_SYSTEM_DIRS, *python_dirs(), *map(str, room.read_only)):
        binds.setdefault(os.path.abspath(path), "--ro-bind")
    for folder in room.writable:
        binds[os.path.abspath(folder)] = "--bind"
    # Parents first, so that a folder bound inside another one is not hidden by it.
    for path in sorted(binds, key=lambda p: (p.count("/"), p)):
        if os.path.islink(path) and path in _SYSTEM_DIRS:
            args += ["--symlink", os.readlink(path), path]  # /bin -> usr/bin on merged-/usr systems
        elif os.path.exists(path):
            args += [binds[path], path, path]
    for device in sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri/*")):
        args += ["--dev-bind", device, device]
    # What is not bound lives on bwrap's in-memory root; make it read-only so that a step cannot
    # even pretend to plant files outside its own folders.
    args += ["--remount-ro", "/", "--chdir", str(room.cwd), "--", *argv]
    return args


def python_dirs() -> list[str]:
    """The interpreter running arborist and its packages: `python` in a command means this one."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    dirs.update(site.getsitepackages())
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site):
        dirs.add(user_site)
    kept = sorted(d for d in dirs if d and not _under_system(d))
    return [d for d in kept if not any(d.startswith(parent + "/") for parent in kept)]  # one bind covers its subfolders


def _under_system(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS if not os.path.islink(d))


def existing(paths: Iterable[str | Path]) -> list[Path]:
    return [Path(p) for p in paths if os.path.exists(p)]
