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

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.config import S3Config
from orchestrator.storage import StorageError, open_storage
from orchestrator.tree import Event, TrialRecord, paused_gc
from trials.spec import Fingerprint

# 2: proposals gained memory_* columns and the llm_calls table appeared; version 1 parts
# read with those columns null.
# 3: trials gained block and started_order; version 2 parts read with them null.
# 4: proposals gained memory_level, memory_earlier and memory_knob; memory_verdict became
# repeat | revisit | sweep-step | new (older parts say new | exact | structural | text | embedding).
# 5: trials gained ray_node_id, node_ip, hostname, gpu_ids and accelerator (where the trial ran);
# version 4 parts read with them null.
SCHEMA_VERSION = 5
MAX_RETRY_S = 30.0  # longest wait between flushes while storage is down
COMPACT_AT = 16  # parts of one table that are merged into one at the end of a session
log = logging.getLogger("arborist.ledger")
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

PLACEMENT_COLUMNS = ("ray_node_id", "node_ip", "hostname", "gpu_ids", "accelerator")

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
        ("sandbox", pa.string()),  # the containment the trial ran under: bwrap, none ("" before it was recorded)
        *[(name, pa.string()) for name in PLACEMENT_COLUMNS],  # where it ran (docs/ledger.md)
        ("log_tail", pa.string()),
        ("reports", pa.string()),  # JSON list of ARBORIST_REPORT payloads
        *_FP_FIELDS,
        ("block", pa.int64()),  # the block it ran in (0: the baseline's own seeds)
        ("started_order", pa.int64()),  # trials the campaign had dispatched when it started
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
        ("memory_verdict", pa.string()),  # repeat | revisit | sweep-step | new
        ("memory_level", pa.string()),  # how the earlier one was found: exact | claims | structure | text | embedding
        ("memory_earlier", pa.string()),  # the proposal it repeats or revisits, or its sweep's latest step
        ("memory_knob", pa.string()),  # a sweep step's knob
        ("memory_score", pa.float64()),  # the similarity behind the verdict
        ("memory_nearest", pa.string()),  # the closest earlier proposal, repeated or not
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


def open_filesystem(uri: str, s3: S3Config | None = None) -> tuple[pafs.FileSystem, str]:
    try:
        return open_storage(uri, s3)
    except StorageError as exc:
        raise LedgerError(str(exc)) from exc


class Ledger:
    def __init__(
        self,
        uri: str,
        wal_path: Path,
        *,
        flush_rows: int = 256,
        flush_interval_s: float = 5.0,
        s3: S3Config | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.uri = uri
        self._fs, self._root = open_filesystem(uri, s3)
        self._local = isinstance(self._fs, pafs.LocalFileSystem)
        self._warn = warn or (lambda message: log.warning("%s", message))
        self._failures = 0  # flushes in a row that storage refused
        self._retry_at = 0.0
        self._wal_path = wal_path
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._buffer: list[Event] = []
        self._encoded: dict[int, str] = {}  # seq -> the payload's JSON, from the journal
        self._last_flush = time.monotonic()
        wal_path.parent.mkdir(parents=True, exist_ok=True)
        self._fs.create_dir(self._root, recursive=True)
        self._wal = open(wal_path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._buffer = self._wal_events()

    # ----- writing -----------------------------------------------------------------------
    def append(self, event: Event) -> None:
        # The payload is encoded once: the journal line and the events part share it.
        data = json.dumps(event.data, default=str)
        self._wal.write(f'{{"seq": {event.seq}, "ts": {json.dumps(event.ts)}, "type": {json.dumps(event.type)}, '
                        f'"data": {data}}}\n')
        self._wal.flush()
        os.fsync(self._wal.fileno())
        self._buffer.append(event)
        self._encoded[event.seq] = data

    def due(self) -> bool:
        now = time.monotonic()
        return bool(self._buffer) and now >= self._retry_at and (
            len(self._buffer) >= self._flush_rows or now - self._last_flush >= self._flush_interval_s
        )

    @property
    def pending(self) -> int:
        """Events in the journal not yet in Parquet."""
        return len(self._buffer)

    def flush(
        self, nodes: list[dict[str, Any]] | None = None, trials: Mapping[str, TrialRecord] | None = None
    ) -> bool:
        """Write buffered events (and the rows derived from them) as Parquet parts.

        `trials` (the tree's records) gives each finished trial's block and dispatch order, which
        its `trial_finished` event does not carry; without it those columns are null.

        Storage that does not answer (an S3 outage) loses nothing: the events stay in the
        fsync'd journal and the buffer, a warning says so, and the next flush retries after a
        backoff. Returns whether everything was written.
        """
        try:
            self._flush(nodes, trials)
        except (OSError, pa.ArrowException) as exc:
            self._failures += 1
            delay = min(MAX_RETRY_S, 2.0 ** self._failures)
            self._retry_at = time.monotonic() + delay
            self._warn(
                f"storage {self.uri} is not answering ({str(exc).splitlines()[0][:200]}); {len(self._buffer)} "
                f"events are safe in {self._wal_path} and will be written when it is back (retry in {delay:.0f} s)"
            )
            return False
        if self._failures:
            self._warn(f"storage {self.uri} is answering again; the buffered events are written")
        self._failures, self._retry_at = 0, 0.0
        return True

    def _flush(
        self, nodes: list[dict[str, Any]] | None, trials: Mapping[str, TrialRecord] | None = None
    ) -> None:
        if self._buffer:
            events = sorted(self._buffer, key=lambda e: e.seq)
            name = f"part-{events[0].seq:012d}-{events[-1].seq:012d}.parquet"
            for table_name, table in tables_of(events, trials or {}, self._encoded).items():
                self._write_table(f"{table_name}/{name}", table)
        if nodes is not None:
            self._write("nodes.parquet", nodes, NODE_SCHEMA)
        if self._buffer:
            # Only now is the journal's content safe in Parquet.
            self._wal.truncate(0)
            self._wal.seek(0)
            self._buffer = []
            self._encoded = {}
        self._last_flush = time.monotonic()

    def close(
        self,
        nodes: list[dict[str, Any]] | None = None,
        wait_s: float = 60.0,
        trials: Mapping[str, TrialRecord] | None = None,
    ) -> None:
        """Flush, waiting up to wait_s for storage that is down; compact small parts."""
        deadline = time.monotonic() + wait_s
        while not self.flush(nodes, trials):
            if time.monotonic() >= deadline:
                self._wal.close()
                raise LedgerError(
                    f"storage {self.uri} is still not answering; {len(self._buffer)} events are safe in "
                    f"{self._wal_path}. Run `arborist resume` when it is back: they are written first."
                )
            time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))
        try:
            self.compact()
        except (OSError, pa.ArrowException) as exc:
            self._warn(f"compaction of {self.uri} skipped ({exc}); the ledger is complete without it")
        self._wal.close()

    def compact(self, min_parts: int = COMPACT_AT) -> int:
        """Merge each table's parts into one when there are at least min_parts; returns merged tables.

        The merged part is written before the small ones are deleted, and readers drop rows seen
        twice (by event seq), so a crash in between loses and duplicates nothing.
        """
        merged = 0
        for table_name in TABLES:
            parts = _parts(self._fs, f"{self._root}/{table_name}")
            if len(parts) < min_parts:
                continue
            table = _dedupe(pa.concat_tables([_read_part(self._fs, p) for p in parts], promote_options="default"))
            first = parts[0].rsplit("/", 1)[1].split("-")[1]
            last = parts[-1].rsplit("/", 1)[1].split("-")[2].split(".")[0]
            name = f"{table_name}/part-{first}-{last}.parquet"
            self._write_table(name, _conform(table, SCHEMAS[table_name]))
            target = f"{self._root}/{name}"
            for part in parts:
                if part != target:
                    self._fs.delete_file(part)
            merged += 1
        return merged

    def _write(self, relpath: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        self._write_table(relpath, pa.Table.from_pylist(rows, schema=schema))

    def _write_table(self, relpath: str, table: pa.Table) -> None:
        path = f"{self._root}/{relpath}"
        if not self._local:
            pq.write_table(table, path, filesystem=self._fs)  # one PUT: an object appears whole or not at all
            return
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
        return _conform(_read_part(fs, path), schema)
    parts = [_read_part(fs, p) for p in _parts(fs, f"{root}/{table}")]
    if not parts:
        return schema.empty_table()
    return _conform(_dedupe(pa.concat_tables(parts, promote_options="default")), schema)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with every column of the current schema, in its order: parts written before a
    column was added read with that column null, so readers never meet a missing column."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type))
            continue
        column = table.column(field.name)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _dedupe(table: pa.Table) -> pa.Table:
    """Rows of one event once: a compaction cut short by a crash leaves them in two parts."""
    key = "seq" if "seq" in table.column_names else "event_seq" if "event_seq" in table.column_names else None
    if key is None or table.num_rows == 0:
        return table
    _, first = np.unique(table.column(key).to_numpy(zero_copy_only=False), return_index=True)
    if len(first) == table.num_rows:
        return table
    return table.take(pa.array(np.sort(first)))


def _read_part(fs: pafs.FileSystem, path: str) -> pa.Table:
    try:
        table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LedgerError(
            f"ledger file {path} is unreadable: corrupt or truncated ({str(exc).splitlines()[0][:200]}). Nothing "
            "was changed or deleted. Restore it from a copy; an events part is needed to rebuild the campaign, "
            "the other tables are derived from the events."
        ) from exc
    raw = (table.schema.metadata or {}).get(b"arborist_schema_version", b"")
    try:
        version = int(raw.decode() or "0")
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION or version < 1:
        what = f"schema version {raw.decode(errors='replace') or 'missing'}"
        raise LedgerError(
            f"ledger file {path} has {what}; this arborist reads versions 1 to {SCHEMA_VERSION}. "
            + ("Upgrade arborist to read it." if version > SCHEMA_VERSION else
               "It was not written by arborist; point `storage:` at a ledger folder of its own.")
        )
    return table


def load_events(fs: pafs.FileSystem, root: str, wal_path: Path | None) -> list[Event]:
    table = read_table(fs, root, "events")
    # Column by column: a million rows as Python dicts would cost more than the JSON itself.
    columns = (table.column(name).to_pylist() for name in ("seq", "ts", "type", "data"))
    loads = json.loads
    with paused_gc():
        events = {seq: Event(seq, ts, type_, loads(data)) for seq, ts, type_, data in zip(*columns, strict=True)}
    for event in read_wal(wal_path) if wal_path else []:
        events.setdefault(event.seq, event)
    return [events[s] for s in sorted(events)]


# ----- row builders ------------------------------------------------------------------------
def tables_of(
    events: list[Event], trials: Mapping[str, TrialRecord], encoded: dict[int, str] | None = None
) -> dict[str, pa.Table]:
    """The rows a run of events (in seq order) adds to each table (TABLES), tables without rows
    left out: what a flush writes as parts, and what the reader builds from the journal.
    `encoded` holds payloads already encoded as JSON, by seq."""
    out = {"events": _event_table(events, encoded or {})}
    finished = [e for e in events if e.type == "trial_finished"]
    if finished:
        out["trials"] = _trial_table(finished, trials)
    proposals = [_proposal_row(e) for e in events if e.type == "proposal"]
    if proposals:
        out["proposals"] = pa.Table.from_pylist(proposals, schema=PROPOSAL_SCHEMA)
    calls = [_llm_call_row(e) for e in events if e.type == "llm_call"]
    if calls:
        out["llm_calls"] = pa.Table.from_pylist(calls, schema=LLM_CALL_SCHEMA)
    return out


def _event_table(events: list[Event], encoded: dict[int, str]) -> pa.Table:
    """The events part, built column by column: per-row dicts cost more than the Parquet write."""
    seqs, stamps, types, node_ids, trial_ids, payloads = [], [], [], [], [], []
    dumps = json.dumps
    for event in events:
        data = event.data
        result = data.get("result") or {}
        seqs.append(event.seq)
        stamps.append(event.ts)
        types.append(event.type)
        node_ids.append(data.get("node_id") or result.get("node_id"))
        trial_ids.append(data.get("trial_id") or result.get("trial_id"))
        payload = encoded.get(event.seq)
        payloads.append(payload if payload is not None else dumps(data, default=str))
    return pa.Table.from_arrays(
        [pa.array(seqs, pa.int64()), pa.array(stamps, pa.float64()), pa.array(types, pa.string()),
         pa.array(node_ids, pa.string()), pa.array(trial_ids, pa.string()), pa.array(payloads, pa.string())],
        schema=EVENT_SCHEMA,
    )


_FP_NAMES = tuple(name.removeprefix("fp_") for name, _ in _FP_FIELDS if name.startswith("fp_"))


@functools.lru_cache(maxsize=256)
def _fingerprint_columns(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The fp_* columns and key of a fingerprint, in _FP_FIELDS order; a campaign has few."""
    fp = Fingerprint.from_dict({k: v for k, v in zip(_FP_NAMES, values, strict=True) if v is not None})
    columns = {"fingerprint_key": fp.comparability_key(), **{f"fp_{k}": v for k, v in fp.to_dict().items()}}
    return tuple(columns[name] for name, _ in _FP_FIELDS)


def _fingerprint_values(raw: dict[str, Any]) -> tuple[Any, ...]:
    values = tuple(map(raw.get, _FP_NAMES))
    try:
        hash(values)
    except TypeError:  # a hand-written fingerprint with a list or a map in it: not a fingerprint field
        values = tuple(None if isinstance(v, dict | list) else v for v in values)
    return values


def _trial_table(events: list[Event], records: Mapping[str, TrialRecord]) -> pa.Table:
    """One row per finished trial, column by column (a list comprehension per column is several
    times faster than a dict per row); fingerprint columns come from the few distinct ones, the
    block and dispatch order from the tree's record of the trial (null without one)."""
    results = [event.data["result"] for event in events]
    placed = [records.get(r["trial_id"]) for r in results]
    started = [r.get("started_at") for r in results]
    finished = [r.get("finished_at") for r in results]
    columns: dict[str, list[Any]] = {
        "trial_id": [r["trial_id"] for r in results],
        "node_id": [r["node_id"] for r in results],
        "seed": [r["seed"] for r in results],
        "state": [r["state"] for r in results],
        "failure_stage": [r.get("failure_stage") for r in results],
        "message": [r.get("message", "") for r in results],
        "metrics": [list((r.get("metrics") or {}).items()) for r in results],
        "self_reported": [bool(r.get("self_reported")) for r in results],
        "started_at": started,
        "finished_at": finished,
        "duration_s": [max(0.0, (f or 0) - (s or 0)) for s, f in zip(started, finished, strict=True)],
        "worker": [r.get("worker", "") for r in results],
        "sandbox": [r.get("sandbox", "") for r in results],
        **{name: [(r.get("placement") or {}).get(name) for r in results] for name in PLACEMENT_COLUMNS},
        "log_tail": [r.get("log_tail", "") for r in results],
        "reports": [json.dumps(r["reports"]) if r.get("reports") else "[]" for r in results],
        "block": [None if p is None else p.block for p in placed],
        "started_order": [None if p is None else p.started_order for p in placed],
        "event_seq": [event.seq for event in events],
    }
    distinct: dict[tuple[Any, ...], int] = {}
    which = [distinct.setdefault(_fingerprint_values(r.get("fingerprint") or {}), len(distinct)) for r in results]
    fp_rows = [_fingerprint_columns(values) for values in distinct]
    indices = pa.array(which, pa.int64())
    arrays = {name: pa.array(values, TRIAL_SCHEMA.field(name).type) for name, values in columns.items()}
    for i, (name, type_) in enumerate(_FP_FIELDS):
        arrays[name] = pa.array([row[i] for row in fp_rows], type_).take(indices)
    return pa.Table.from_arrays([arrays[name] for name in TRIAL_SCHEMA.names], schema=TRIAL_SCHEMA)


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
        "memory_level": (data.get("memory") or {}).get("level") or None,
        "memory_earlier": (data.get("memory") or {}).get("earlier"),
        "memory_knob": (data.get("memory") or {}).get("knob") or None,
        "memory_score": (data.get("memory") or {}).get("score"),
        "memory_nearest": (data.get("memory") or {}).get("nearest"),
        "event_seq": event.seq,
    }


def _llm_call_row(event: Event) -> dict[str, Any]:
    data = event.data
    row = {name: data.get(name) for name in LLM_CALL_SCHEMA.names}
    row["event_seq"] = event.seq
    return row
