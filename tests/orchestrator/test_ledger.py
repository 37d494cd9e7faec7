"""The ledger keeps every event through kills, and reads back with duckdb."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orchestrator.change import Change
from orchestrator.ledger import Ledger, LedgerError, load_events, open_filesystem, read_table
from orchestrator.tree import Event
from trials.spec import Fingerprint, TrialResult, TrialState


def _events(start: int, count: int) -> list[Event]:
    out = []
    for seq in range(start, start + count):
        result = TrialResult(
            f"n1-s{seq}", "n1", seq, TrialState.COMPLETE, metrics={"acc": 0.5 + seq / 1000},
            fingerprint=Fingerprint(cpu_model="cpu", python="3.11", budget_s=60.0), started_at=1.0, finished_at=3.5,
            sandbox="bwrap",
        )
        out.append(Event(seq, 1000.0 + seq, "trial_finished", {"result": result.to_dict()}))
    return out


def test_batches_become_parquet_parts_and_rows(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    for event in _events(1, 10):
        ledger.append(event)
    change = Change(kind="params", aspect="lr", hypothesis="h", proposer="grid", params={"lr": 0.1})
    ledger.append(Event(11, 2000.0, "proposal", {
        "proposal_id": "p1", "parent_id": "n0", "change": change.to_dict(), "verdict": "rejected",
        "reason": "duplicate of p0", "node_id": None, "duplicate_of": "p0",
    }))
    ledger.flush()
    for event in _events(12, 5):
        ledger.append(event)
    ledger.close()
    parts = sorted(p.name for p in (tmp_path / "ledger" / "events").iterdir())
    assert parts == ["part-000000000001-000000000011.parquet", "part-000000000012-000000000016.parquet"]
    assert (tmp_path / "journal.wal").read_text() == ""
    con = duckdb.connect()
    trials = con.execute(
        f"select count(*), min(fp_budget_s), max(duration_s) from '{tmp_path}/ledger/trials/*.parquet'"
    )
    assert trials.fetchone() == (15, 60.0, 2.5)
    acc = con.execute(f"select metrics['acc'] from '{tmp_path}/ledger/trials/*.parquet' where seed = 3").fetchone()
    assert acc is not None and acc[0] == pytest.approx(0.503)
    reason = con.execute(f"select reason from '{tmp_path}/ledger/proposals/*.parquet'").fetchone()
    assert reason == ("duplicate of p0",)


def test_a_kill_before_flush_loses_nothing(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    for event in _events(1, 3):
        ledger.append(event)
    ledger.flush()
    for event in _events(4, 4):
        ledger.append(event)
    # No flush, no close: as after kill -9. A line cut short by the kill is ignored.
    with open(tmp_path / "journal.wal", "a") as wal:
        wal.write('{"seq": 8, "ts": 1.0, "type": "trial_fin')
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    assert [e.seq for e in load_events(fs, root, tmp_path / "journal.wal")] == list(range(1, 8))
    reopened = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    reopened.flush()
    assert [e.seq for e in reopened.load_events()] == list(range(1, 8))
    assert read_table(fs, root, "trials").num_rows == 7


def test_reflushing_the_same_range_does_not_duplicate(tmp_path: Path) -> None:
    wal = tmp_path / "journal.wal"
    ledger = Ledger(str(tmp_path / "ledger"), wal)
    for event in _events(1, 3):
        ledger.append(event)
    ledger.flush()
    # A crash between writing Parquet and truncating the journal leaves both copies.
    with open(wal, "a") as handle:
        import json

        for event in _events(1, 3):
            handle.write(json.dumps(event.to_dict()) + "\n")
    again = Ledger(str(tmp_path / "ledger"), wal)
    again.flush()
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    assert read_table(fs, root, "trials").num_rows == 3


def test_a_corrupted_part_names_the_file(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "ledger"), tmp_path / "journal.wal")
    for event in _events(1, 2):
        ledger.append(event)
    ledger.close()
    part = next((tmp_path / "ledger" / "events").iterdir())
    part.write_bytes(part.read_bytes()[:40])
    fs, root = open_filesystem(str(tmp_path / "ledger"))
    with pytest.raises(LedgerError, match=part.name):
        load_events(fs, root, None)
