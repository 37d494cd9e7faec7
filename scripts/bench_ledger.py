"""Ledger throughput: rows/s written to local Parquet and to S3 (SeaweedFS on loopback), and the
time to rebuild a tree from 1,000,000 events.

    .venv/bin/python scripts/bench_ledger.py [--rows 200000] [--batch 5000] [--events 1000000]

Rows are trial results with a full fingerprint (the widest table). Writes go in batches, as the
tree actor flushes them; the journal's per-event fsync is timed separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import S3Config
from orchestrator.ledger import Ledger, load_events, open_filesystem
from orchestrator.tree import Event, SearchTree
from trials.spec import Fingerprint, TrialResult, TrialState

FINGERPRINT = Fingerprint(
    gpu_model="NVIDIA H100 80GB HBM3", gpu_count=8, gpu_driver="550.54", cuda_version="12.4", cpu_model="Xeon",
    cpu_count=96, python="3.11.7", packages="numpy=2.1,torch=2.13.0", lock_hash="a" * 16,
    data_hash="b" * 16, budget_s=3600.0,
)


def trial_events(start: int, count: int) -> list[Event]:
    out = []
    for seq in range(start, start + count):
        result = TrialResult(f"n{seq // 8}-s{seq % 8}", f"n{seq // 8}", seq % 8, TrialState.COMPLETE,
                             metrics={"accuracy": 0.9, "loss": 0.3}, fingerprint=FINGERPRINT, started_at=1.0,
                             finished_at=2.0)
        out.append(Event(seq, 1000.0 + seq, "trial_finished", {"result": result.to_dict()}))
    return out


def write_rate(uri: str, s3: S3Config | None, rows: int, batch: int, work: Path, journaled: bool = True) -> float:
    """Rows/s of flushes. journaled: the payloads' JSON was encoded by the journal, as in a campaign
    (Ledger.append encodes each event once, for both); otherwise the flush encodes them too."""
    ledger = Ledger(uri, work / f"journal-{time.monotonic_ns()}.wal", s3=s3)
    batches = [trial_events(start, batch) for start in range(1, rows + 1, batch)]
    encoded = [{e.seq: json.dumps(e.data, default=str) for e in events} if journaled else {} for events in batches]
    started = time.perf_counter()
    for events, payloads in zip(batches, encoded, strict=True):
        ledger._buffer, ledger._encoded = list(events), payloads
        assert ledger.flush()
    elapsed = time.perf_counter() - started
    ledger.close()
    return rows / elapsed


def journal_rate(work: Path, count: int = 2000) -> float:
    ledger = Ledger(str(work / "journal-ledger"), work / "journal-rate.wal")
    events = trial_events(1, count)
    started = time.perf_counter()
    for event in events:
        ledger.append(event)
    return count / (time.perf_counter() - started)


def replay_time(events: int, work: Path) -> tuple[float, float]:
    """Seconds to read `events` events back from Parquet, and to replay them into a tree."""
    uri = str(work / "replay-ledger")
    ledger = Ledger(uri, work / "replay.wal")
    seq = 0
    root = {"node_id": "n0", "parent_id": None, "change": None, "commit": "c", "params": {}, "origin": "root"}
    chunk: list[Event] = [Event(1, 1.0, "campaign_started", {"name": "bench"}), Event(2, 1.0, "node_created", root)]
    seq = 2
    node = 0
    while seq < events:
        node += 1
        seeds = list(range(4))
        change = {"kind": "params", "aspect": "lr", "hypothesis": "h", "proposer": "b", "params": {"lr": node},
                  "diff": "", "source_id": "", "cost_usd": 0.0}
        created = {"node_id": f"n{node}", "parent_id": "n0", "change": change, "commit": "c", "params": {},
                   "origin": "search"}
        batch = [("node_created", created), ("seeds_requested", {"node_id": f"n{node}", "seeds": seeds})]
        for s in seeds:
            tid = f"n{node}-s{s}"
            result = TrialResult(tid, f"n{node}", s, TrialState.COMPLETE, metrics={"accuracy": 0.9},
                                 fingerprint=FINGERPRINT, finished_at=2.0)
            batch += [("trial_started", {"trial_id": tid, "node_id": f"n{node}", "seed": s}),
                      ("trial_finished", {"result": result.to_dict()})]
        for type_, data in batch:
            seq += 1
            chunk.append(Event(seq, float(seq), type_, data))
        if len(chunk) >= 50_000:
            ledger._buffer = chunk
            ledger.flush()
            chunk = []
    ledger._buffer = chunk
    ledger.close()
    fs, root_path = open_filesystem(uri)
    started = time.perf_counter()
    loaded = load_events(fs, root_path, None)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    SearchTree.replay(loaded)
    return read_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local = write_rate(str(work / "local-ledger"), None, args.rows, args.batch, work)
        print(f"local Parquet: {local:,.0f} rows/s (batches of {args.batch})")
        unencoded = write_rate(str(work / "local-ledger-2"), None, args.rows, args.batch, work, journaled=False)
        print(f"local Parquet, payloads encoded by the flush: {unencoded:,.0f} rows/s")
        print(f"journal (fsync per event): {journal_rate(work):,.0f} events/s")
        if not args.no_s3:
            from tests.s3_server import ACCESS_KEY, SECRET_KEY, SeaweedS3

            with SeaweedS3(work / "s3") as server:
                settings = S3Config(endpoint_url=server.endpoint)
                import os

                os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
                s3 = write_rate(f"s3://{server.bucket}/bench", settings, args.rows, args.batch, work)
                print(f"S3 (SeaweedFS, loopback): {s3:,.0f} rows/s (batches of {args.batch})")
        read_s, replay_s = replay_time(args.events, work)
        print(f"{args.events:,} events: read {read_s:.1f} s + replay {replay_s:.1f} s = {read_s + replay_s:.1f} s")


if __name__ == "__main__":
    main()
