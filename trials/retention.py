"""What a trial leaves on its worker, and for how long.

The ledger needs nothing from a worker's scratch folder: a trial's metrics, message, log tail
and fingerprint travel in its result. What stays there is for a person debugging on the
machine, so it is bounded:

- When a trial ends, however it ends, its scratch parts go: the worktree, its steps'
  bytecode, their HOME and TMPDIR, the evaluator's room. Its record stays: the step logs,
  `params.json`, `metrics/`, `output/`, and `finished.json` (state and time). On Ray the record
  is written as the trial ends and the scratch parts go in the background, while the next trial
  already runs; a folder whose worker died meanwhile (a record, scratch parts, and a lock nobody
  holds) is stripped by the next pruning.
- Of those records, a worker keeps the newest `keep_complete` complete trials and the newest
  `keep_failed` others (failed, timed out, invalid, pruned, lost), and removes the rest whole,
  each time a trial starts and ends on it.
- A running trial holds a lock, `<scratch>/locks/trial-<id>.lock`; the kernel drops it when
  its process dies. A folder with no `finished.json` whose lock nobody holds was left by a
  worker that died mid-trial: the next trial on the machine strips it the same way, marks it
  `LOST`, and counts it with the failed ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trials.fsutil import atomic_write_bytes, rmtree_force
from trials.layout import TrialPaths
from trials.spec import RetentionSpec, TrialState

LOST = "LOST"  # the state recorded for a trial whose worker died while it ran
_LOCK_PREFIX = "trial-"


@dataclass(frozen=True)
class Record:
    state: str
    finished_at: float


class TrialLock:
    """Held for as long as a trial runs on this machine, so that no pruning touches its folder."""

    def __init__(self, scratch_dir: Path, trial_id: str) -> None:
        self.path = lock_path(scratch_dir, trial_id)
        fd = _acquire(self.path, blocking=True)
        assert fd is not None  # a blocking acquire returns only once it holds the lock
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def lock_path(scratch_dir: Path, trial_id: str) -> Path:
    return Path(scratch_dir) / "locks" / f"{_LOCK_PREFIX}{trial_id}.lock"


def finish(paths: TrialPaths, state: str, finished_at: float) -> None:
    """Remove a trial's scratch parts and record how it ended."""
    strip(paths)
    record(paths, state, finished_at)


def record(paths: TrialPaths, state: str, finished_at: float) -> None:
    """Record how a trial ended (its scratch parts may still be there: `strip` removes them)."""
    payload = {"state": state, "finished_at": finished_at}
    atomic_write_bytes(paths.finished_file, (json.dumps(payload) + "\n").encode())


def strip(paths: TrialPaths) -> None:
    # A worktree removed here stays registered in the cached repository until the next
    # `git worktree prune`, which every materialization runs.
    for part in paths.scratch_parts():
        rmtree_force(part)


def read_record(paths: TrialPaths) -> Record | None:
    """How a trial ended, from its folder; None while it runs or when its worker died."""
    try:
        data = json.loads(paths.finished_file.read_text())
        return Record(state=str(data["state"]), finished_at=float(data["finished_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        # Unreadable (a torn disk, a hand edit): still finished, as of when it was written.
        try:
            return Record(state=LOST, finished_at=paths.finished_file.stat().st_mtime)
        except OSError:
            return None


def prune(scratch_dir: Path, keep: RetentionSpec) -> list[str]:
    """Apply the retention rule to every trial folder of this machine; return the ids removed.

    Folders of running trials (their lock is held) are not touched.
    """
    scratch_dir = Path(scratch_dir)
    trials_dir = scratch_dir / "trials"
    records: list[tuple[Record, str]] = []
    for trial_id in _trial_ids(trials_dir):
        paths = TrialPaths(trials_dir / trial_id)
        with _held(scratch_dir, trial_id) as held:
            if not held:
                continue
            record = read_record(paths)
            if record is None:  # no one runs it and it never finished: its worker died
                record = Record(LOST, time.time())
                finish(paths, record.state, record.finished_at)
            elif any(os.path.lexists(part) for part in paths.scratch_parts()):
                strip(paths)  # recorded, and its worker died before it was tidied
        records.append((record, trial_id))
    newest_first = sorted(records, key=lambda r: r[0].finished_at, reverse=True)
    complete = [r for r in newest_first if r[0].state == TrialState.COMPLETE.value]
    others = [r for r in newest_first if r[0].state != TrialState.COMPLETE.value]
    removed = []
    for record, trial_id in complete[keep.keep_complete :] + others[keep.keep_failed :]:
        paths = TrialPaths(trials_dir / trial_id)
        with _held(scratch_dir, trial_id, remove=True) as held:
            # Skipped when the trial runs again meanwhile, or ran again and wrote a newer record.
            if held and read_record(paths) == record:
                rmtree_force(paths.root)
                removed.append(trial_id)
    _drop_orphan_locks(scratch_dir, trials_dir)
    return removed


def _trial_ids(trials_dir: Path) -> list[str]:
    try:
        entries = list(os.scandir(trials_dir))
    except OSError:
        return []
    ids = []
    for entry in entries:
        try:
            TrialPaths.for_trial(trials_dir.parent, entry.name)
        except ValueError:
            continue  # not a folder arborist made
        if entry.is_dir(follow_symlinks=False):
            ids.append(entry.name)
    return sorted(ids)


def _drop_orphan_locks(scratch_dir: Path, trials_dir: Path) -> None:
    """Lock files of trials that have no folder (one that failed before making it)."""
    try:
        names = [e.name for e in os.scandir(scratch_dir / "locks")]
    except OSError:
        return
    for name in names:
        if not (name.startswith(_LOCK_PREFIX) and name.endswith(".lock")):
            continue
        trial_id = name[len(_LOCK_PREFIX) : -len(".lock")]
        if os.path.lexists(trials_dir / trial_id):
            continue
        with _held(scratch_dir, trial_id, remove=True):
            pass


@contextlib.contextmanager
def _held(scratch_dir: Path, trial_id: str, *, remove: bool = False) -> Iterator[bool]:
    """Try the trial's lock without waiting; yield whether it is held. remove: delete the lock file too."""
    path = lock_path(scratch_dir, trial_id)
    fd = _acquire(path, blocking=False)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            if remove:
                # Unlinked while held: whoever waits on this file finds, once it gets the lock,
                # that the path names another file now, and starts over (`_acquire`).
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            os.close(fd)


def _acquire(path: Path, *, blocking: bool) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            held, current = os.fstat(fd), os.stat(path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the file was removed while we waited for it: a lock on it guards nothing
