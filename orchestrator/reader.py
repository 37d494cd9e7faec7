"""The one reader of a campaign's ledger, and the one place that knows where the ledger lives.

`read(config)` returns every table of the ledger as a pyarrow Table (`.to_pandas()` turns one
into a DataFrame), local or on S3 alike. Events still in the write-ahead journal (a campaign
that runs, or one that was killed before its last flush) are read too, and their trial,
proposal and LLM-call rows built as the ledger builds them, so a table never lags the tree.
The nodes table is built from the replayed tree, not read from nodes.parquet, which the tree
actor rewrites at most once a minute.

The report, the Python API (orchestrator/api.py) and the exports read through here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from orchestrator import ledger
from orchestrator.config import CampaignConfig
from orchestrator.tree import Event, Node, SearchTree

if TYPE_CHECKING:
    import pandas as pd

LEDGER_DIR = "ledger"  # in the campaign folder, unless `storage:` points elsewhere
JOURNAL_FILE = "journal.wal"  # in the campaign folder: events not yet in Parquet


def ledger_uri(config: CampaignConfig) -> str:
    """Where the campaign's Parquet ledger lives: `storage:` (a path or s3://), else in its folder."""
    assert config.campaign_dir is not None
    return config.storage or str(Path(config.campaign_dir) / LEDGER_DIR)


def journal_path(campaign_dir: Path | str) -> Path:
    return Path(campaign_dir) / JOURNAL_FILE


def load_events(config: CampaignConfig) -> list[Event]:
    """Every event of the campaign, in order: the Parquet parts, then the journal's newer ones."""
    assert config.campaign_dir is not None
    fs, root = ledger.open_filesystem(ledger_uri(config), config.s3)
    return ledger.load_events(fs, root, journal_path(config.campaign_dir))


def load_tree(config: CampaignConfig) -> SearchTree:
    """The campaign's tree as its ledger says, replayed from the events."""
    return SearchTree.replay(load_events(config))


@dataclass(frozen=True)
class LedgerTables:
    """A campaign's ledger as Arrow tables; docs/ledger.md documents each column."""

    events: pa.Table
    trials: pa.Table
    proposals: pa.Table
    llm_calls: pa.Table
    nodes: pa.Table

    def __getitem__(self, name: str) -> pa.Table:
        if name not in self.names():
            raise KeyError(f"the ledger has no table {name!r}; its tables are {', '.join(self.names())}")
        table: pa.Table = getattr(self, name)
        return table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(LedgerTables))

    def to_pandas(self) -> dict[str, pd.DataFrame]:
        """Every table as a pandas DataFrame (pandas must be installed)."""
        return {name: self[name].to_pandas() for name in self.names()}


def read_journal(config: CampaignConfig) -> list[Event]:
    """The journal's events no Parquet part holds yet (a running or killed campaign's newest)."""
    assert config.campaign_dir is not None
    fs, root = ledger.open_filesystem(ledger_uri(config), config.s3)
    return _journal_only(ledger.read_table(fs, root, "events"), ledger.read_wal(journal_path(config.campaign_dir)))


def read(config: CampaignConfig, tree: SearchTree | None = None) -> LedgerTables:
    """The campaign's ledger as Arrow tables; `tree` (already replayed) saves a second replay."""
    assert config.campaign_dir is not None
    fs, root = ledger.open_filesystem(ledger_uri(config), config.s3)
    flushed = {name: ledger.read_table(fs, root, name) for name in ledger.TABLES}
    journal = _journal_only(flushed["events"], ledger.read_wal(journal_path(config.campaign_dir)))
    if tree is None:
        tree = SearchTree.replay(ledger.load_events(fs, root, journal_path(config.campaign_dir)))
    for name, rows in ledger.tables_of(journal, tree.trials).items() if journal else ():
        flushed[name] = pa.concat_tables([flushed[name], rows.cast(flushed[name].schema)])
    nodes = pa.Table.from_pylist(node_rows(tree, config), schema=ledger.NODE_SCHEMA)
    return LedgerTables(nodes=nodes, **flushed)


def _journal_only(events: pa.Table, journal: list[Event]) -> list[Event]:
    """The journal's events that no Parquet part holds yet."""
    if not journal:
        return []
    flushed = set(events.column("seq").to_pylist()) if events.num_rows else set()
    return sorted((e for e in journal if e.seq not in flushed), key=lambda e: e.seq)


def node_rows(tree: SearchTree, config: CampaignConfig) -> list[dict[str, Any]]:
    """Every node's row of the nodes table (nodes.parquet), in creation order."""
    return [node_row(tree, config, node) for node in tree.nodes.values()]


def node_row(tree: SearchTree, config: CampaignConfig, node: Node) -> dict[str, Any]:
    """A node's row in nodes.parquet, kept with its derived figures (dropped when one of its trials
    finishes) while its decision and seeds stay: every flush writes all nodes, most unchanged."""
    figures = tree.derived.setdefault(node.node_id, {})
    stamp = (node.decided_seq, len(node.seeds))
    kept = figures.get("row")
    if kept is not None and kept[0] == stamp:
        row: dict[str, Any] = kept[1]
        return row
    values = list(tree.completed_values(node.node_id, config.objective).values())
    evidence = (node.decision or {}).get("evidence") or {}
    change = node.change
    row = {
        "node_id": node.node_id,
        "parent_id": node.parent_id,
        "status": node.status.value,
        "origin": node.origin,
        "depth": node.depth,
        "change_kind": change.kind if change else None,
        "aspect": change.aspect if change else None,
        "hypothesis": change.hypothesis if change else None,
        "proposer": change.proposer if change else None,
        "params": json.dumps(node.params, sort_keys=True, default=str),
        "commit": node.commit,
        "seeds": list(node.seeds),
        "objective_mean": float(np.mean(values)) if values else None,
        "gain": evidence.get("mean"),
        "gain_ci_low": evidence.get("ci_low"),
        "gain_ci_high": evidence.get("ci_high"),
        "p_value": evidence.get("p_value"),
        "decision_reason": (node.decision or {}).get("reason"),
    }
    figures["row"] = (stamp, row)
    return row
