"""Build the configured proposers, in the config's order of priority."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from orchestrator.config import CampaignConfig, ProposerConfig
from orchestrator.proposers.base import Proposer
from orchestrator.proposers.params import (
    GridSource,
    ParamsProposer,
    RandomSource,
    SearcherSource,
    Suggester,
    ValueSource,
)
from orchestrator.proposers.queue import QueueProposer

# (algorithm, param, param spec, seed) -> a search algorithm over that one parameter.
AlgorithmFactory = Callable[[str, str, dict[str, Any], int], Suggester]


def build_proposers(config: CampaignConfig, suggester_factory: AlgorithmFactory | None) -> list[Proposer]:
    proposers: list[Proposer] = []
    for index, spec in enumerate(config.search.proposers):
        name = spec.type if index == 0 else f"{spec.type}-{index}"
        if not any(p.name == spec.type for p in proposers):
            name = spec.type  # the first of each type keeps the plain name
        proposers.append(_build(spec, name, config, suggester_factory))
    return proposers


def _build(
    spec: ProposerConfig, name: str, config: CampaignConfig, factory: AlgorithmFactory | None
) -> Proposer:
    if spec.type == "queue":
        assert spec.path is not None
        return QueueProposer([spec.path], name=name)
    if not config.params:
        raise ValueError(f"proposer {spec.type!r} needs a params space; add `params:` to the config")
    source: ValueSource
    if spec.type == "random":
        source = RandomSource(config.params, config.seed)
    elif spec.type == "grid":
        source = GridSource(config.params)
    elif factory is None:
        raise ValueError("the bayes proposer needs a Ray Tune search algorithm; run it through the campaign")
    else:
        source = SearcherSource(config.params, config.seed, functools.partial(factory, spec.algorithm))
    return ParamsProposer(name, config.params, source, seed=config.seed, max_proposals=spec.max_proposals)
