"""Shared fixtures: one local Ray for the whole session (ray.init takes seconds)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.llm_server import ScriptedLLMServer


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
