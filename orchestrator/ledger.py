"""The Parquet ledger: the campaign's single source of truth, on pyarrow.fs (a local path or s3://).

Every tree event goes first to a write-ahead journal (one fsync'd JSON line on the driver's
disk), so a kill loses nothing, and then, in batches, to Parquet parts:

    <storage>/events/part-<first seq>-<last seq>.parquet    every event (replayed on resume)
    <storage>/trials/part-....parquet                        one row per finished trial
    <storage>/proposals/part-....parquet                     one row per proposal, rejected too
    <storage>/nodes.parquet                                  the nodes as of the last flush

A part is named by its sequence range, so re-flushing after a crash rewrites the same file
instead of duplicating rows. docs/ledger.md documents each column.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.tree import Event
from trials.spec import Fingerprint

SCHEMA_VERSION = 1
TABLES = ("events", "trials", "proposals", "llm_calls")

EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", pa.float64()),
        ("type", pa.string()),
        ("node_id", pa.string()),
        ("trial_id", pa.string()),
        ("data", pa.string()),  # the event's JSON payload
    ],
    metadata={"arborist_schema_version": str(SCHEMA_VERSION)},
)

_FP_FIELDS = [
    ("fp_gpu_model", pa.string()),
    ("fp_gpu_count", pa.int64()),
    ("fp_gpu_driver", pa.string()),
    ("fp_cuda_version", pa.string()),
    ("fp_cpu_model", pa.string()),
    ("fp_cpu_count", pa.int64()),
    ("fp_python", pa.string()),
    ("fp_packages", pa.string()),
    ("fp_lock_hash", pa.string()),
    ("fp_data_hash", pa.string()),
    ("fp_budget_s", pa.float64()),
    ("fingerprint_key", pa.string()),
]

TRIAL_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("node_id", pa.string()),
        ("seed", pa.int64()),
        ("state", pa.string()),
        ("failure_stage", pa.string()),
        ("message", pa.string()),
        ("metrics", pa.map_(pa.string(), pa.float64())),
        ("self_reported", pa.bool_()),
        ("started_at", pa.float64()),
        ("finished_at", pa.float64()),
        ("duration_s", pa.float64()),
        ("worker", pa.string()),
        ("log_tail", pa.string()),
        ("reports", pa.string()),  # JSON list of ARBORIST_REPORT payloads
        *_FP_FIELDS,
        ("event_seq", pa.int64()),
    ],
    metadata={"arborist_schema_version": str(SCHEMA_VERSION)},
)

PROPOSAL_SCHEMA = pa.schema(
    [
        ("proposal_id", pa.string()),
        ("parent_id", pa.string()),
        ("proposer", pa.string()),
        ("kind", pa.string()),
        ("aspect", pa.string()),
        ("hypothesis", pa.string()),
        ("params", pa.string()),  # JSON of the params delta
        ("diff", pa.string()),
        ("source_id", pa.string()),
        ("cost_usd", pa.float64()),
        ("verdict", pa.string()),
        ("reason", pa.string()),
        ("node_id", pa.string()),
        ("duplicate_of", pa.string()),
        ("memory_verdict", pa.string()),  # new | exact | structural | text | embedding
        ("memory_score", pa.float64()),  # the similarity behind the verdict
        ("memory_nearest", pa.string()),  # the closest earlier proposal, duplicate or not
        ("event_seq", pa.int64()),
    ],
    metadata={"arborist_schema_version": str(SCHEMA_VERSION)},
)

NODE_SCHEMA = pa.schema(
    [
        ("node_id", pa.string()),
        ("parent_id", pa.string()),
        ("status", pa.string()),
        ("origin", pa.string()),
        ("depth", pa.int64()),
        ("change_kind", pa.string()),
        ("aspect", pa.string()),
        ("hypothesis", pa.string()),
        ("proposer", pa.string()),
        ("params", pa.string()),  # JSON of the node's full params
        ("commit", pa.string()),
        ("seeds", pa.list_(pa.int64())),
        ("objective_mean", pa.float64()),
        ("gain", pa.float64()),  # paired mean gain over the parent, positive is better
        ("gain_ci_low", pa.float64()),
        ("gain_ci_high", pa.float64()),
        ("p_value", pa.float64()),
        ("decision_reason", pa.string()),
    ],
    metadata={"arborist_schema_version": str(SCHEMA_VERSION)},
)

LLM_CALL_SCHEMA = pa.schema(
    [
        ("event_seq", pa.int64()),
        ("proposer", pa.string()),
        ("purpose", pa.string()),
        ("model", pa.string()),
        ("started_at", pa.float64()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("ok", pa.bool_()),
        ("error", pa.string()),
    ],
    metadata={"arborist_schema_version": str(SCHEMA_VERSION)},
)

SCHEMAS = {
    "events": EVENT_SCHEMA, "trials": TRIAL_SCHEMA, "proposals": PROPOSAL_SCHEMA, "nodes": NODE_SCHEMA,
    "llm_calls": LLM_CALL_SCHEMA,
}


class LedgerError(RuntimeError):
    pass


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        path = Path(uri).resolve()
        return pafs.LocalFileSystem(), str(path)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LedgerError(f"storage {uri!r}: cannot open it ({exc}); check the URI in `storage:`") from exc


class Ledger:
    def __init__(
        self,
        uri: str,
        wal_path: Path,
        *,
        flush_rows: int = 256,
        flush_interval_s: float = 5.0,
    ) -> None:
        self.uri = uri
        self._fs, self._root = open_filesystem(uri)
        self._wal_path = wal_path
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._buffer: list[Event] = []
        self._last_flush = time.monotonic()
        wal_path.parent.mkdir(parents=True, exist_ok=True)
        self._fs.create_dir(self._root, recursive=True)
        self._wal = open(wal_path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._buffer = self._wal_events()

    # ----- writing -----------------------------------------------------------------------
    def append(self, event: Event) -> None:
        self._wal.write(json.dumps(event.to_dict(), default=str) + "\n")
        self._wal.flush()
        os.fsync(self._wal.fileno())
        self._buffer.append(event)

    def due(self) -> bool:
        return bool(self._buffer) and (
            len(self._buffer) >= self._flush_rows
            or time.monotonic() - self._last_flush >= self._flush_interval_s
        )

    def flush(self, nodes: list[dict[str, Any]] | None = None) -> None:
        """Write buffered events (and the rows derived from them) as Parquet parts."""
        if self._buffer:
            events = sorted(self._buffer, key=lambda e: e.seq)
            name = f"part-{events[0].seq:012d}-{events[-1].seq:012d}.parquet"
            self._write(f"events/{name}", [_event_row(e) for e in events], EVENT_SCHEMA)
            trials = [_trial_row(e) for e in events if e.type == "trial_finished"]
            if trials:
                self._write(f"trials/{name}", trials, TRIAL_SCHEMA)
            proposals = [_proposal_row(e) for e in events if e.type == "proposal"]
            if proposals:
                self._write(f"proposals/{name}", proposals, PROPOSAL_SCHEMA)
            calls = [_llm_call_row(e) for e in events if e.type == "llm_call"]
            if calls:
                self._write(f"llm_calls/{name}", calls, LLM_CALL_SCHEMA)
        if nodes is not None:
            self._write("nodes.parquet", nodes, NODE_SCHEMA)
        if self._buffer:
            # Only now is the journal's content safe in Parquet.
            self._wal.truncate(0)
            self._wal.seek(0)
            self._buffer = []
        self._last_flush = time.monotonic()

    def close(self, nodes: list[dict[str, Any]] | None = None) -> None:
        self.flush(nodes)
        self._wal.close()

    def _write(self, relpath: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        table = pa.Table.from_pylist(rows, schema=schema)
        path = f"{self._root}/{relpath}"
        self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        pq.write_table(table, tmp, filesystem=self._fs)
        self._fs.move(tmp, path)

    # ----- reading -----------------------------------------------------------------------
    def load_events(self) -> list[Event]:
        return load_events(self._fs, self._root, self._wal_path)

    def _wal_events(self) -> list[Event]:
        flushed = _max_flushed_seq(self._fs, self._root)
        return [e for e in read_wal(self._wal_path) if e.seq > flushed]


def read_wal(path: Path) -> list[Event]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill mid-write: the event never happened
    return events


def _parts(fs: pafs.FileSystem, directory: str) -> list[str]:
    info = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    return sorted(i.path for i in info if i.is_file and i.path.endswith(".parquet"))


def _max_flushed_seq(fs: pafs.FileSystem, root: str) -> int:
    parts = _parts(fs, f"{root}/events")
    return int(parts[-1].rsplit("-", 1)[1].split(".")[0]) if parts else 0


def read_table(fs: pafs.FileSystem, root: str, table: str) -> pa.Table:
    schema = SCHEMAS[table]
    if table == "nodes":
        path = f"{root}/nodes.parquet"
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return schema.empty_table()
        return _read_part(fs, path)
    parts = [_read_part(fs, p) for p in _parts(fs, f"{root}/{table}")]
    # Parts written before a column was added read with that column null.
    return pa.concat_tables(parts, promote_options="default") if parts else schema.empty_table()


def _read_part(fs: pafs.FileSystem, path: str) -> pa.Table:
    try:
        return pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LedgerError(
            f"ledger file {path} is unreadable ({exc}). Move it aside and run `arborist resume`; "
            "the write-ahead journal and the other parts are kept."
        ) from exc


def load_events(fs: pafs.FileSystem, root: str, wal_path: Path | None) -> list[Event]:
    table = read_table(fs, root, "events")
    events = {
        row["seq"]: Event(seq=row["seq"], ts=row["ts"], type=row["type"], data=json.loads(row["data"]))
        for row in table.to_pylist()
    }
    for event in read_wal(wal_path) if wal_path else []:
        events.setdefault(event.seq, event)
    return [events[s] for s in sorted(events)]


# ----- row builders ------------------------------------------------------------------------
def _event_row(event: Event) -> dict[str, Any]:
    data = event.data
    trial_id = data.get("trial_id") or (data.get("result") or {}).get("trial_id")
    node_id = data.get("node_id") or (data.get("result") or {}).get("node_id")
    return {
        "seq": event.seq,
        "ts": event.ts,
        "type": event.type,
        "node_id": node_id,
        "trial_id": trial_id,
        "data": json.dumps(data, default=str, sort_keys=True),
    }


def _trial_row(event: Event) -> dict[str, Any]:
    result = event.data["result"]
    fp = Fingerprint.from_dict(result.get("fingerprint") or {})
    row = {
        "trial_id": result["trial_id"],
        "node_id": result["node_id"],
        "seed": result["seed"],
        "state": result["state"],
        "failure_stage": result.get("failure_stage"),
        "message": result.get("message", ""),
        "metrics": list((result.get("metrics") or {}).items()),
        "self_reported": bool(result.get("self_reported")),
        "started_at": result.get("started_at"),
        "finished_at": result.get("finished_at"),
        "duration_s": max(0.0, (result.get("finished_at") or 0) - (result.get("started_at") or 0)),
        "worker": result.get("worker", ""),
        "log_tail": result.get("log_tail", ""),
        "reports": json.dumps(result.get("reports") or []),
        "fingerprint_key": fp.comparability_key(),
        "event_seq": event.seq,
    }
    row.update({f"fp_{k}": v for k, v in fp.to_dict().items()})
    return row


def _proposal_row(event: Event) -> dict[str, Any]:
    data = event.data
    change = data["change"]
    return {
        "proposal_id": data["proposal_id"],
        "parent_id": data["parent_id"],
        "proposer": change["proposer"],
        "kind": change["kind"],
        "aspect": change["aspect"],
        "hypothesis": change["hypothesis"],
        "params": json.dumps(change.get("params") or {}, sort_keys=True, default=str),
        "diff": change.get("diff", ""),
        "source_id": change.get("source_id", ""),
        "cost_usd": float(change.get("cost_usd") or 0.0),
        "verdict": data["verdict"],
        "reason": data["reason"],
        "node_id": data.get("node_id"),
        "duplicate_of": data.get("duplicate_of"),
        "memory_verdict": (data.get("memory") or {}).get("kind"),
        "memory_score": (data.get("memory") or {}).get("score"),
        "memory_nearest": (data.get("memory") or {}).get("nearest"),
        "event_seq": event.seq,
    }


def _llm_call_row(event: Event) -> dict[str, Any]:
    data = event.data
    row = {name: data.get(name) for name in LLM_CALL_SCHEMA.names}
    row["event_seq"] = event.seq
    return row
