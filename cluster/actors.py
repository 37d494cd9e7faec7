"""Named, restartable actors pinned to the driver's machine."""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.runtime import current_node_id

NAMESPACE = "arborist"
MAX_RESTARTS = 3  # a restarted actor rebuilds its state from the ledger's journal


def start_actor(cls: type, name: str, *args: Any, actor_env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """Start `cls` as the single named actor `name`, replacing a leftover one.

    It is pinned to this machine because it writes the campaign repository and journal on
    this machine's disk. `actor_env` gives this actor alone environment variables (an LLM
    key on a cluster whose workers do not have it); trials never see them.
    """
    stop_actor(name)
    options: dict[str, Any] = {"runtime_env": {"env_vars": dict(actor_env)}} if actor_env else {}
    remote_cls: Any = ray.remote(cls).options(
        **options,
        name=name,
        namespace=NAMESPACE,
        num_cpus=0,
        max_restarts=MAX_RESTARTS,
        max_task_retries=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=current_node_id(), soft=False),
    )
    handle = remote_cls.remote(*args, **kwargs)
    ray.get(handle.__ray_ready__.remote())
    return handle


def stop_actor(name: str) -> None:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return
    ray.kill(handle, no_restart=True)


def get_actor(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)
