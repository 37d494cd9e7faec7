"""Connect to Ray, or start a local one, quietly."""

from __future__ import annotations

import functools
import logging
import os

import ray
from ray.util import get_node_ip_address

from trials.spec import Placement

# Tune's own console table would bury arborist's progress display: the ledger is the record.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000",
    "RAY_TRAIN_V2_ENABLED": "0",
}


class RayStartError(RuntimeError):
    """Ray could not be started or joined; the message says which, why, and what to try."""


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start a local Ray (address None) or join the cluster at `address`.

    A Ray already initialized in this process (a test session, a Ray job's driver) is reused.
    Raises RayStartError when Ray cannot be started or reached.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Tune's advice on interruption ("Tuner.restore(...)") is not how a campaign resumes.
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    # A local Ray turns token authentication on by default and says so at every start; that is
    # the setting arborist wants (docs/cluster.md), so the notice is noise. Errors still show.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # set by `ray job submit` for the job's driver
    kwargs: dict[str, object] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            # "local" means a fresh Ray: a bare init() would join a leftover `ray start` cluster.
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **kwargs)  # type: ignore[arg-type]
        else:
            ray.init(address=address, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:
        raise RayStartError(_start_failure(address, exc)) from exc


def _start_failure(address: str | None, exc: Exception) -> str:
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if address is None:
        return (
            f"could not start a local Ray ({type(exc).__name__}: {cause}). Nothing was run. Check free space "
            "in /tmp (Ray's session folder), that no stale Ray holds its ports (`ray stop --force`), then run "
            "the same command again; set ray.address to use a running cluster instead."
        )
    return (
        f"could not join the Ray cluster at {address} ({type(exc).__name__}: {cause}). Nothing was run. Check "
        f"that the cluster is up (`ray status --address {address}`) and the address in ray.address or "
        "RAY_ADDRESS; a cluster with token authentication needs its token in RAY_AUTH_TOKEN or ~/.ray/auth_token."
    )


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


ACCELERATOR_LABEL = "ray.io/accelerator-type"  # set by Ray on nodes whose accelerators it detected
ACCELERATOR_RESOURCE = "accelerator_type:"  # the same type, as a resource of the node


def node_placement() -> Placement:
    """The Ray node this process runs on: its id, IP and accelerator type ("" when it declares none).

    The hostname and GPU ids are the trial runner's to add (trials.runner.local_placement).
    """
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    label = (context.get_node_labels() or {}).get(ACCELERATOR_LABEL)
    accelerator = ",".join(label) if isinstance(label, list) else str(label or "")
    return Placement(
        ray_node_id=node_id, node_ip=get_node_ip_address(), accelerator=accelerator or _accelerator_resource(node_id)
    )


@functools.cache
def _accelerator_resource(node_id: str) -> str:
    """The accelerator type among the node's resources: set by hand (`ray start --resources`) on
    nodes Ray cannot probe. One cluster-wide query per worker process and node."""
    try:
        nodes = ray.nodes()
    except Exception:  # placement is a record, never a reason to lose a trial
        return ""
    for node in nodes:
        if node.get("NodeID") == node_id:
            names = sorted(k for k in (node.get("Resources") or {}) if k.startswith(ACCELERATOR_RESOURCE))
            return ",".join(name.removeprefix(ACCELERATOR_RESOURCE) for name in names)
    return ""
