"""The drafting service: every LLM proposal of a campaign is drafted here, one call at a time.

It runs in the proposer actor (one per campaign, so code proposals never race), or in-process
where there is no Ray. Requests are queued and served by a worker thread; the search collects
finished drafts without ever waiting for the LLM.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from orchestrator.change import Change, read_claim
from orchestrator.config import CampaignConfig, ProposerConfig
from orchestrator.proposers.diff import CodeDrafter
from orchestrator.proposers.drafting import BatchResult
from orchestrator.proposers.llm import LLMClient, LLMRejected, LLMUnavailable, SpendCapReached
from orchestrator.proposers.opro import ParamsDrafter
from trials.worktree import CampaignRepo

MAX_UNAVAILABLE = 5  # failed requests in a row (each after its retries) before a drafter stops
MAX_COOLDOWN_S = 300.0


class Drafter(Protocol):
    name: str
    kind: str

    def draft(self, client: LLMClient, request: dict[str, Any]) -> BatchResult: ...


def drafter_for(name: str, spec: ProposerConfig, config: CampaignConfig, repo: CampaignRepo | None) -> Drafter:
    if spec.type == "llm_params":
        return ParamsDrafter(name, config, spec)
    if repo is None:
        raise ValueError(f"proposer {name} drafts code and needs the campaign repository")
    return CodeDrafter(name, config, spec, repo)


class DraftService:
    """Drafts proposals for the campaign's LLM proposers (llm_code, llm_params, hybrid)."""

    def __init__(self, config: dict[str, Any], client: LLMClient | None = None) -> None:
        from orchestrator.proposers.registry import proposer_names  # the same names the engine uses

        self.config = CampaignConfig.model_validate(config)
        if self.config.llm is None:
            raise ValueError("LLM proposers need an `llm:` section in the config")
        assert self.config.campaign_dir is not None
        self._repo_dir = Path(self.config.campaign_dir) / "repo"
        self._client = client or LLMClient(self.config.llm, max_usd=self.config.budget.max_llm_usd)
        self._specs = {n: s for n, s in proposer_names(self.config) if s.uses_llm}
        self._drafters: dict[str, Drafter] = {}  # built on first use: the repository may not exist yet
        self._lock = threading.RLock()  # _take stops drafters while holding it
        self._requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: set[tuple[str, str]] = set()  # (proposer, parent) requested, not yet drafted
        self._ready: dict[str, list[dict[str, Any]]] = {name: [] for name in self._specs}
        self._events: dict[str, list[tuple[str, dict[str, Any]]]] = {name: [] for name in self._specs}
        self._drafted: dict[str, list[tuple[str, int]]] = {name: [] for name in self._specs}  # (parent, valid)
        self._stopped: dict[str, str] = {}  # proposer -> why it will not draft again
        self._unavailable = 0
        self._thread: threading.Thread | None = None

    # ----- what the search calls -----------------------------------------------------------
    def submit(self, request: dict[str, Any]) -> None:
        """Queue a request to draft proposals for one parent; a repeat while pending is ignored."""
        name = request["proposer"]
        key = (name, request["parent_id"])
        with self._lock:
            if name not in self._specs or key in self._pending or name in self._stopped:
                return
            self._pending.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="arborist-drafts", daemon=True)
                self._thread.start()
        self._requests.put(request)

    def collect(self, proposer: str) -> dict[str, Any]:
        """Drafts and events for one proposer since its last collect, and what is still pending."""
        with self._lock:
            out = {
                "proposals": self._ready.get(proposer, []),
                "events": self._events.get(proposer, []),
                "pending": sorted(parent for name, parent in self._pending if name == proposer),
                "stopped": self._stopped.get(proposer, ""),
                "drafted": self._drafted.get(proposer, []),
            }
            self._ready[proposer] = []
            self._events[proposer] = []
            self._drafted[proposer] = []
        return out

    def spent_usd(self) -> float:
        return self._client.spent_usd

    def close(self) -> None:
        self._requests.put(None)

    # ----- the worker --------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                self._serve(request)
            finally:
                with self._lock:
                    self._pending.discard((request["proposer"], request["parent_id"]))

    def _serve(self, request: dict[str, Any]) -> None:
        name = request["proposer"]
        drafter = self._drafter(name)
        self._client.sync_spent(float(request.get("llm_usd") or 0.0))
        result: BatchResult | None = None
        cooldown = 0.0
        try:
            result = drafter.draft(self._client, request)
            self._unavailable = 0
        except SpendCapReached as exc:
            self._stop_all(f"LLM spend cap reached: {exc}")
        except LLMRejected as exc:
            self._stop(name, f"the LLM provider refused the request, so {name} stops proposing: {exc}")
        except LLMUnavailable as exc:
            self._unavailable += 1
            if self._unavailable >= MAX_UNAVAILABLE:
                self._stop(name, f"the LLM provider failed {self._unavailable} requests in a row: {exc}")
            else:
                cooldown = min(MAX_COOLDOWN_S, self.config.llm.backoff_s * 4 * 2 ** (self._unavailable - 1)
                               if self.config.llm else 0.0)
                self._note(name, f"LLM unavailable ({exc}); {name} tries again in {cooldown:.0f} s")
        calls = self._client.drain_calls()
        with self._lock:
            self._events[name].extend(("llm_call", call.to_dict()) for call in calls)
            if result is not None:
                self._take(name, drafter, request, result)
            if not cooldown:
                # Published with the drafts, so a collect never sees the drafts while the request
                # still looks pending (and then nothing pending and no request made).
                self._pending.discard((name, request["parent_id"]))
        if cooldown:
            time.sleep(cooldown)  # the request stays pending meanwhile, so the search waits for it

    def _drafter(self, name: str) -> Drafter:
        if name not in self._drafters:
            repo = CampaignRepo(self._repo_dir) if self._repo_dir.exists() else None
            self._drafters[name] = drafter_for(name, self._specs[name], self.config, repo)
        return self._drafters[name]

    def _take(self, name: str, drafter: Drafter, request: dict[str, Any], result: BatchResult) -> None:
        parent = request["parent_id"]
        self._drafted[name].append((parent, len(result.changes)))
        for note in result.notes:
            self._events[name].append(("note", {"message": f"{name} on {parent}: {note}"}))
        for change in result.changes:
            self._ready[name].append({"parent_id": parent, "change": change.to_dict()})
        for item, reason in result.invalid:
            change = _raw_change(drafter, item, request.get("parent_params") or {})
            self._events[name].append(("invalid_proposal", {
                "parent_id": parent, "change": change.to_dict(),
                "reason": reason,
            }))
        if result.capped:
            self._stop_all("LLM spend cap reached; LLM proposers stop proposing")

    def _note(self, name: str, message: str) -> None:
        with self._lock:
            self._events[name].append(("note", {"message": message}))

    def _stop(self, name: str, reason: str) -> None:
        with self._lock:
            if name not in self._stopped:
                self._stopped[name] = reason
                self._events[name].append(("note", {"message": reason}))

    def _stop_all(self, reason: str) -> None:
        for name in self._specs:
            self._stop(name, reason)


def _raw_change(drafter: Drafter, item: dict[str, Any], parent_params: dict[str, Any]) -> Change:
    """A rejected item as a change, so the ledger keeps what was proposed (its claim too, when valid)."""
    hypothesis = str(item.get("hypothesis") or "")[:2000]
    if drafter.kind == "params":
        param = str(item.get("param") or "?")
        delta = {param: item.get("value")}
        claim, _ = read_claim(item.get("claim"), delta=delta, parent_params=parent_params)
        return Change(kind="params", aspect=param, hypothesis=hypothesis or f"set {param}", proposer=drafter.name,
                      params=delta, claim=claim)
    aspect = item.get("aspect")
    claim = read_claim(item["claim"])[0] if item.get("claim") is not None else None
    return Change(kind="code", aspect=aspect if isinstance(aspect, str) else str(aspect), hypothesis=hypothesis,
                  proposer=drafter.name, diff=str(item.get("diff") or "")[:200_000], claim=claim)
