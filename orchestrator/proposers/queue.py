"""The human queue: hypotheses and diffs a person writes into a YAML file.

The file is re-read on every request, so items appended while a campaign runs are picked up.
Each item: id, aspect, hypothesis, and either diff (inline), diff_file, or params (a delta);
optionally a claim (knob, from, to, direction, scope) saying what it changes.

A campaign keeps a copy of each hypotheses file in its folder (`inputs/<proposer>.yaml`), with
the diff files its items name written in, so that a resume does not depend on files that may be
gone by then (a cluster job's working directory is made anew for every submission). The file
at its own path is read whenever it exists, since a person may keep editing it, and the copy
is brought up to date from it; only when the file is gone is the copy read, and the journal
says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator.admission import delta_problem
from orchestrator.change import Change, read_claim
from orchestrator.proposers.base import NOTHING, Answer, Outcome, ProposalContext, Proposer, ProposerEvent
from orchestrator.yamlfile import YamlFileError, load_yaml

REQUIRED = ("id", "hypothesis")
INPUTS_DIR = "inputs"  # in the campaign folder: the copies of the hypotheses files


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


def copy_path(campaign_dir: Path, proposer: str) -> Path:
    """Where a campaign keeps its copy of a queue proposer's hypotheses file."""
    return campaign_dir / INPUTS_DIR / f"{proposer}.yaml"


def copy_text(source: Path, items: list[dict[str, Any]]) -> str:
    """A hypotheses file holding `items` (as load_queue read them from `source`) with no file
    of its own to refer to: each diff_file's content is written in as the item's diff."""
    rows = [{key: value for key, value in item.items() if key != "diff_file"} for item in items]
    header = f"# arborist's copy of {source} as last read, diff files written in; read only when that file is gone\n"
    return header + yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=1 << 30)


def write_copy(copy: Path, text: str) -> None:
    """Replace the copy in one step: a resume after a crash finds the old copy or the new one."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    staged = copy.with_name(f".{copy.name}.tmp")
    with open(staged, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staged, copy)


class QueueProposer(Proposer):
    """Never FINISHED: a person may append items while the campaign runs. With nothing left now
    it answers NOTHING, so the search does not wait for a person: the other proposers carry on.

    `copies`, one per path (None: no copy, as for the inbox, which lives in the campaign folder),
    are the campaign folder's copies of the files: kept up to date from each file as it is read,
    and read in its place once it is gone."""

    def __init__(self, paths: list[Path], name: str = "queue", copies: list[Path | None] | None = None) -> None:
        self.name = name
        self._paths = paths
        self._copies = list(copies) if copies is not None else [None] * len(paths)
        if len(self._copies) != len(paths):
            raise ValueError("a queue proposer needs one copy (or None) per hypotheses file")
        self._consumed: set[str] = set()
        self._written: dict[Path, str] = {}  # copy -> the text it holds
        self._trouble: dict[Path, str] = {}  # copy -> why it could not be written, as journaled
        self._gone: set[Path] = set()  # files found gone: journaled once, until they come back
        self._read_at: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}  # (mtime, size), items
        self._events: list[ProposerEvent] = []

    def propose(self, context: ProposalContext) -> Answer:
        for path, copy in zip(self._paths, self._copies, strict=True):
            for item in self._read(path, copy):
                if str(item["id"]) not in self._consumed:
                    self._consumed.add(str(item["id"]))
                    return item_to_change(item, self.name, context.parent_params)
        return NOTHING

    def pending(self, parent_params: dict[str, Any]) -> list[Change]:
        """The changes of the items not proposed yet, in queue order, as made on a parent with
        `parent_params`; nothing is taken from the queue (restore() takes one)."""
        return [
            item_to_change(item, self.name, parent_params)
            for path, copy in zip(self._paths, self._copies, strict=True)
            for item in self._read(path, copy) if str(item["id"]) not in self._consumed
        ]

    def _read(self, path: Path, copy: Path | None) -> list[dict[str, Any]]:
        """The file's items, or its copy's when the file is gone ([] when neither is there)."""
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is not None:
            # Read (and copied) again only when the file changed: a file of large diffs is
            # parsed once, not at every expansion.
            stamp = (stat.st_mtime_ns, stat.st_size)
            cached = self._read_at.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            items = load_queue(path)
            self._gone.discard(path)
            if copy is not None:
                self._keep(path, copy, copy_text(path, items))
            self._read_at[path] = (stamp, items)
            return items
        self._read_at.pop(path, None)
        if copy is None:
            return []  # the inbox before the first inject
        if path not in self._gone:
            self._gone.add(path)
            what = (f": reading the campaign's copy {copy}, which holds the file as it was last read"
                    if copy.exists() else " and the campaign holds no copy of it: its items are not proposed")
            self._events.append(("note", {"message": f"hypotheses file {path} is gone{what}"}))
        return load_queue(copy) if copy.exists() else []

    def _keep(self, path: Path, copy: Path, text: str) -> None:
        """Bring the copy up to date; a copy that cannot be written costs a note, not the items."""
        try:
            if copy not in self._written:
                self._written[copy] = copy.read_text(encoding="utf-8") if copy.exists() else ""
            if self._written[copy] != text:
                write_copy(copy, text)
                self._written[copy] = text
        except OSError as exc:
            message = (f"could not update {copy}, the campaign's copy of {path} ({exc.strerror or exc}): "
                       "were that file gone, a resume would read an older copy")
            if self._trouble.get(copy) != message:  # once, not at every expansion
                self._trouble[copy] = message
                self._events.append(("note", {"message": message}))
        else:
            self._trouble.pop(copy, None)

    def drain_events(self) -> list[ProposerEvent]:
        events, self._events = self._events, []
        return events

    def observe(self, change: Change, outcome: Outcome) -> None:
        """A person reads the results in the report; the queue itself does not adapt."""

    def restore(self, change: Change) -> None:
        self._consumed.add(change.source_id)
