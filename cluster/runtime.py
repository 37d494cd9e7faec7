"""Connect to Ray, or start a local one, quietly."""

from __future__ import annotations

import logging
import os

import ray

# Tune's own console table would bury arborist's progress display: the ledger is the record.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000",
    "RAY_TRAIN_V2_ENABLED": "0",
}


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start a local Ray (address None) or join the cluster at `address`.

    A Ray already initialized in this process (a test session, a Ray job's driver) is reused.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Tune's advice on interruption ("Tuner.restore(...)") is not how a campaign resumes.
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # set by `ray job submit` for the job's driver
    kwargs: dict[str, object] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        # "local" means a fresh Ray: a bare init() would join a leftover `ray start` cluster.
        ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **kwargs)  # type: ignore[arg-type]
    else:
        ray.init(address=address, **kwargs)  # type: ignore[arg-type]


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()
