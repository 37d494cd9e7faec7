"""LLM over params (OPRO-style): the history of configurations and their scores in the prompt,
K proposals back, each changing one hyperparameter within the declared space."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.admission import compact, declared_value, param_problem
from orchestrator.change import Change, read_claim
from orchestrator.config import CampaignConfig, ParamConfig, ProposerConfig
from orchestrator.proposers.drafting import BatchResult, draft_batch
from orchestrator.proposers.llm import LLMClient

SYSTEM = """You tune the hyperparameters of a machine-learning training run.
Below are the hyperparameter space and the configurations tried so far with their scores,
sorted from worst to best. Propose new configurations likely to score better than the best.
Each proposal changes exactly ONE hyperparameter of the parent configuration, to a value inside
its declared range, and is not one already tried.

Reply with only a JSON object:
{"proposals": [{"param": "name", "value": 0.01, "hypothesis": "one sentence: why this value",
"claim": {"knob": "name", "from": 0.001, "to": 0.01, "direction": "up", "scope": ""}}]}
Each proposal's claim states its change as data:
- knob: the hyperparameter it changes (the same as "param");
- from: its value in the parent configuration;
- to: its new value (the same as "value");
- direction: "up" or "down" for a number, "set" for a choice;
- scope: "" (a hyperparameter applies to the whole run)."""


class ParamsDrafter:
    kind = "params"

    def __init__(self, name: str, config: CampaignConfig, spec: ProposerConfig) -> None:
        self.name = name
        self._config = config
        self._spec = spec

    def draft(self, client: LLMClient, request: dict[str, Any]) -> BatchResult:
        parent = dict(request["parent_params"])

        def check(item: dict[str, Any]) -> tuple[Change | None, str]:
            return self.check(item, parent, request)

        return draft_batch(
            client, self.messages(request), check, k=self._spec.k, max_repairs=self._spec.max_repairs,
            purpose=f"{self.name} params proposals for {request['parent_id']}",
            item_label=lambda item: f"{item.get('param')}={item.get('value')!r}",
        )

    def messages(self, request: dict[str, Any]) -> list[dict[str, str]]:
        config = self._config
        objective = config.objective
        space = "\n".join(f"- {name}: {_describe(spec)}" for name, spec in sorted(config.params.items()))
        scored = [r for r in request.get("records", []) if r.get("objective_mean") is not None]
        sign = 1.0 if config.metrics[objective].direction == "max" else -1.0
        scored.sort(key=lambda r: sign * float(r["objective_mean"]))
        limit = self._spec.history
        history = "\n".join(
            f"- {json.dumps(r['params'], sort_keys=True)}: {objective} {float(r['objective_mean']):.5g} "
            f"({r['seeds']} seeds, {r['status']})"
            for r in (scored[-limit:] if limit else [])
        ) or "(none yet)"
        rejected = "\n".join(
            f"- {r['change']}: {r['reason'][:200]}" for r in request.get("rejected", []) if r.get("change")
        ) or "(none)"
        user = "\n\n".join([
            f"Task: {config.task or '(no description given)'}",
            f"Objective: {objective} ({config.metrics[objective].direction}imize it).",
            f"Hyperparameter space:\n{space}",
            f"Configurations tried (worst to best):\n{history}",
            f"Rejected proposals (do not send again):\n{rejected}",
            f"Parent configuration ({request['parent_id']}): {json.dumps(request['parent_params'], sort_keys=True)}",
            f"Propose {self._spec.k} diverse changes, each of one hyperparameter.",
        ])
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def check(self, item: dict[str, Any], parent: dict[str, Any], request: dict[str, Any]) -> tuple[Change | None, str]:
        name, value = item.get("param"), item.get("value")
        name = name if isinstance(name, str) else repr(name)  # a JSON list is no key, as text it is undeclared
        problem = param_problem(self._config.params, name, value, number=compact)
        if problem:
            return None, problem
        value = declared_value(self._config.params[name], value)
        if value == parent.get(name):
            return None, f"{name} is already {value!r} in the parent; propose a different value"
        # A missing claim is derived from the delta; a stated one must name this change.
        claim, problem = read_claim(item.get("claim"), delta={name: value}, parent_params=parent)
        if problem:
            return None, problem
        hypothesis = str(item.get("hypothesis") or f"set {name} to {value}").strip()
        return Change(
            kind="params", aspect=name, hypothesis=hypothesis, proposer=self.name, params={name: value},
            source_id=f"{self.name}-{request.get('request_id', 0)}-{name}={value}", claim=claim,
        ), ""


def _describe(spec: ParamConfig) -> str:
    if spec.type == "choice":
        return f"one of {spec.values} (default {spec.default!r})"
    scale = ", log scale" if spec.log else ""
    return f"{spec.type} in [{spec.low:g}, {spec.high:g}]{scale} (default {spec.default})"
