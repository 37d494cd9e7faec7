"""A real multi-node Ray cluster on loopback: one head and N worker nodes started with `ray start`.

Each node is its own set of Ray processes (raylet, agents, workers) with its own temp folder,
ports and environment, as pods of a KubeRay cluster would be; they only share the machine. The
test session's own local Ray (tests/conftest.py) and anyone else's Ray on the machine are left
alone: a node's processes are found by a marker in their environment, which Ray passes from
`ray start` to every process of that node, and only those are ever stopped.

Tests drive the cluster from subprocesses with `cluster.env()` (RAY_ADDRESS and the auth
settings), never with ray.init in the test process, which already runs the session's Ray.

    with LocalCluster(tmp, [Worker(cpus=2, gpus=2), Worker(cpus=2, gpus=2)]) as cluster:
        subprocess.run([PYTHON, "-m", "orchestrator.cli", "run", cfg], env=cluster.env())
        cluster.kill_worker(0)
        cluster.start_worker(0)
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

PYTHON = sys.executable
RAY = str(Path(sys.executable).with_name("ray"))  # the venv's Ray, the version the code under test imports
HOST = "127.0.0.1"
MARKER = "ARBORIST_TEST_RAY_NODE"  # in every process of a node: "<cluster id>/<node name>"
START_S = 120.0  # a backstop for `ray start` and for nodes to register, on a busy 2-core machine
OBJECT_STORE_BYTES = 100 << 20  # small: many nodes share one machine's /dev/shm
START_ATTEMPTS = 3
WORKER_PORTS = 200  # ports per node for its Ray worker processes, in a range no other node uses


@dataclass(frozen=True)
class Worker:
    """A worker node: the CPUs and logical GPUs Ray schedules on it, and environment variables
    for all of its processes (what a pod's env would set: a scratch folder, a PATH)."""

    cpus: int = 2
    gpus: int = 0
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Node:
    name: str
    temp_dir: Path
    ports: dict[str, int]
    cpus: int
    gpus: int
    env: dict[str, str]
    node_id: str = ""


class ClusterError(RuntimeError):
    """The cluster could not be started; the message carries Ray's output."""


class LocalCluster:
    """Start with `with` (or start()/stop()); `address`, `dashboard_url`, `env()` to reach it.

    `head_cpus` is 0 by default: trials run on the workers only, as on a KubeRay cluster whose
    head pod keeps the volume and the keys. `auth=True` turns on Ray's token authentication
    with a token of this cluster's own (never ~/.ray/auth_token, which other Rays read).
    """

    def __init__(
        self, root: Path, workers: Sequence[Worker], *, auth: bool = False, head_cpus: int = 0,
        head_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.auth_token = secrets.token_hex(32) if auth else ""
        self._id = secrets.token_hex(6)
        # Ray's unix sockets live under each node's temp folder and their paths must stay under
        # ~107 bytes: a pytest tmp_path is too long, so temp folders go under a short /tmp name.
        self._temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self._ranges = _port_ranges(1 + len(workers))
        self.head = _Node("head", self._temp / "head", {}, head_cpus, 0, dict(head_env or {}))
        self.workers = [
            _Node(f"worker{i}", self._temp / f"worker{i}", {}, w.cpus, w.gpus, dict(w.env))
            for i, w in enumerate(workers)
        ]
        for node, worker_ports in zip([self.head, *self.workers], self._ranges, strict=True):
            node.ports = {"min_worker": worker_ports[0], "max_worker": worker_ports[1]}
            self._pick_ports(node)

    @property
    def address(self) -> str:
        """The GCS address, what RAY_ADDRESS and `ray start --address` take."""
        return f"{HOST}:{self.head.ports['gcs']}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard and job server, what `ray job submit --address` takes."""
        return f"http://{HOST}:{self.head.ports['dashboard']}"

    # ----- the cluster as a whole ---------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._ray_start(self.head)
            for node in self.workers:
                self._ray_start(node)
            self._learn_node_ids()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every process of this cluster's nodes, nothing else; their logs are kept under
        `root`/ray-logs/<node> for a failure's post-mortem."""
        for node in [*self.workers, self.head]:
            _kill(self._processes(node))
        for node in [self.head, *self.workers]:
            logs = node.temp_dir / "session_latest" / "logs"
            if logs.is_dir():
                shutil.copytree(logs, self.root / "ray-logs" / node.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.sock", "old"), ignore_dangling_symlinks=True)
        shutil.rmtree(self._temp, ignore_errors=True)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a process that uses this cluster (a driver, `ray job submit`): this
        process's own, without any Ray settings of its own, and with the cluster's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != MARKER}
        env["RAY_ADDRESS"] = self.address
        env.update(self._auth_env())
        env.update(extra or {})
        return env

    def node_ids(self) -> dict[str, str]:
        """Ray's node id of each node by name ("head", "worker0", ...): where the ledger says a trial ran."""
        return {node.name: node.node_id for node in [self.head, *self.workers]}

    # ----- one worker node -----------------------------------------------------------------
    def kill_worker(self, index: int) -> int:
        """SIGKILL every process of worker `index` (raylet, agents, trial workers), as a machine or
        pod that dies; returns how many processes it killed."""
        processes = self._processes(self.workers[index])
        _kill(processes)
        return len(processes)

    def start_worker(self, index: int) -> str:
        """Start worker `index` again (after kill_worker); it joins as a new Ray node, whose id
        this returns."""
        node = self.workers[index]
        _kill(self._processes(node))
        node.node_id = ""
        # Fresh ports, as a new pod would have: until Ray's health checks notice the old node's
        # death, it is still listed alive under its node manager port.
        self._pick_ports(node)
        self._ray_start(node)
        self._learn_node_ids()
        return node.node_id

    def processes(self, index: int) -> list[int]:
        """The pids of worker `index`'s processes."""
        return self._processes(self.workers[index])

    # ----- how -----------------------------------------------------------------------------
    def _pick_ports(self, node: _Node) -> None:
        names = ["node_manager", "object_manager", "agent_grpc", "agent_listen", "metrics", "runtime_env_agent"]
        if node is self.head:
            names += ["gcs", "dashboard", "client"]
        node.ports |= {name: _free_port() for name in names}

    def _auth_env(self) -> dict[str, str]:
        # RAY_AUTH_MODE is always explicit: unset, `ray start --head` turns token authentication
        # on by itself when ~/.ray/auth_token exists.
        if not self.auth_token:
            return {"RAY_AUTH_MODE": "disabled"}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.auth_token}

    def _node_env(self, node: _Node) -> dict[str, str]:
        env = self.env(node.env)
        del env["RAY_ADDRESS"]
        env[MARKER] = f"{self._id}/{node.name}"
        return env

    def ray_start_argv(self, name: str) -> list[str]:
        """The `ray start` command of node `name` ("head", "worker0", ...), as docs/cluster.md
        shows it to users."""
        return self._argv(next(node for node in [self.head, *self.workers] if node.name == name))

    def _ray_start(self, node: _Node) -> None:
        # A port found free can be taken before Ray binds it (other Rays run on the machine): a
        # failed start is tried again on fresh ports.
        for attempt in range(START_ATTEMPTS):
            proc = subprocess.run(self._argv(node), env=self._node_env(node), capture_output=True, text=True,
                                  timeout=START_S, check=False)
            if proc.returncode == 0:
                return
            _kill(self._processes(node))
            if attempt + 1 < START_ATTEMPTS:
                self._pick_ports(node)
        raise ClusterError(f"`ray start` of {node.name} failed {START_ATTEMPTS} times (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def _argv(self, node: _Node) -> list[str]:
        p = node.ports
        argv = [
            RAY, "start", "--node-ip-address", HOST, "--temp-dir", str(node.temp_dir),
            "--num-cpus", str(node.cpus), "--num-gpus", str(node.gpus),
            "--node-manager-port", str(p["node_manager"]), "--object-manager-port", str(p["object_manager"]),
            "--min-worker-port", str(p["min_worker"]), "--max-worker-port", str(p["max_worker"]),
            "--dashboard-agent-grpc-port", str(p["agent_grpc"]),
            "--dashboard-agent-listen-port", str(p["agent_listen"]),
            "--metrics-export-port", str(p["metrics"]), "--runtime-env-agent-port", str(p["runtime_env_agent"]),
            "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
        ]
        if node is self.head:
            argv += [
                "--head", "--port", str(p["gcs"]), "--ray-client-server-port", str(p["client"]),
                "--include-dashboard", "true", "--dashboard-host", HOST, "--dashboard-port", str(p["dashboard"]),
            ]
        else:
            argv += ["--address", self.address]
        return argv

    def _learn_node_ids(self) -> None:
        """Wait until every node is alive in the cluster, and read their ids (by node manager port)."""
        script = (
            "import json, os, sys, time, ray\n"
            "ray.init(address=os.environ['RAY_ADDRESS'], logging_level='ERROR', log_to_driver=False)\n"
            "want = set(json.loads(sys.argv[1]))\n"
            "deadline = time.monotonic() + float(sys.argv[2])\n"
            "while True:\n"
            "    alive = {n['NodeManagerPort']: n['NodeID'] for n in ray.nodes() if n['Alive']}\n"
            "    if want <= set(alive) or time.monotonic() > deadline:\n"
            "        print(json.dumps(alive)); break\n"
            "    time.sleep(0.2)\n"
        )
        nodes = [self.head, *self.workers]
        ports = [node.ports["node_manager"] for node in nodes]
        proc = subprocess.run(
            [PYTHON, "-c", script, json.dumps(ports), str(START_S)], env=self.env(), capture_output=True,
            text=True, timeout=START_S + 60, check=False,
        )
        if proc.returncode != 0:
            raise ClusterError(f"could not list the cluster's nodes (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        alive = {int(port): node_id for port, node_id in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
        missing = [node.name for node in nodes if node.ports["node_manager"] not in alive]
        if missing:
            raise ClusterError(f"nodes {missing} did not join the cluster within {START_S:.0f} s")
        for node in nodes:
            node.node_id = alive[node.ports["node_manager"]]

    def _processes(self, node: _Node) -> list[int]:
        """The pids of `node`'s processes: those whose environment carries its marker, and their
        descendants (a trial's steps, whose environment is built from nothing)."""
        wanted = f"{MARKER}={self._id}/{node.name}".encode()
        marked: set[int] = set()
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            try:
                children.setdefault(_parent(pid), []).append(pid)
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if wanted in f.read().split(b"\0"):
                        marked.add(pid)
            except (OSError, ValueError, IndexError):  # gone, or not ours to read (a setuid bwrap)
                continue
        found: set[int] = set()
        todo = list(marked)
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo += children.get(pid, [])
        return sorted(found)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _free_port() -> int:
    """A port the kernel says is free now (Ray binds it moments later)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_ranges(count: int) -> list[tuple[int, int]]:
    """`count` disjoint ranges of WORKER_PORTS free ports, below the kernel's ephemeral range so
    that _free_port's picks never fall inside them."""
    for _ in range(50):
        base = random.randrange(12000, 30000 - count * WORKER_PORTS)
        ranges = [(base + i * WORKER_PORTS, base + (i + 1) * WORKER_PORTS - 1) for i in range(count)]
        if all(_bindable(port) for port in range(base, base + count * WORKER_PORTS)):
            return ranges
    raise ClusterError("found no free range of ports for the nodes' Ray workers")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def fake_nvidia_smi(bin_dir: Path, model: str, count: int, *, driver: str = "550.54.15", cuda: str = "12.4") -> Path:
    """Write an `nvidia-smi` into `bin_dir` that lists `count` GPUs of `model`, for nodes whose GPUs
    are logical (`ray start --num-gpus`): put `bin_dir` first on the node's PATH and the trials'
    fingerprints read these GPUs as they would real ones. Returns `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    rows = "".join(f'  echo "{i}, GPU-{model.replace(" ", "-")}-{i}, {model}, {driver}"\n' for i in range(count))
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=index,uuid,name,driver_version" ]; then\n'
        f"{rows}"
        f'else echo "| NVIDIA-SMI {driver}   Driver Version: {driver}   CUDA Version: {cuda} |"; fi\n'
    )
    tool.chmod(0o755)
    return bin_dir
