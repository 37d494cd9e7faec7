"""Connect to Ray, or start a local one, quietly."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

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
    # Ray may turn token authentication on by itself while joining (below); what was asked for is
    # read first, so that a mismatch can say which of the two it was.
    mode_asked = os.environ.get(AUTH_MODE_ENV)
    try:
        if address is None:
            # "local" means a fresh Ray: a bare init() would join a leftover `ray start` cluster.
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **kwargs)  # type: ignore[arg-type]
        else:
            ray.init(address=address, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:
        raise RayStartError(_start_failure(address, exc)) from exc
    if address is not None:
        _check_auth_agrees(address, mode_asked)


AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_PROBE_S = 60.0  # a cluster too busy to run a CPU-less task this soon is not held against it


def _token_sources() -> str:
    """Where this process's Ray looks for its token, first match wins, and what each holds."""
    path_env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    default = Path.home() / ".ray" / "auth_token"
    return (
        f"RAY_AUTH_TOKEN ({'set' if os.environ.get('RAY_AUTH_TOKEN') else 'unset'}), then the file "
        f"RAY_AUTH_TOKEN_PATH names ({path_env or 'unset'}), then {default} "
        f"({'present' if default.is_file() else 'absent'})"
    )


def _check_auth_agrees(address: str, mode_asked: str | None) -> None:
    """Refuse to go on when this driver uses token authentication and the cluster does not.

    Joining such a cluster succeeds (it checks no token), but the cluster's processes then call
    back into this driver without one and are refused: every actor dies before it starts
    ("ActorDiedError ... cancelled before it started running"), the tree actor first. Ray turns
    token authentication on by itself when the address is `auto` and it finds a token (a
    ~/.ray/auth_token left by an earlier local Ray is enough). Tasks do run, so one asks a node
    which mode the cluster has.
    """
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    if not is_token_auth_enabled():
        return  # a cluster that wants a token has refused us already, at ray.init
    try:
        cluster_uses_token = ray.get(_uses_token.remote(), timeout=AUTH_PROBE_S)
    except Exception:
        return  # no answer is no evidence: the campaign's own start will say what is wrong
    if cluster_uses_token:
        return
    ray.shutdown()
    why = ("RAY_AUTH_MODE=token is set" if mode_asked == "token" else
           f"Ray turned it on by itself: RAY_AUTH_MODE is unset, the address is {address} and it found a token")
    raise RayStartError(
        f"the Ray cluster at {address} runs without token authentication, but this process uses it ({why}; "
        f"it reads {_token_sources()}). The cluster's processes would call back into this driver without a "
        "token and be refused, so every actor would die before it started (ActorDiedError: cancelled before it "
        "started running). Nothing was run. Either run arborist with RAY_AUTH_MODE=disabled in its environment, "
        "or restart the cluster with token authentication (RAY_AUTH_MODE=token and the same token on every "
        "node; docs/cluster.md, \"Token authentication\")."
    )


@ray.remote(num_cpus=0)
def _uses_token() -> bool:
    """Whether the node this runs on uses token authentication (its processes share the raylet's mode)."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    return bool(is_token_auth_enabled())


def _refused_token(exc: BaseException) -> bool:
    """Whether a failed ray.init was the cluster refusing this process's token. Ray raises an
    AuthenticationError, or, after its retries, a RuntimeError whose text holds that error's."""
    from ray.exceptions import AuthenticationError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AuthenticationError) or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _start_failure(address: str | None, exc: Exception) -> str:
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if address is not None and _refused_token(exc):
        explicit = "" if address == "auto" or os.environ.get(AUTH_MODE_ENV) == "token" else (
            " With an explicit address, Ray sends a token only when RAY_AUTH_MODE=token is set: set it."
        )
        return (
            f"the Ray cluster at {address} uses token authentication and refused this process's token (missing, "
            f"or not the cluster's). Nothing was run. This process's Ray reads {_token_sources()}.{explicit} "
            "Give it the cluster's token (`ray get-auth-token` prints it on a node of the cluster), e.g. "
            "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token> arborist run ... (docs/cluster.md, \"Token authentication\")."
        )
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
