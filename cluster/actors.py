"""Named, restartable actors pinned to the driver's machine."""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.runtime import current_node_id

NAMESPACE = "arborist"
MAX_RESTARTS = 3  # a restarted actor rebuilds its state from the ledger's journal


def start_actor(cls: type, name: str, *args: Any, **kwargs: Any) -> Any:
    """Start `cls` as the single named actor `name`, replacing a leftover one.

    It is pinned to this machine because it writes the campaign repository and journal on
    this machine's disk.
    """
    stop_actor(name)
    remote_cls: Any = ray.remote(cls).options(
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
