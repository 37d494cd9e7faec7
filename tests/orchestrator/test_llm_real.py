"""Opt-in: one small call to a real provider (or a real local server). docs/llm.md.

Set ARBORIST_TEST_LLM_MODEL (a litellm model string) and its key in the provider's usual
variable (or ARBORIST_TEST_LLM_KEY_ENV naming another); optionally ARBORIST_TEST_LLM_API_BASE
(a local server: a model litellm has no price for is then free) and
ARBORIST_TEST_EMBEDDING_MODEL. Spends at most $0.05.
"""

from __future__ import annotations

import os

import pytest

from orchestrator.config import LLMConfig
from orchestrator.proposers.drafting import parse_proposals
from orchestrator.proposers.llm import LLMClient, LLMRejected

MODEL = os.environ.get("ARBORIST_TEST_LLM_MODEL")
API_BASE = os.environ.get("ARBORIST_TEST_LLM_API_BASE")
MAX_USD = 0.05
pytestmark = pytest.mark.skipif(
    not MODEL, reason="set ARBORIST_TEST_LLM_MODEL (and its key) to run against a real provider"
)


def _client() -> tuple[LLMClient, bool]:
    """The client, and whether its model is priced (a local server's model may be free)."""
    assert MODEL is not None
    config = LLMConfig(model=MODEL, api_base=API_BASE, api_key_env=os.environ.get("ARBORIST_TEST_LLM_KEY_ENV"),
                       max_tokens=300, max_retries=2, timeout_s=60)
    try:
        return LLMClient(config, max_usd=MAX_USD), True
    except LLMRejected:
        if API_BASE is None:
            raise
        free = config.model_copy(update={"input_cost_per_token": 0.0, "output_cost_per_token": 0.0})
        return LLMClient(free, max_usd=MAX_USD), False


def test_a_real_provider_returns_parseable_proposals() -> None:
    llm, priced = _client()
    reply = llm.complete([
        {"role": "system", "content": 'Reply with only a JSON object {"proposals": [{"param": ..., "value": ...}]}.'},
        {"role": "user", "content": "Propose 2 learning rates to try for Adam on MNIST."},
    ], purpose="real provider check")
    items, problem = parse_proposals(reply.text)
    assert problem == "" and items
    call = reply.call
    assert call.ok and call.attempts >= 1 and call.prompt_tokens > 0 and call.completion_tokens > 0
    assert llm.spent_usd <= MAX_USD and (llm.spent_usd > 0 or not priced)
    assert llm.drain_calls() == [call]


@pytest.mark.skipif(not os.environ.get("ARBORIST_TEST_EMBEDDING_MODEL"), reason="no embedding model given")
def test_a_real_embedding() -> None:
    llm, _ = _client()
    vectors = llm.embed(["add dropout", "add dropout", "use AdamW"], model=os.environ["ARBORIST_TEST_EMBEDDING_MODEL"])
    assert len(vectors) == 3 and len(vectors[0]) > 8 and len(vectors[0]) == len(vectors[2])
    (call,) = llm.drain_calls()
    assert call.ok and call.prompt_tokens > 0
