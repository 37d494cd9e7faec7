"""The proposer actor: one per campaign, it drafts every LLM proposal (so code proposals never
race) and keeps them until the tree actor collects them."""

from __future__ import annotations

from typing import Any

import ray

from cluster.actors import NAMESPACE

COLLECT_TIMEOUT_S = 30.0  # collect only reads a list; longer means the actor is gone


class RemoteDrafts:
    """The drafting service behind the proposer actor, as the tree actor's proposers use it.

    It holds the actor's name, not its handle, so it can be sent to the tree actor; a
    restarted proposer actor is found again by name.
    """

    def __init__(self, actor_name: str) -> None:
        self._actor_name = actor_name
        self._actor: Any = None
        self._last_error = ""

    def _handle(self) -> Any:
        if self._actor is None:
            self._actor = ray.get_actor(self._actor_name, namespace=NAMESPACE)
        return self._actor

    def submit(self, request: dict[str, Any]) -> None:
        self._handle().submit.remote(request)  # fire and forget: drafting takes as long as the LLM

    def collect(self, proposer: str) -> dict[str, Any]:
        try:
            out: dict[str, Any] = ray.get(self._handle().collect.remote(proposer), timeout=COLLECT_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ValueError) as exc:
            self._actor = None
            # Nothing pending: the search goes on with other proposers and asks again later.
            message = f"proposer actor unreachable: {str(exc).splitlines()[0][:300]}"
            events = [] if message == self._last_error else [("note", {"message": message})]
            self._last_error = message
            return {"proposals": [], "events": events, "pending": [], "stopped": ""}
        self._last_error = ""
        return out
