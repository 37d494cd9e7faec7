"""Run one command of a trial under a wall-clock budget, and leave no process of it behind.

The command runs in its own process group (its own session), so the whole tree it spawns
(data loader workers, shells, a grandchild that ignores SIGTERM) can be signalled at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from trials.errors import CommandError

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL: time for a trainer to flush a checkpoint
_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 16  # longer lines (progress bars without newlines) are read in pieces
_PUMP_JOIN_S = 2.0
_PR_SET_PDEATHSIG = 1

# Loaded before any fork: loading a library between fork and exec can deadlock the child.
_LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class CommandOutcome:
    returncode: int  # negative: killed by that signal
    timed_out: bool  # ran past its budget and was killed
    duration_s: float  # from start until the main process exited (or the budget ran out)
    output_tail: str  # the last lines of stdout+stderr
    stopped: bool = False  # stopped on request (early stopping), not by the budget


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    budget_s: float,
    log_path: Path,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 40,
    grace_s: float = KILL_GRACE_S,
    stop: threading.Event | None = None,
) -> CommandOutcome:
    """Run argv with stdout and stderr merged, streamed line by line to log_path and on_line.

    on_line runs in the calling thread (callers such as Ray Tune's report keep per-thread
    state), while a watchdog thread enforces the budget even when on_line blocks. When the
    budget runs out (or `stop` is set) the process group gets SIGTERM, then SIGKILL after
    grace_s; when the main process exits on its own, whatever it left running in its group
    is stopped the same way. If on_line raises, the group is stopped and the exception
    propagates. Raises CommandError if the program cannot be started.
    """
    if not argv:
        raise CommandError("the command is empty; set it in the entrypoint of the campaign config")
    tail: deque[str] = deque(maxlen=max(1, tail_lines))
    lines: queue.Queue[str | None] = queue.Queue()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = _start(argv, cwd, env)
        assert proc.stdout is not None  # stdout=PIPE guarantees it
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, tail, lines), daemon=True)
        pump.start()
        watchdog = _Watchdog(proc, budget_s, grace_s)
        watchdog.start()
        stopped = False
        try:
            stopped = _deliver(lines, on_line, watchdog, stop, grace_s)
            stop_process_group(proc.pid, grace_s)  # what the main process left behind
            pump.join(timeout=_PUMP_JOIN_S)
            _drain(lines, on_line)
        finally:
            # Whatever happened above (a callback raised, the caller is torn down), no process
            # of the command outlives this call.
            stop_process_group(proc.pid, grace_s)
            proc.wait()
            watchdog.join()
        if pump.is_alive():
            # Someone left the group (setsid) but still holds our pipe; stop reading it.
            tail.append("[arborist] output still held open by a process outside the trial")
    return CommandOutcome(
        returncode=proc.returncode,
        timed_out=watchdog.timed_out,
        duration_s=watchdog.duration_s,
        output_tail="\n".join(tail),
        stopped=stopped,
    )


class _Watchdog(threading.Thread):
    """Waits for the main process; at the deadline, stops its whole group."""

    def __init__(self, proc: subprocess.Popen[bytes], budget_s: float, grace_s: float) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.grace_s = grace_s
        self.timed_out = False
        self.duration_s = 0.0
        self.exited = threading.Event()

    def run(self) -> None:
        try:
            self.proc.wait(timeout=max(0.0, self.budget_s))
        except subprocess.TimeoutExpired:
            self.timed_out = True
        self.duration_s = time.monotonic() - self.started
        if self.timed_out:
            stop_process_group(self.proc.pid, self.grace_s)
            self.proc.wait()
        self.exited.set()


def _deliver(
    lines: queue.Queue[str | None],
    on_line: Callable[[str], None] | None,
    watchdog: _Watchdog,
    stop: threading.Event | None,
    grace_s: float,
) -> bool:
    """Hand output lines to on_line until the main process is gone; True if stopped on request."""
    stopped = eof = False
    while True:
        if stop is not None and stop.is_set() and not stopped and not watchdog.exited.is_set():
            stopped = True
            stop_process_group(watchdog.proc.pid, grace_s)
        if eof:  # the output is closed, but the process may still run
            if watchdog.exited.wait(_POLL_S):
                return stopped
            continue
        try:
            line = lines.get(timeout=_POLL_S)
        except queue.Empty:
            if watchdog.exited.is_set():
                return stopped
            continue
        if line is None:
            eof = True
        elif on_line is not None:
            on_line(line)


def _drain(lines: queue.Queue[str | None], on_line: Callable[[str], None] | None) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is not None and on_line is not None:
            on_line(line)


def _start(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    if not cwd.is_dir():
        raise CommandError(f"cannot run {argv[0]!r}: working directory {cwd} does not exist")
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError as exc:
        raise CommandError(
            f"cannot run {argv[0]!r}: no such program (looked in the project and on the trial's "
            f"PATH={env.get('PATH', '')}); fix the command in the entrypoint config or list the "
            "variable that finds it in entrypoint.inherit_env"
        ) from exc
    except PermissionError as exc:
        raise CommandError(
            f"cannot run {argv[0]!r}: permission denied; make it executable (chmod +x) or run "
            "it through its interpreter (e.g. `python script.py`)"
        ) from exc
    except OSError as exc:
        raise CommandError(f"cannot run {argv[0]!r}: {exc}") from exc


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the worker running this trial dies, the
    # kernel kills the trial too instead of leaving it orphaned on a GPU.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _pump(stream: IO[bytes], log: IO[bytes], tail: deque[str], lines: queue.Queue[str | None]) -> None:
    # Drains the pipe whatever the consumer does, so the command never blocks on a full pipe.
    try:
        for raw in iter(partial(stream.readline, _MAX_LINE_BYTES), b""):
            log.write(raw)
            log.flush()
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line.rsplit("\r", 1)[-1])  # what a terminal would show of a progress bar
            lines.put(line)
    except (OSError, ValueError):
        pass  # the log was closed under us after the command finished
    finally:
        lines.put(None)


def stop_process_group(pgid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM every live process of the group, then SIGKILL what is left after grace_s."""
    if not group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group(pgid, grace_s):
        return
    _signal_group(pgid, signal.SIGKILL)
    _wait_group(pgid, _PUMP_JOIN_S)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count).

    Zombies are skipped because an orphan re-parented to a PID 1 that never reaps (common in
    containers) would otherwise look alive forever; killpg(pgid, 0) counts them.
    """
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after the last ')' are
        # state, ppid, pgrp.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False
