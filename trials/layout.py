"""Where one trial keeps its files on the worker: `<scratch>/trials/<trial_id>/`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from trials.fsutil import rmtree_force

# Trial ids become folder names; keep them to characters that cannot climb out of scratch.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

# Set in a node's environment when it is started (a pod's env), it gives that node a scratch
# folder of its own whatever the campaign's ray.scratch_dir says: nodes sharing a disk or a
# machine then keep their bundles and trials apart, as machines of their own would.
SCRATCH_ENV = "ARBORIST_SCRATCH_DIR"


def scratch_dir(configured: str | Path) -> Path:
    """The scratch folder this machine uses: SCRATCH_ENV when the node sets it, else `configured`
    (the campaign's ray.scratch_dir, as a TrialSpec carries it)."""
    return Path(os.environ.get(SCRATCH_ENV) or configured)


@dataclass(frozen=True)
class TrialPaths:
    root: Path

    @classmethod
    def for_trial(cls, scratch_dir: Path, trial_id: str) -> TrialPaths:
        if not _SAFE_ID.match(trial_id):
            raise ValueError(
                f"trial id {trial_id!r} cannot be used as a folder name; use letters, digits, '.', '_' and '-' only"
            )
        return cls(scratch_dir / "trials" / trial_id)

    @property
    def worktree(self) -> Path:
        return self.root / "worktree"

    @property
    def output(self) -> Path:
        return self.root / "output"  # ARBORIST_OUTPUT_DIR: the train step's artifacts

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def pycache(self) -> Path:
        return self.root / "pycache"

    @property
    def params_file(self) -> Path:
        return self.root / "params.json"

    @property
    def room(self) -> Path:
        return self.root / "room"  # the evaluate step's cwd: a clean checkout of the protected paths

    @property
    def evaluate_home(self) -> Path:
        return self.root / "evaluate-home"  # HOME and TMPDIR of the evaluate step

    @property
    def metrics_dir(self) -> Path:
        # Made after the train step ended (by then nothing of it runs any more); under the
        # sandbox, only the evaluate step can write here.
        return self.root / "metrics"

    @property
    def metrics_file(self) -> Path:
        return self.metrics_dir / "metrics.json"

    @property
    def finished_file(self) -> Path:
        return self.root / "finished.json"  # how the trial ended; written when it ends

    def log(self, step: str) -> Path:
        return self.root / f"{step}.log"

    def scratch_parts(self) -> list[Path]:
        """What goes when the trial ends: all but its logs, params, metrics and output."""
        return [self.worktree, self.pycache, self.home, self.tmp, self.evaluate_home, self.room]

    def prepare(self) -> None:
        """Start from an empty trial folder, also when an earlier attempt left one behind."""
        rmtree_force(self.root)
        for sub in (self.output, self.home, self.tmp, self.pycache):
            sub.mkdir(parents=True)
