"""The one reader: a campaign's tables as Arrow, the journal's newest events included."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import reader
from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import write_config


def test_a_running_campaign_reads_whole_with_its_journal(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = SearchService(config.model_dump(mode="json"), prepare(config, None))
    ran = drive(service, stop_after=5)
    journal = reader.read_journal(config)
    assert any(e.type == "trial_finished" for e in journal), "the test needs events not yet in Parquet"
    tables = reader.read(config)
    events = reader.load_events(config)
    assert tables.events.column("seq").to_pylist() == [e.seq for e in events]
    assert tables.trials.num_rows == ran == sum(e.type == "trial_finished" for e in events)
    assert tables.proposals.num_rows == sum(e.type == "proposal" for e in events)
    tree = reader.load_tree(config)
    assert tables.nodes.column("node_id").to_pylist() == list(tree.nodes)
    assert set(tables.to_pandas()) == {"events", "trials", "proposals", "llm_calls", "nodes"}
    with pytest.raises(KeyError, match="the ledger has no table 'runs'; its tables are events, trials"):
        tables["runs"]
    service.close()
    after = reader.read(config)  # all in Parquet now: the same rows
    assert after.trials.column("trial_id").to_pylist() == tables.trials.column("trial_id").to_pylist()
