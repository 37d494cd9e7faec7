"""Build the configured proposers, in the config's order of priority."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
from orchestrator.proposers.queue import QueueProposer
from orchestrator.proposers.ready import DraftBackend, ReadyProposer

# (algorithm, param, param spec, seed) -> a search algorithm over that one parameter.
AlgorithmFactory = Callable[[str, str, dict[str, Any], int], Suggester]


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
) -> list[Proposer]:
    """The proposers in priority order; `extra_queues` (name, path) come first (the inbox)."""
    proposers: list[Proposer] = [QueueProposer([path], name=name) for name, path in extra_queues or []]
    for name, spec in proposer_names(config):
        proposers.append(_build(spec, name, config, suggester_factory, drafts))
    return proposers


def _build(
    spec: ProposerConfig, name: str, config: CampaignConfig, factory: AlgorithmFactory | None,
    drafts: DraftBackend | None,
) -> Proposer:
    if spec.type == "queue":
        assert spec.path is not None
        return QueueProposer([spec.path], name=name)
    if spec.type in ("llm_code", "llm_params", "hybrid") and drafts is None:
        raise ValueError(f"proposer {name} needs the drafting service (the proposer actor); run it through a campaign")
    if spec.type in ("llm_code", "llm_params"):
        assert drafts is not None
        return ReadyProposer(name, drafts, ready=spec.ready, max_proposals=spec.max_proposals)
    if not config.params:
        raise ValueError(f"proposer {spec.type!r} needs a params space; add `params:` to the config")
    source: ValueSource
    if spec.type == "random":
        source = RandomSource(config.params, config.seed)
    elif spec.type == "grid":
        source = GridSource(config.params)
    elif factory is None:
        raise ValueError(f"proposer {name} needs a Ray Tune search algorithm; run it through the campaign")
    else:
        source = SearcherSource(config.params, config.seed, functools.partial(factory, spec.algorithm))
    params = ParamsProposer(name, config.params, source, seed=config.seed, max_proposals=spec.max_proposals)
    if spec.type != "hybrid":
        return params
    assert drafts is not None
    code = ReadyProposer(name, drafts, ready=spec.ready)
    return HybridProposer(name, params, code, stall_after=spec.stall_after, fallback_after=spec.fallback_after)
