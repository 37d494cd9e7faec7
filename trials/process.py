"""Run one command of a trial under a wall-clock budget, and leave no process of it behind.

The command runs in its own process group (its own session), so the whole tree it spawns
(data loader workers, shells, a grandchild that ignores SIGTERM) can be signalled at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import resource
import shutil
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
from trials.spec import LimitsSpec

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL: time for a trainer to flush a checkpoint
_POLL_S = 0.05
_MAX_LINE_BYTES = 1 << 16  # longer lines (progress bars without newlines) are read in pieces
_PUMP_JOIN_S = 2.0
_PR_SET_PDEATHSIG = 1
_OUTPUT_CHECK_S = 2.0  # how often the output dir is measured while a step runs
_CPU_HARD_MARGIN_S = 5  # SIGXCPU first (catchable), SIGKILL this much later
_MB = 1 << 20
# What runtimes print when an allocation is refused under RLIMIT_AS.
_MEMORY_ERRORS = ("MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory", "Out of memory")

# Loaded before any fork: loading a library between fork and exec can deadlock the child.
_LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class CommandOutcome:
    returncode: int  # negative: killed by that signal
    timed_out: bool  # ran past its budget and was killed
    duration_s: float  # from start until the main process exited (or the budget ran out)
    output_tail: str  # the last lines of stdout+stderr
    stopped: bool = False  # stopped on request (early stopping), not by the budget
    limit: str = ""  # which resource limit the step went past, in words; "" when none


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
    limits: LimitsSpec | None = None,
    output_dir: Path | None = None,
    contained: bool = False,
) -> CommandOutcome:
    """Run argv with stdout and stderr merged, streamed line by line to log_path and on_line.

    on_line runs in the calling thread (callers such as Ray Tune's report keep per-thread
    state), while a watchdog thread enforces the budget even when on_line blocks. When the
    budget runs out (or `stop` is set) the process group gets SIGTERM, then SIGKILL after
    grace_s; when the main process exits on its own, whatever it left running in its group
    is stopped the same way. If on_line raises, the group is stopped and the exception
    propagates. Raises CommandError if the program cannot be started.

    limits caps each process's memory and CPU time, the bytes of output kept in the log (its
    head and tail) and the size of output_dir; `limit` in the outcome names the one exceeded.
    contained: argv starts a bwrap sandbox, whose own process must be signalled last.
    """
    limits = limits or LimitsSpec()
    if not argv:
        raise CommandError("the command is empty; set it in the entrypoint of the campaign config")
    tail: deque[str] = deque(maxlen=max(1, tail_lines))
    lines: queue.Queue[str | None] = queue.Queue()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        log = _Log(log_file, None if limits.max_log_mb is None else int(limits.max_log_mb * _MB))
        proc = _start(argv, cwd, env, limits)
        assert proc.stdout is not None  # stdout=PIPE guarantees it
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, tail, lines), daemon=True)
        pump.start()
        watchdog = _Watchdog(proc, budget_s, grace_s, contained, limits, output_dir)
        watchdog.start()
        stopped = False
        try:
            stopped = _deliver(lines, on_line, watchdog, stop, grace_s)
            stop_process_group(proc.pid, grace_s, contained)  # what the main process left behind
            pump.join(timeout=_PUMP_JOIN_S)
            _drain(lines, on_line)
        finally:
            # Whatever happened above (a callback raised, the caller is torn down), no process
            # of the command outlives this call.
            stop_process_group(proc.pid, grace_s, contained)
            proc.wait()
            watchdog.join()
        if pump.is_alive():
            # Someone left the group (setsid) but still holds our pipe; stop reading it.
            tail.append("[arborist] output still held open by a process outside the trial")
        log.finish()
    output_tail = "\n".join(tail)
    limit = (
        watchdog.limit
        or _output_limit(limits, output_dir)
        or _process_limit(limits, proc.returncode, output_tail)
        or log.limit(limits)
    )
    return CommandOutcome(
        returncode=proc.returncode,
        timed_out=watchdog.timed_out,
        duration_s=watchdog.duration_s,
        output_tail=output_tail,
        stopped=stopped,
        limit=limit,
    )


class _Log:
    """A step's log file that keeps at most max_bytes: the first half and the last half of the output."""

    def __init__(self, file: IO[bytes], max_bytes: int | None) -> None:
        self.file = file
        self.head_bytes = None if max_bytes is None else max_bytes // 2
        self.tail_max = None if max_bytes is None else max_bytes - max_bytes // 2
        self.written = 0
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0
        self.cut = 0
        self.lock = threading.Lock()
        self.finished = False

    def write(self, raw: bytes) -> None:
        with self.lock:
            if self.finished:
                return
            if self.head_bytes is None or (not self.tail and self.written + len(raw) <= self.head_bytes):
                self.file.write(raw)
                self.file.flush()
                self.written += len(raw)
                return
            assert self.tail_max is not None
            self.tail.append(raw)
            self.tail_bytes += len(raw)
            while self.tail_bytes > self.tail_max and self.tail:
                dropped = self.tail.popleft()
                self.tail_bytes -= len(dropped)
                self.cut += len(dropped)

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            if self.cut:
                self.file.write(f"\n[arborist] {self.cut} bytes of output were cut here (limits.max_log_mb)\n".encode())
            self.file.writelines(self.tail)
            self.file.flush()

    def limit(self, limits: LimitsSpec) -> str:
        if not self.cut:
            return ""
        total = (self.written + self.tail_bytes + self.cut) / _MB
        return (
            f"it printed {total:.1f} MB of output, more than limits.max_log_mb = {limits.max_log_mb:g}; its "
            f"log keeps the first and last part ({self.cut} bytes cut); print less, or raise limits.max_log_mb"
        )


def _output_limit(limits: LimitsSpec, output_dir: Path | None) -> str:
    if output_dir is None or limits.max_output_mb is None:
        return ""
    size = dir_size(output_dir)
    if size <= limits.max_output_mb * _MB:
        return ""
    return (
        f"its output dir {output_dir} reached {size / _MB:.1f} MB, more than limits.max_output_mb = "
        f"{limits.max_output_mb:g}; save less (fewer checkpoints), or raise limits.max_output_mb"
    )


def _process_limit(limits: LimitsSpec, returncode: int, output_tail: str) -> str:
    # bwrap reports a child killed by signal N as exit status 128 + N.
    if limits.max_cpu_s is not None and returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return (
            f"a process of it used more than limits.max_cpu_s = {limits.max_cpu_s:g} CPU seconds and was "
            "killed with SIGXCPU; raise limits.max_cpu_s"
        )
    if limits.memory_mb is not None and returncode != 0 and any(m in output_tail for m in _MEMORY_ERRORS):
        return (
            f"a process of it could not allocate memory under limits.memory_mb = {limits.memory_mb} "
            "(address space per process); use less memory, or raise limits.memory_mb"
        )
    return ""


def dir_size(path: Path) -> int:
    """Bytes of the files under path (links not followed), 0 when it does not exist."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class _Watchdog(threading.Thread):
    """Waits for the main process; at the deadline, stops its whole group."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        budget_s: float,
        grace_s: float,
        contained: bool,
        limits: LimitsSpec,
        output_dir: Path | None,
    ) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.grace_s = grace_s
        self.contained = contained
        self.limits = limits
        self.output_dir = output_dir
        self.timed_out = False
        self.limit = ""
        self.duration_s = 0.0
        self.exited = threading.Event()

    def run(self) -> None:
        deadline = self.started + max(0.0, self.budget_s)
        while True:
            try:
                self.proc.wait(timeout=max(0.0, min(_OUTPUT_CHECK_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self.timed_out = True
                    break
                self.limit = _output_limit(self.limits, self.output_dir)
                if self.limit:
                    break
        self.duration_s = time.monotonic() - self.started
        if self.timed_out or self.limit:
            stop_process_group(self.proc.pid, self.grace_s, self.contained)
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
            stop_process_group(watchdog.proc.pid, grace_s, watchdog.contained)
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


def _start(argv: list[str], cwd: Path, env: Mapping[str, str], limits: LimitsSpec) -> subprocess.Popen[bytes]:
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
            preexec_fn=partial(_in_child, _rlimits(limits)),
        )
    except FileNotFoundError as exc:
        raise _no_such_program(argv[0], env) from exc
    except PermissionError as exc:
        raise _not_executable(argv[0]) from exc
    except OSError as exc:
        raise CommandError(f"cannot run {argv[0]!r}: {exc}") from exc


def check_program(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Raise the CommandError that starting `program` would, before it is handed to a sandbox.

    Inside bwrap a missing program is only an exit status; checked here, it keeps its message.
    """
    if "/" in program:
        path = cwd / program
        if not path.is_file():
            raise _no_such_program(program, env)
        if not os.access(path, os.X_OK):
            raise _not_executable(program)
    elif shutil.which(program, path=env.get("PATH", "")) is None:
        raise _no_such_program(program, env)


def _no_such_program(program: str, env: Mapping[str, str]) -> CommandError:
    return CommandError(
        f"cannot run {program!r}: no such program (looked in the project and on the trial's "
        f"PATH={env.get('PATH', '')}); fix the command in the entrypoint config or list the "
        "variable that finds it in entrypoint.inherit_env"
    )


def _not_executable(program: str) -> CommandError:
    return CommandError(
        f"cannot run {program!r}: permission denied; make it executable (chmod +x) or run "
        "it through its interpreter (e.g. `python script.py`)"
    )


def _rlimits(limits: LimitsSpec) -> list[tuple[int, tuple[int, int]]]:
    # Computed before the fork: the child runs only setrlimit.
    out = []
    if limits.memory_mb is not None:
        out.append((resource.RLIMIT_AS, (limits.memory_mb * _MB, limits.memory_mb * _MB)))
    if limits.max_cpu_s is not None:
        soft = max(1, int(limits.max_cpu_s))
        out.append((resource.RLIMIT_CPU, (soft, soft + _CPU_HARD_MARGIN_S)))
    return out


def _in_child(rlimits: list[tuple[int, tuple[int, int]]]) -> None:
    # Runs in the child between fork and exec: if the worker running this trial dies, the
    # kernel kills the trial too instead of leaving it orphaned on a GPU. Limits are inherited
    # by everything the command starts.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for which, values in rlimits:
        resource.setrlimit(which, values)


def _pump(stream: IO[bytes], log: _Log, tail: deque[str], lines: queue.Queue[str | None]) -> None:
    # Drains the pipe whatever the consumer does, so the command never blocks on a full pipe.
    try:
        for raw in iter(partial(stream.readline, _MAX_LINE_BYTES), b""):
            log.write(raw)
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line.rsplit("\r", 1)[-1])  # what a terminal would show of a progress bar
            lines.put(line)
    except (OSError, ValueError):
        pass  # the log was closed under us after the command finished
    finally:
        lines.put(None)


def stop_process_group(pgid: int, grace_s: float = KILL_GRACE_S, contained: bool = False) -> None:
    """SIGTERM every live process of the group, then SIGKILL what is left after grace_s.

    contained: the group leader is bwrap, whose death kills its sandbox at once; it is spared
    the SIGTERM so that the step itself gets its grace time to flush a checkpoint.
    """
    if not group_alive(pgid):
        return
    if contained:
        for pid in group_members(pgid):
            if pid != pgid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
    else:
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


def group_members(pgid: int) -> list[int]:
    """Live processes of the group, as seen from here."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _live_in_group(entry.name, pgid):
            members.append(int(entry.name))
    return members


def _live_in_group(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The command name may hold spaces and parentheses; the fields after the last ')' are
    # state, ppid, pgrp.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")


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
    return any(entry.name.isdigit() and _live_in_group(entry.name, pgid) for entry in os.scandir("/proc"))
