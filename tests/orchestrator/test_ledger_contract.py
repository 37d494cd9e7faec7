"""One contract, two backends: the ledger on a local folder and on S3 (SeaweedFS on loopback)."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.config import S3Config
from orchestrator.ledger import SCHEMA_VERSION, Ledger, LedgerError, load_events, open_filesystem, read_table
from orchestrator.tree import Event
from tests.orchestrator.test_ledger import _events
from tests.s3_server import ACCESS_KEY, SECRET_KEY, SeaweedS3
from trials.spec import Fingerprint

_prefixes = itertools.count()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, S3Config | None]]:
    if request.param == "local":
        yield str(tmp_path / "ledger"), None
        return
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    # One bucket, a prefix per test: each SeaweedFS bucket reserves volumes of its own.
    yield f"s3://{server.bucket}/contract-{os.getpid()}-{next(_prefixes)}", _s3(server)


def _s3(server: SeaweedS3, **overrides: object) -> S3Config:
    os.environ.setdefault("ARBORIST_TEST_S3_KEY", ACCESS_KEY)
    os.environ.setdefault("ARBORIST_TEST_S3_SECRET", SECRET_KEY)
    data = {"endpoint_url": server.endpoint, "access_key_env": "ARBORIST_TEST_S3_KEY",
            "secret_key_env": "ARBORIST_TEST_S3_SECRET", **overrides}
    return S3Config.model_validate(data)


def test_rows_round_trip_with_every_fingerprint_column(
    storage: tuple[str, S3Config | None], tmp_path: Path
) -> None:
    uri, s3 = storage
    ledger = Ledger(uri, tmp_path / "journal.wal", s3=s3)
    for event in _events(1, 40):
        ledger.append(event)
    assert ledger.flush()
    ledger.close()
    fs, root = open_filesystem(uri, s3)
    trials = read_table(fs, root, "trials")
    fingerprint = [c for c in trials.column_names if c.startswith("fp_")]
    assert set(fingerprint) >= {"fp_gpu_model", "fp_gpu_count", "fp_gpu_driver", "fp_cuda_version", "fp_cpu_model",
                                "fp_python", "fp_packages", "fp_lock_hash", "fp_data_hash", "fp_budget_s"}
    con = duckdb.connect()
    con.register("trials", trials)
    assert set(trials.column("sandbox").to_pylist()) == {"bwrap"}  # the containment each trial ran under
    row = con.execute("select count(*), min(fp_budget_s), count(distinct fingerprint_key) from trials").fetchone()
    assert row == (40, 60.0, 1)
    assert [e.seq for e in load_events(fs, root, tmp_path / "journal.wal")] == list(range(1, 41))


def test_payloads_and_fingerprints_read_back_as_written(storage: tuple[str, S3Config | None], tmp_path: Path) -> None:
    """A decision carries NaN and infinite bounds; one batch mixes fingerprints. The journal and
    the Parquet part share one encoding of each payload; both must give back what was appended."""
    uri, s3 = storage
    wal = tmp_path / "journal.wal"
    ledger = Ledger(uri, wal, s3=s3)
    events = _events(1, 6)
    for i, event in enumerate(events):
        fingerprint = {**event.data["result"]["fingerprint"], "gpu_count": i % 3, "lock_hash": f"lock{i % 2}"}
        events[i] = Event(event.seq, event.ts, event.type, {"result": {**event.data["result"],
                                                                       "fingerprint": fingerprint}})
    decision = Event(7, 1007.0, "decision", {"node_id": "n1", "status": "open", "gain": math.nan,
                                             "ci": [-math.inf, math.inf], "note": "näive \"quoted\"\n"})
    for event in [*events, decision]:
        ledger.append(event)
    unflushed = load_events(*open_filesystem(uri, s3), wal)  # from the journal alone
    assert ledger.flush()
    ledger.close()
    fs, root = open_filesystem(uri, s3)
    for loaded in (unflushed, load_events(fs, root, wal)):
        assert [e.data for e in loaded[:6]] == [e.data for e in events]
        back = loaded[6].data
        assert math.isnan(back["gain"]) and back["ci"] == [-math.inf, math.inf] and back["note"] == "näive \"quoted\"\n"
    trials = read_table(fs, root, "trials").to_pylist()
    assert [(r["fp_gpu_count"], r["fp_lock_hash"]) for r in trials] == [(i % 3, f"lock{i % 2}") for i in range(6)]
    expected = [Fingerprint.from_dict(e.data["result"]["fingerprint"]).comparability_key() for e in events]
    assert [r["fingerprint_key"] for r in trials] == expected and len(set(expected)) == 6


def test_writing_a_range_again_records_it_once(storage: tuple[str, S3Config | None], tmp_path: Path) -> None:
    uri, s3 = storage
    wal = tmp_path / "journal.wal"
    ledger = Ledger(uri, wal, s3=s3)
    for event in _events(1, 5):
        ledger.append(event)
    # A crash after the Parquet write but before the journal was cleared: the next session
    # reads the journal again, and neither loses nor repeats an event.
    ledger._flush(None)
    ledger._wal.close()
    again = Ledger(uri, wal, s3=s3)
    for event in _events(3, 5):  # a trial reported twice (a retry) and new ones
        again.append(event)
    again.close()
    fs, root = open_filesystem(uri, s3)
    trial_ids = read_table(fs, root, "trials").column("trial_id").to_pylist()
    assert sorted(trial_ids) == sorted(f"n1-s{i}" for i in range(1, 8))  # each once
    assert [e.seq for e in load_events(fs, root, wal)] == list(range(1, 8))


def test_compaction_merges_small_parts_and_survives_a_crash_halfway(
    storage: tuple[str, S3Config | None], tmp_path: Path
) -> None:
    uri, s3 = storage
    ledger = Ledger(uri, tmp_path / "journal.wal", s3=s3)
    for start in range(1, 41, 2):
        for event in _events(start, 2):
            ledger.append(event)
        assert ledger.flush()
    fs, root = open_filesystem(uri, s3)
    before = read_table(fs, root, "trials")
    assert ledger.compact(min_parts=4) == 2  # events and trials
    after = read_table(fs, root, "trials")
    assert after.num_rows == before.num_rows == 40
    assert len(fs.get_file_info(pa.fs.FileSelector(f"{root}/trials"))) == 1
    # A compaction cut short leaves the merged part next to its small parts: nothing is counted twice.
    for event in _events(41, 2):
        ledger.append(event)
    ledger.flush()
    merged = read_table(fs, root, "trials")
    pq.write_table(merged.slice(0, 5), f"{root}/trials/part-000000000001-000000000005.parquet", filesystem=fs)
    assert read_table(fs, root, "trials").num_rows == 42
    assert len(load_events(fs, root, None)) == 42


def test_a_part_from_a_newer_arborist_is_refused(storage: tuple[str, S3Config | None], tmp_path: Path) -> None:
    uri, s3 = storage
    ledger = Ledger(uri, tmp_path / "journal.wal", s3=s3)
    for event in _events(1, 3):
        ledger.append(event)
    ledger.close()
    fs, root = open_filesystem(uri, s3)
    table = read_table(fs, root, "events")
    newer = table.replace_schema_metadata({"arborist_schema_version": str(SCHEMA_VERSION + 1)})
    pq.write_table(newer, f"{root}/events/part-000000000004-000000000006.parquet", filesystem=fs)
    expected = rf"schema version {SCHEMA_VERSION + 1}; this arborist reads versions 1 to {SCHEMA_VERSION}\. Upgrade"
    with pytest.raises(LedgerError, match=expected):
        load_events(fs, root, None)


def test_an_older_version_still_reads(storage: tuple[str, S3Config | None], tmp_path: Path) -> None:
    uri, s3 = storage
    fs, root = open_filesystem(uri, s3)
    fs.create_dir(f"{root}/proposals", recursive=True)
    old = pa.table({"proposal_id": ["p1"], "event_seq": [1]}).replace_schema_metadata(
        {"arborist_schema_version": "1"}
    )
    pq.write_table(old, f"{root}/proposals/part-000000000001-000000000001.parquet", filesystem=fs)
    table = read_table(fs, root, "proposals")
    assert table.num_rows == 1 and table.column("proposal_id").to_pylist() == ["p1"]


def test_a_corrupted_part_is_named_and_left_alone(storage: tuple[str, S3Config | None], tmp_path: Path) -> None:
    uri, s3 = storage
    ledger = Ledger(uri, tmp_path / "journal.wal", s3=s3)
    for event in _events(1, 3):
        ledger.append(event)
    ledger.close()
    fs, root = open_filesystem(uri, s3)
    path = f"{root}/events/part-000000000001-000000000003.parquet"
    with fs.open_input_stream(path) as stream:
        data = stream.read()
    with fs.open_output_stream(path) as out:
        out.write(data[: len(data) // 2])  # truncated, as a crash mid-upload to a plain filesystem leaves it
    with pytest.raises(LedgerError, match=r"part-000000000001-000000000003\.parquet is unreadable: corrupt or "
                                          r"truncated.*Nothing was changed or deleted"):
        load_events(fs, root, None)
    with fs.open_input_stream(path) as stream:
        assert len(stream.read()) == len(data) // 2
