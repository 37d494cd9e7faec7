"""The conditions a trial ran under: hardware, software, data and budget.

Probes that cannot change while a worker process lives (GPUs present, CPU model, package
versions) run once per process. Which GPUs a trial may use (CUDA_VISIBLE_DEVICES, set per
task by Ray) is read at every call.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from trials.hashing import combined_hash, hash_path
from trials.spec import Fingerprint, TrialSpec

LOCKFILES = ("uv.lock", "poetry.lock", "requirements.lock", "requirements.txt", "environment.yml", "Pipfile.lock")
_PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class _Gpu:
    index: str
    uuid: str
    name: str
    driver: str


def take_fingerprint(spec: TrialSpec, worktree: Path) -> Fingerprint:
    """The fingerprint of a trial of `spec` whose code is checked out at `worktree`.

    A worktree that does not exist (the chain did not apply) gives empty lock and data hashes
    for relative paths, so a failed trial still records where and on what it ran.
    """
    gpus = _visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return Fingerprint(
        gpu_model=", ".join(sorted({gpu.name for gpu in gpus if gpu.name})),
        gpu_count=len(gpus),
        gpu_driver=", ".join(sorted({gpu.driver for gpu in gpus if gpu.driver})),
        cuda_version=_cuda_version() if gpus else "",
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count() or 0,
        python=platform.python_version(),
        packages=_package_versions(tuple(sorted(set(spec.packages)))),
        lock_hash=lock_hash(worktree),
        data_hash=combined_hash(spec.data_files, worktree) if spec.data_files else "",
        budget_s=float(spec.entrypoint.budget_s),
    )


def lock_hash(worktree: Path) -> str:
    """sha256 of the first lockfile found in the project, "" when it has none."""
    for name in LOCKFILES:
        if (worktree / name).is_file():
            return hash_path(worktree / name) or ""
    return ""


def _visible_gpus(cuda_visible: str | None) -> list[_Gpu]:
    gpus = _all_gpus()
    if cuda_visible is None:
        return list(gpus)
    wanted = [item.strip() for item in cuda_visible.split(",") if item.strip()]
    visible = []
    for item in wanted:
        if item.startswith("-"):
            break  # CUDA stops at the first invalid (negative) index
        match = next((g for g in gpus if item in (g.index, g.uuid) or g.uuid.startswith(item)), None)
        # Without nvidia-smi (logical GPUs of a test cluster), the count is still honest.
        visible.append(match or _Gpu(index=item, uuid="", name="", driver=""))
    return visible


@functools.cache
def _all_gpus() -> tuple[_Gpu, ...]:
    out = _probe(["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"])
    gpus = []
    for line in out.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 4:
            gpus.append(_Gpu(*parts))
    return tuple(gpus)


@functools.cache
def _cuda_version() -> str:
    """The CUDA version the driver runs, as nvidia-smi reports it.

    Read only for a trial that sees a GPU: a CUDA toolkit (nvcc) on a machine without one, or
    beside a CPU build of the framework, is not what the trial ran under.
    """
    found = re.search(r"CUDA Version:\s*([\d.]+)", _probe(["nvidia-smi"]))
    return found.group(1) if found else ""


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _package_versions(names: tuple[str, ...]) -> str:
    versions = []
    for name in names:
        try:
            versions.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}=missing")
    return ",".join(versions)


def _probe(argv: list[str]) -> str:
    """stdout of a best-effort probe; "" when the tool is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return ""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""
