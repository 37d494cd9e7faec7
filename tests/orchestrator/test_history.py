"""Experiment logs in and out: autoresearch's results.tsv read into a campaign's memory, a
campaign written as one, and the round trip between two campaigns (real trials, no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import api, reader
from orchestrator.campaign import prepare
from orchestrator.config import load_config
from orchestrator.history import HistoryError, parse_log
from orchestrator.search import SearchService
from tests.orchestrator.test_search import drive
from tests.toy import write_config

# As karpathy/autoresearch writes it, with what real files add: a comment, an extra column, a crash
# row with its objective missing, a blank line and Windows line ends.
REAL_WORLD = (
    "# exported from the overnight run\r\n"
    "commit\tval_bpb\tmemory_gb\tstatus\tdescription\tgpu\r\n"
    "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\tH100\r\n"
    "\r\n"
    "b2c3d4e\t0.993200\t44.2\tKEEP\tincrease LR to 0.04\tH100\r\n"
    "c3d4e5f\t\t\tcrash\tdouble the model width (OOM)\r\n"
    "d4e5f6g\t1.005000\t44.0\tdiscard\tswitch to GeLU activation\tH100\r\n"
)


def test_a_real_world_log_is_read_row_by_row(tmp_path: Path) -> None:
    log = tmp_path / "results.tsv"
    log.write_bytes(REAL_WORLD.encode())
    rows = parse_log(log, "score")
    assert [(r.line, r.status, r.description) for r in rows] == [
        (3, "keep", "baseline"), (5, "keep", "increase LR to 0.04"),
        (6, "crash", "double the model width (OOM)"), (7, "discard", "switch to GeLU activation"),
    ]
    assert rows[1].objective == pytest.approx(0.9932) and rows[1].memory_gb == pytest.approx(44.2)
    assert rows[2].objective is None and rows[2].memory_gb is None


@pytest.mark.parametrize(("text", "message"), [
    ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t0.99\t44\tmaybe\tx\n",
     "results.tsv:2: column 4 (status): status is 'maybe'; it is one of keep, discard, crash"),
    ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\tfast\t44\tkeep\tx\n",
     "results.tsv:2: column 2 (val_bpb): 'fast' is not a number"),
    ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t0.9\t44\tkeep\t \n",
     "results.tsv:2: column 5 (description): the description is empty"),
    ("commit,val_bpb,memory_gb,status,description\n", "results.tsv:1: the header has one column; the log must be "
     "tab-separated"),
    ("commit\tloss\tstatus\tdescription\n", "results.tsv:1: the header has no objective column: name it score"),
    ("# nothing yet\n", "results.tsv: the log is empty"),
])
def test_a_broken_log_is_named_by_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    log = tmp_path / "results.tsv"
    log.write_text(text)
    with pytest.raises(HistoryError) as caught:
        parse_log(log, "score")
    assert str(caught.value).startswith(str(log)) and message.removeprefix("results.tsv") in str(caught.value)


def test_a_campaign_written_as_a_log_blocks_its_changes_in_a_fresh_campaign(tmp_path: Path) -> None:
    first = load_config(write_config(tmp_path / "first", search={"proposers": [
        {"type": "queue", "path": str(tmp_path / "first" / "hypotheses.yaml")}]}, budget={"max_trials": 40}))
    service = SearchService(first.model_dump(mode="json"), prepare(first, None))
    drive(service)
    service.close()
    assert first.campaign_dir is not None
    log = tmp_path / "results.tsv"
    written = api.export_log(first.campaign_dir, log)
    lines = log.read_text().splitlines()
    assert lines[0] == "commit\tscore\tmemory_gb\tstatus\tdescription" and written == len(lines) - 1 >= 4
    tried = {line.split("\t")[4]: line.split("\t")[3] for line in lines[1:]}
    assert tried["a larger bonus helps"] == "keep" and tried["a penalty hurts"] == "discard"
    assert tried["a model module that does not exist"] == "crash"

    # A fresh campaign with the same queue, the log imported before it starts.
    config_path = write_config(tmp_path / "second", budget={"max_trials": 40})
    second = load_config(config_path)
    assert second.campaign_dir is not None
    added, known = api.import_log(log, second.campaign_dir, config_path)
    assert len(added) == written and known == 0
    assert api.import_log(log, second.campaign_dir, config_path) == ([], written)  # twice is once
    service = SearchService(second.model_dump(mode="json"), prepare(second, None))
    events = reader.load_events(second)
    imported = [e for e in events if e.type == "history_imported"]
    assert [e.data["description"] for e in imported] == [line.split("\t")[4] for line in lines[1:]]
    # Rejected at the start, before any trial ran: every change the first campaign decided but the
    # crash, which may be retried once on the same parent (memory.max_retries).
    rejected = {e.data["change"]["source_id"]: e.data for e in events
                if e.type == "proposal" and e.data["verdict"] == "rejected"}
    assert not any(e.type == "trial_started" for e in events)
    for source in ("better", "extra", "worse"):
        assert rejected[source]["duplicate_of"].startswith("h"), rejected[source]
        assert "and it was tried there" in rejected[source]["reason"]
    assert "protected path evaluate.py" in rejected["tamper"]["reason"]
    assert "breaks" not in rejected
    drive(service)
    service.close()
    tables = api.read(second.campaign_dir)
    queue = [n for n in tables.nodes.to_pylist() if n["proposer"] == "queue"]
    assert [n["hypothesis"] for n in queue] == ["a model module that does not exist"]
    assert tables.events.column("type").to_pylist().count("history_imported") == written


def test_import_log_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import EXIT_USAGE, main

    config_path = write_config(tmp_path)
    log = tmp_path / "results.tsv"
    log.write_bytes(REAL_WORLD.encode())
    folder = tmp_path / "campaign"
    assert main(["import-log", str(log), "--campaign-dir", str(folder)]) == EXIT_USAGE
    assert "holds no campaign yet; pass the config it will run (--config CFG)" in capsys.readouterr().err
    assert main(["import-log", str(log), "--campaign-dir", str(folder), "--config", str(config_path)]) == 0
    assert capsys.readouterr().out.startswith(f"imported 4 rows from {log} (2 keep, 1 discard, 1 crash)")
    log.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t0.9\t44\tkept\tx\n")
    assert main(["import-log", str(log), "--campaign-dir", str(folder), "--config", str(config_path)]) == EXIT_USAGE
    assert f"arborist: error: {log}:2: column 4 (status): status is 'kept'" in capsys.readouterr().err
