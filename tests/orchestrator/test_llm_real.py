"""Opt-in: one call to a real provider. Set ARBORIST_TEST_LLM_MODEL (a litellm model string),
its key in the provider's usual variable (or ARBORIST_TEST_LLM_KEY_ENV naming another), and
optionally ARBORIST_TEST_LLM_API_BASE and ARBORIST_TEST_EMBEDDING_MODEL."""

from __future__ import annotations

import os

import pytest

from orchestrator.config import LLMConfig
from orchestrator.proposers.drafting import parse_proposals
from orchestrator.proposers.llm import LLMClient

MODEL = os.environ.get("ARBORIST_TEST_LLM_MODEL")
pytestmark = pytest.mark.skipif(
    not MODEL, reason="set ARBORIST_TEST_LLM_MODEL (and its key) to run against a real provider"
)


def _client() -> LLMClient:
    assert MODEL is not None
    config = LLMConfig(
        model=MODEL, api_base=os.environ.get("ARBORIST_TEST_LLM_API_BASE"),
        api_key_env=os.environ.get("ARBORIST_TEST_LLM_KEY_ENV"), max_tokens=300, max_retries=2,
    )
    return LLMClient(config, max_usd=0.05)


def test_a_real_provider_returns_parseable_proposals() -> None:
    llm = _client()
    reply = llm.complete([
        {"role": "system", "content": 'Reply with only a JSON object {"proposals": [{"param": ..., "value": ...}]}.'},
        {"role": "user", "content": "Propose 2 learning rates to try for Adam on MNIST."},
    ], purpose="real provider check")
    items, problem = parse_proposals(reply.text)
    assert problem == "" and items
    assert reply.call.ok and reply.call.prompt_tokens > 0 and 0 < llm.spent_usd <= 0.05


@pytest.mark.skipif(not os.environ.get("ARBORIST_TEST_EMBEDDING_MODEL"), reason="no embedding model given")
def test_a_real_embedding() -> None:
    vectors = _client().embed(["add dropout", "use AdamW"], model=os.environ["ARBORIST_TEST_EMBEDDING_MODEL"])
    assert len(vectors) == 2 and len(vectors[0]) > 8
