"""The proposer types by name, and the configured proposers built in the config's order.

Each type registers a builder under the name a config's `type` uses; the config accepts exactly
the registered names, and the LLM types (drafted by the proposer actor) say so when they
register. A new type is one decorated builder:

    @register("mytype")
    def _mytype(parts: Parts) -> Proposer:
        return MyProposer(parts.name, ...)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import CampaignConfig, ProposerConfig
from orchestrator.proposers.base import Proposer
from orchestrator.proposers.hybrid import HybridProposer
from orchestrator.proposers.params import (
    GridSource,
    ParamsProposer,
    RandomSource,
    SearcherSource,
    Suggester,
    ValueSource,
)
from orchestrator.proposers.queue import QueueProposer, copy_path
from orchestrator.proposers.ready import DraftBackend, ReadyProposer

# (algorithm, param, param spec, seed) -> a search algorithm over that one parameter.
AlgorithmFactory = Callable[[str, str, dict[str, Any], int], Suggester]


@dataclass(frozen=True)
class Parts:
    """What a builder may build a proposer from."""

    name: str  # the proposer's name: its type, or type-<index> for a second of a type
    spec: ProposerConfig
    config: CampaignConfig
    suggester_factory: AlgorithmFactory | None = None  # Ray Tune search algorithms (the campaign's)
    drafts: DraftBackend | None = None  # the drafting service, for LLM types
    campaign_dir: Path | None = None  # where the campaign keeps copies of its inputs (None: no campaign)


Builder = Callable[[Parts], Proposer]


@dataclass(frozen=True)
class Registration:
    builder: Builder
    llm: bool  # drafted by an LLM: needs the config's `llm:` section and the drafting service


_REGISTRY: dict[str, Registration] = {}


def register(type_: str, *, llm: bool = False) -> Callable[[Builder], Builder]:
    """Register a builder under a config `type`."""

    def add(builder: Builder) -> Builder:
        if type_ in _REGISTRY:
            raise ValueError(f"proposer type {type_!r} is registered already")
        _REGISTRY[type_] = Registration(builder, llm)
        return builder

    return add


def known_types() -> tuple[str, ...]:
    """Every registered type, in the order of registration."""
    return tuple(_REGISTRY)


def llm_types() -> tuple[str, ...]:
    return tuple(name for name, entry in _REGISTRY.items() if entry.llm)


def type_problem(type_: str) -> str:
    """Why `type_` names no proposer ("" when it names one)."""
    if type_ in _REGISTRY:
        return ""
    return f"unknown proposer type {type_!r}; the known types are: {', '.join(known_types())}"


def proposer_names(config: CampaignConfig) -> list[tuple[str, ProposerConfig]]:
    """Each configured proposer with its name: its type, or type-<index> for a second of a type."""
    named: list[tuple[str, ProposerConfig]] = []
    for index, spec in enumerate(config.search.proposers):
        taken = any(name == spec.type for name, _ in named)
        named.append((f"{spec.type}-{index}" if taken else spec.type, spec))
    return named


def build_proposers(
    config: CampaignConfig,
    suggester_factory: AlgorithmFactory | None,
    drafts: DraftBackend | None = None,
    extra_queues: list[tuple[str, Any]] | None = None,
    campaign_dir: Path | None = None,
) -> list[Proposer]:
    """The proposers in priority order; `extra_queues` (name, path) come first (the inbox).
    With `campaign_dir`, queue proposers keep their copies there (orchestrator/proposers/queue.py)."""
    proposers: list[Proposer] = [QueueProposer([path], name=name) for name, path in extra_queues or []]
    for name, spec in proposer_names(config):
        proposers.append(build(Parts(name, spec, config, suggester_factory, drafts, campaign_dir)))
    return proposers


def build(parts: Parts) -> Proposer:
    """One proposer, by its type's builder."""
    entry = _REGISTRY.get(parts.spec.type)
    if entry is None:
        raise ValueError(type_problem(parts.spec.type))
    if entry.llm and parts.drafts is None:
        raise ValueError(f"proposer {parts.name} needs the drafting service (the proposer actor); "
                         "run it through a campaign")
    return entry.builder(parts)


# ----- the built-in types ------------------------------------------------------------------
@register("queue")
def _queue(parts: Parts) -> Proposer:
    assert parts.spec.path is not None  # the config insists on it
    copy = copy_path(parts.campaign_dir, parts.name) if parts.campaign_dir is not None else None
    return QueueProposer([parts.spec.path], name=parts.name, copies=[copy])


def _params(parts: Parts, source: ValueSource) -> ParamsProposer:
    config = parts.config
    return ParamsProposer(parts.name, config.params, source, seed=config.seed, max_proposals=parts.spec.max_proposals)


def _space(parts: Parts) -> None:
    if not parts.config.params:
        raise ValueError(f"proposer {parts.spec.type!r} needs a params space; add `params:` to the config")


def _searcher(parts: Parts) -> ValueSource:
    _space(parts)
    if parts.suggester_factory is None:
        raise ValueError(f"proposer {parts.name} needs a Ray Tune search algorithm; run it through the campaign")
    factory = functools.partial(parts.suggester_factory, parts.spec.algorithm)
    return SearcherSource(parts.config.params, parts.config.seed, factory)


@register("grid")
def _grid(parts: Parts) -> Proposer:
    _space(parts)
    return _params(parts, GridSource(parts.config.params))


@register("random")
def _random(parts: Parts) -> Proposer:
    _space(parts)
    return _params(parts, RandomSource(parts.config.params, parts.config.seed))


@register("bayes")
def _bayes(parts: Parts) -> Proposer:
    return _params(parts, _searcher(parts))


def _drafted(parts: Parts, max_proposals: int | None) -> ReadyProposer:
    assert parts.drafts is not None  # build() checked
    return ReadyProposer(parts.name, parts.drafts, ready=parts.spec.ready, max_proposals=max_proposals)


@register("llm_params", llm=True)
def _llm_params(parts: Parts) -> Proposer:
    return _drafted(parts, parts.spec.max_proposals)


@register("llm_code", llm=True)
def _llm_code(parts: Parts) -> Proposer:
    return _drafted(parts, parts.spec.max_proposals)


@register("hybrid", llm=True)
def _hybrid(parts: Parts) -> Proposer:
    # max_proposals bounds the params side only; the code side drafts until the LLM stops.
    params = _params(parts, _searcher(parts))
    spec = parts.spec
    return HybridProposer(parts.name, params, _drafted(parts, None), stall_after=spec.stall_after,
                          fallback_after=spec.fallback_after)
