"""The shared vocabulary of one trial: what to run (TrialSpec) and what came of it (TrialResult).

Both are plain, JSON-serializable dataclasses: they travel through Ray Tune configs and results,
and into the ledger, so every field is a str, int, float, bool, list or dict of those.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Any


class TrialState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"  # stopped early by a scheduler
    FAIL = "FAIL"  # see FailureStage
    TIMEOUT = "TIMEOUT"  # ran past its wall-clock budget
    INVALID = "INVALID"  # protected (evaluation) files changed around the trial
    # Stopped by the campaign, not by anything the trial did: still running `budget.grace_s` after
    # the campaign's wall-clock budget was spent. Not a failure of its change.
    STOPPED = "STOPPED"

    def is_finished(self) -> bool:
        return self not in (TrialState.PENDING, TrialState.RUNNING)


class FailureStage(StrEnum):
    APPLY = "apply"  # the node's chain of changes did not apply on the snapshot
    SETUP = "setup"  # worktree, params file, environment or command could not be prepared
    RUN = "run"  # the train command exited non-zero
    METRICS = "metrics"  # the evaluate step failed, or metrics were missing, NaN or inf
    LIMITS = "limits"  # a step went past a resource limit (memory, CPU time, log or output size)


@dataclass(frozen=True)
class CodeChange:
    """One link of a node's chain: a unified diff applied with `git apply`."""

    change_id: str
    aspect: str
    diff: str


@dataclass(frozen=True)
class MetricSpec:
    """How the trials layer reads one metric. Direction and role matter only to the search."""

    name: str
    regex: str | None = None  # None: read from the JSON metrics file


@dataclass(frozen=True)
class EntrypointSpec:
    train: str  # may hold {param} and {seed} placeholders
    evaluate: str | None = None  # None: single-command mode, metrics are self-reported
    budget_s: float = 600.0  # wall-clock limit of the train step
    evaluate_budget_s: float = 300.0
    setup: str | None = None  # optional command run once in the worktree before train
    env: dict[str, str] = field(default_factory=dict)  # given to both steps
    evaluate_env: dict[str, str] = field(default_factory=dict)  # given to evaluate alone
    inherit_env: list[str] = field(default_factory=list)  # names passed through on purpose


@dataclass(frozen=True)
class SandboxSpec:
    """How each step of a trial is contained (see trials.sandbox)."""

    mode: str = "auto"  # "auto": bwrap when it works here, else none; "bwrap": required; "none"
    network: bool = True  # False: the steps get a network namespace of their own, with no interfaces
    read_only: list[str] = field(default_factory=list)  # absolute paths every step may read


@dataclass(frozen=True)
class LimitsSpec:
    """Resources one step may use; None: unlimited."""

    memory_mb: int | None = None  # address space of each process (RLIMIT_AS)
    max_cpu_s: float | None = None  # CPU seconds of each process (RLIMIT_CPU)
    max_log_mb: float = 64.0  # output of one step kept in its log (head and tail)
    max_output_mb: float = 10240.0  # size of the trial's output dir


KEEP_COMPLETE_TRIALS = 2
KEEP_FAILED_TRIALS = 8


@dataclass(frozen=True)
class RetentionSpec:
    """Trial folders each worker keeps once their trials ended (see trials.retention)."""

    keep_complete: int = KEEP_COMPLETE_TRIALS  # the newest complete ones
    keep_failed: int = KEEP_FAILED_TRIALS  # the newest others: failed, timed out, invalid, pruned, lost


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    node_id: str
    seed: int
    params: dict[str, Any]
    base_commit: str  # the snapshot commit in the campaign repository
    bundle_id: str  # content hash of the campaign repository bundle holding base_commit
    chain: list[CodeChange]  # code changes from the root to this node, in order
    entrypoint: EntrypointSpec
    metrics: list[MetricSpec]
    # path -> sha256 of its content in the snapshot. Relative paths live in the worktree;
    # absolute ones (held-out data) live outside it.
    protected: dict[str, str]
    scratch_dir: str  # where this machine keeps bundles, worktrees and trial outputs
    data_files: list[str] = field(default_factory=list)  # hashed into the data fingerprint
    packages: list[str] = field(default_factory=list)  # versions go into the fingerprint
    log_tail_lines: int = 40
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    retention: RetentionSpec = field(default_factory=RetentionSpec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        data = dict(data)
        data["chain"] = [CodeChange(**c) for c in data["chain"]]
        data["entrypoint"] = EntrypointSpec(**data["entrypoint"])
        data["metrics"] = [MetricSpec(**m) for m in data["metrics"]]
        data["sandbox"] = SandboxSpec(**data.get("sandbox", {}))
        data["limits"] = LimitsSpec(**data.get("limits", {}))
        data["retention"] = RetentionSpec(**data.get("retention", {}))
        return cls(**data)


@dataclass(frozen=True)
class Fingerprint:
    """Conditions of a trial. Trials are compared only when comparability_key() is equal."""

    gpu_model: str = ""
    gpu_count: int = 0
    gpu_driver: str = ""
    cuda_version: str = ""
    cpu_model: str = ""
    cpu_count: int = 0
    python: str = ""
    packages: str = ""  # "name=version,..." sorted by name
    lock_hash: str = ""
    data_hash: str = ""
    budget_s: float = 0.0

    # Timing-only facts (CPU model, driver) are recorded but do not split cohorts: they change
    # how long a trial takes, not what it measures.
    COMPARED = (
        "gpu_model",
        "gpu_count",
        "python",
        "packages",
        "lock_hash",
        "data_hash",
        "budget_s",
    )

    def __post_init__(self) -> None:
        # 60 and 60.0 are one budget: equal fingerprints must give equal keys, also when from_dict
        # hands out a shared one that was first built from the other spelling.
        for name, kind in (("gpu_count", int), ("cpu_count", int), ("budget_s", float)):
            value = getattr(self, name)
            if type(value) not in (int, float) or type(value) is kind:
                continue
            if kind is int and not value.is_integer():
                continue  # a fractional count is not ours to round
            object.__setattr__(self, name, kind(value))

    @cached_property
    def _key(self) -> str:
        payload = json.dumps({k: getattr(self, k) for k in self.COMPARED}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def comparability_key(self) -> str:
        return self._key

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        # A campaign has a handful of fingerprints and a million trial events to replay: share them.
        items = tuple(sorted((k, v) for k, v in data.items() if k in _FINGERPRINT_FIELDS))
        try:
            return _fingerprint(items)
        except TypeError:  # an unhashable value: a hand-written fingerprint, let the dataclass judge it
            return cls(**dict(items))


_FINGERPRINT_FIELDS = frozenset(f.name for f in fields(Fingerprint))


@functools.lru_cache(maxsize=1024)
def _fingerprint(items: tuple[tuple[str, Any], ...]) -> Fingerprint:
    return Fingerprint(**dict(items))


@dataclass(frozen=True)
class Placement:
    """Where a trial ran. A trial run on Ray has every field the cluster knows; one run without
    Ray (tests, a single machine) has the hostname and GPU ids alone."""

    ray_node_id: str = ""  # the Ray node's id (hex)
    node_ip: str = ""  # the Ray node's IP address
    hostname: str = ""
    gpu_ids: str = ""  # CUDA_VISIBLE_DEVICES as the trial's steps got it, "" when not set
    accelerator: str = ""  # the node's accelerator type (Ray's label or resource, else the GPU model)

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Placement:
        # A cluster has a few nodes and a million trials to replay: share their placements.
        items = tuple(sorted((k, v) for k, v in (data or {}).items() if k in _PLACEMENT_FIELDS))
        try:
            return _placement(items)
        except TypeError:  # an unhashable value: let the dataclass take it as it is
            return cls(**dict(items))


_PLACEMENT_FIELDS = frozenset(f.name for f in fields(Placement))


@functools.lru_cache(maxsize=1024)
def _placement(items: tuple[tuple[str, Any], ...]) -> Placement:
    return Placement(**dict(items))


@dataclass(frozen=True)
class TrialResult:
    trial_id: str
    node_id: str
    seed: int
    state: TrialState
    metrics: dict[str, float] = field(default_factory=dict)
    failure_stage: FailureStage | None = None
    message: str = ""  # why it failed, in words a user can act on
    self_reported: bool = False  # metrics came from the mutable train step itself
    reports: list[dict[str, Any]] = field(default_factory=list)  # ARBORIST_REPORT lines
    fingerprint: Fingerprint = field(default_factory=Fingerprint)
    started_at: float = 0.0  # when the trial took its slot (the Tune trial's start, on Ray)
    finished_at: float = 0.0
    # Each step that ran: its command's [start, end] in unix time. The slot's time outside the
    # train step is the evaluator's and arborist's own (scripts/bench_overhead.py reports it).
    step_times: dict[str, list[float]] = field(default_factory=dict)
    log_tail: str = ""
    worker: str = ""  # hostname that ran it
    sandbox: str = ""  # containment the steps ran under: "bwrap" or "none" ("": not recorded)
    placement: Placement = field(default_factory=Placement)  # where it ran (empty: not recorded)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["failure_stage"] = self.failure_stage.value if self.failure_stage else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        data = dict(data)
        data["state"] = TrialState(data["state"])
        stage = data.get("failure_stage")
        data["failure_stage"] = FailureStage(stage) if stage else None
        data["fingerprint"] = Fingerprint.from_dict(data.get("fingerprint") or {})
        data["placement"] = Placement.from_dict(data.get("placement"))
        return cls(**data)
