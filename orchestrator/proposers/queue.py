"""The human queue: hypotheses and diffs a person writes into a YAML file.

The file is re-read on every request, so items appended while a campaign runs are picked up.
Each item: id, aspect, hypothesis, and either diff (inline), diff_file, or params (a delta);
optionally a claim (knob, from, to, direction, scope) saying what it changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.admission import delta_problem
from orchestrator.change import Change, read_claim
from orchestrator.proposers.base import NOTHING, Answer, Outcome, ProposalContext, Proposer
from orchestrator.yamlfile import YamlFileError, load_yaml

REQUIRED = ("id", "hypothesis")


class QueueFileError(ValueError):
    pass


def load_queue(path: Path) -> list[dict[str, Any]]:
    """Read and check a hypotheses file; errors name the file, the item and the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise QueueFileError(f"{path}: cannot read the hypotheses file ({exc.strerror})") from exc
    try:
        raw, nodes = load_yaml(text, path)
    except YamlFileError as exc:
        raise QueueFileError(str(exc)) from exc
    raw = raw or []
    if not isinstance(raw, list):
        raise QueueFileError(f"{path}: a hypotheses file is a YAML list of items (- id: ..., hypothesis: ...)")
    items, seen = [], set()
    for i, item in enumerate(raw):
        line = nodes.value[i].start_mark.line + 1 if isinstance(nodes, yaml.SequenceNode) else 0
        where = f"{path}:{line}: item {i}"
        if not isinstance(item, dict):
            raise QueueFileError(f"{where}: each item is a mapping with id, aspect, hypothesis, diff")
        missing = [k for k in REQUIRED if not item.get(k)]
        if missing:
            raise QueueFileError(f"{where}: missing {', '.join(missing)}")
        sources = [k for k in ("diff", "diff_file", "params") if item.get(k)]
        if len(sources) != 1:
            raise QueueFileError(f"{where} ({item['id']}): give exactly one of diff, diff_file or params")
        if item.get("params") is not None:
            params = item["params"]
            problem = delta_problem(params) if isinstance(params, dict) else "is not a mapping of name to value"
            if problem:
                raise QueueFileError(f"{where} ({item['id']}): params {problem}")
        if not item.get("params") and not item.get("aspect"):
            raise QueueFileError(f"{where} ({item['id']}): a code change needs an aspect")
        if "claim" in item:
            delta = item["params"] if item.get("params") else None
            _, problem = read_claim(item["claim"], delta=delta)
            if problem:
                raise QueueFileError(f"{where} ({item['id']}): {problem}")
        if item["id"] in seen:
            raise QueueFileError(f"{where}: duplicate id {item['id']!r}; ids must be unique")
        seen.add(item["id"])
        if item.get("diff_file"):
            diff_path = (path.parent / item["diff_file"]).resolve()
            if not diff_path.is_file():
                raise QueueFileError(f"{where} ({item['id']}): diff_file {diff_path} does not exist")
            item = {**item, "diff": diff_path.read_text()}
        items.append(item)
    return items


def item_to_change(item: dict[str, Any], proposer: str, parent_params: dict[str, Any] | None = None) -> Change:
    """The change an item (checked by load_queue) makes on a parent with `parent_params`."""
    if item.get("params"):
        (name,) = item["params"]
        claim, _ = read_claim(item.get("claim"), delta=item["params"], parent_params=parent_params or {})
        return Change(
            kind="params", aspect=str(name), hypothesis=str(item["hypothesis"]), proposer=proposer,
            params=dict(item["params"]), source_id=str(item["id"]), claim=claim,
        )
    diff = str(item["diff"])
    # A code item without a claim has none: what it changes is then read from its hypothesis.
    claim = read_claim(item["claim"])[0] if "claim" in item else None
    return Change(
        kind="code", aspect=str(item["aspect"]), hypothesis=str(item["hypothesis"]), proposer=proposer,
        diff=diff if diff.endswith("\n") else diff + "\n", source_id=str(item["id"]), claim=claim,
    )


class QueueProposer(Proposer):
    """Never FINISHED: a person may append items while the campaign runs. With nothing left now
    it answers NOTHING, so the search does not wait for a person: the other proposers carry on."""

    def __init__(self, paths: list[Path], name: str = "queue") -> None:
        self.name = name
        self._paths = paths
        self._consumed: set[str] = set()

    def propose(self, context: ProposalContext) -> Answer:
        for path in self._paths:
            if not path.exists():
                continue
            for item in load_queue(path):
                if str(item["id"]) not in self._consumed:
                    self._consumed.add(str(item["id"]))
                    return item_to_change(item, self.name, context.parent_params)
        return NOTHING

    def observe(self, change: Change, outcome: Outcome) -> None:
        """A person reads the results in the report; the queue itself does not adapt."""

    def restore(self, change: Change) -> None:
        self._consumed.add(change.source_id)
