"""Shared fixtures: one local Ray for the whole session (ray.init takes seconds)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.llm_server import ScriptedLLMServer
from tests.s3_server import SeaweedS3


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    from cluster.runtime import connect

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    connect(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    """A scripted OpenAI-compatible server on loopback (tests/llm_server.py)."""
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server on loopback for the session (tests/s3_server.py)."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
