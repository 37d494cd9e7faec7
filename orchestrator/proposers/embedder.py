"""Hypothesis embeddings for the memory, through litellm, costed like any LLM call.

An embedding that fails (provider down, spend cap) is not fatal: the memory then judges by its
lexical similarity alone, and a note says so.
"""

from __future__ import annotations

from typing import Any

from orchestrator.proposers.base import ProposerEvent
from orchestrator.proposers.llm import LLMClient, LLMError


class MemoryEmbedder:
    def __init__(self, client: LLMClient, model: str) -> None:
        self._client = client
        self._model = model
        self._events: list[ProposerEvent] = []
        self._last_error = ""

    def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            return self._client.embed(texts, model=self._model)
        except LLMError as exc:
            message = f"memory embeddings unavailable, lexical similarity only: {exc}"
            if message != self._last_error:
                self._last_error = message
                self._events.append(("note", {"message": message}))
            return []
        finally:
            for call in self._client.drain_calls():
                data: dict[str, Any] = call.to_dict()
                self._events.append(("llm_call", {"proposer": "memory", **data}))

    def sync_spent(self, usd: float) -> None:
        """The campaign's spend so far (the proposer actor spends from the same cap)."""
        self._client.sync_spent(usd)

    def drain_events(self) -> list[ProposerEvent]:
        events, self._events = self._events, []
        return events
