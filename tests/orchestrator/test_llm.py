"""The litellm client against a scripted OpenAI-compatible server over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.config import LLMConfig
from orchestrator.proposers.llm import LLMClient, LLMRejected, LLMUnavailable, SpendCapReached
from tests.llm_server import ScriptedLLMServer, Step

KEY = "sk-test-SENTINEL-123"
MESSAGES = [{"role": "user", "content": "propose something"}]


def client(server: ScriptedLLMServer, sleeps: list[float] | None = None, **overrides: Any) -> LLMClient:
    max_usd = overrides.pop("max_usd", None)
    config = LLMConfig.model_validate({
        "model": "openai/scripted", "api_base": server.url, "api_key_env": "TEST_KEY", "max_retries": 2,
        "backoff_s": 1.0, "timeout_s": 5, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
        **overrides,
    })
    record = sleeps if sleeps is not None else []
    return LLMClient(config, max_usd=max_usd, sleep=record.append, environ={"TEST_KEY": KEY})


def test_a_reply_is_costed_from_its_tokens(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(content='{"proposals": []}', prompt_tokens=1000, completion_tokens=200))
    llm = client(llm_server)
    reply = llm.complete(MESSAGES, purpose="test")
    assert reply.text == '{"proposals": []}'
    call = reply.call
    assert (call.prompt_tokens, call.completion_tokens, call.attempts, call.ok) == (1000, 200, 1, True)
    assert call.cost_usd == pytest.approx(1000 * 1e-6 + 200 * 2e-6) == llm.spent_usd
    assert llm.drain_calls() == [call] and llm.drain_calls() == []
    request = llm_server.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"  # the key goes to the provider, and only there
    assert request["body"]["response_format"] == {"type": "json_object"}


def test_retryable_errors_are_retried_with_backoff(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(status=429), Step(status=500), Step(content="ok"))
    sleeps: list[float] = []
    reply = client(llm_server, sleeps).complete(MESSAGES, purpose="test")
    assert reply.text == "ok" and reply.call.attempts == 3
    assert sleeps == [1.0, 2.0]  # exponential backoff, no real waiting in the test


def test_retry_after_is_honoured(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(status=429, retry_after=7), Step(content="ok"))
    sleeps: list[float] = []
    client(llm_server, sleeps).complete(MESSAGES, purpose="test")
    assert sleeps == [7.0]


def test_a_provider_that_stays_down_is_unavailable(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(status=500)
    llm = client(llm_server)
    with pytest.raises(LLMUnavailable, match=r"openai/scripted at http://127\.0\.0\.1:\d+/v1 failed 3 times"):
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 3
    (call,) = llm.drain_calls()
    assert not call.ok and call.attempts == 3 and call.cost_usd == 0


def test_a_bad_key_is_not_retried_and_never_shown(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(status=401))
    llm = client(llm_server)
    with pytest.raises(LLMRejected, match=r"Check the key in \$TEST_KEY") as raised:
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 1
    (call,) = llm.drain_calls()
    for text in (str(raised.value), repr(raised.value), str(call.to_dict()), repr(llm)):
        assert KEY not in text


def test_an_echoed_key_is_redacted(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(status=400, raw='{"error": {"message": "bad request for key ' + KEY + '"}}'))
    llm = client(llm_server)
    with pytest.raises(LLMRejected) as raised:
        llm.complete(MESSAGES, purpose="test")
    assert KEY not in str(raised.value) and "***" in str(raised.value)
    assert KEY not in str(llm.drain_calls()[0].to_dict())


def test_a_slow_provider_times_out(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(content="late", delay_s=2.0)
    llm = client(llm_server, timeout_s=0.5, max_retries=1)
    with pytest.raises(LLMUnavailable, match="failed 2 times"):
        llm.complete(MESSAGES, purpose="test")


def test_a_garbage_body_is_an_error_not_a_reply(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(raw="<html>502 upstream</html>")
    llm = client(llm_server, max_retries=1)
    with pytest.raises((LLMUnavailable, LLMRejected)):
        llm.complete(MESSAGES, purpose="test")


def test_the_spend_cap_is_never_crossed(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(content="ok", completion_tokens=4000)
    llm = client(llm_server, max_usd=0.004)
    llm.complete(MESSAGES, purpose="first")
    first = llm_server.requests[0]["body"]["max_tokens"]
    assert first < 4096  # lowered so that the worst case fits the cap
    with pytest.raises(SpendCapReached, match=r"raise budget\.max_llm_usd"):
        for _ in range(10):
            llm.complete(MESSAGES, purpose="more")
    assert llm.spent_usd <= 0.004
    asked = len(llm_server.requests)
    with pytest.raises(SpendCapReached):
        llm.complete(MESSAGES, purpose="after the cap")
    assert len(llm_server.requests) == asked  # no request once the cap is reached


def test_a_missing_key_variable_is_named(llm_server: ScriptedLLMServer) -> None:
    config = LLMConfig(model="openai/scripted", api_base=llm_server.url, api_key_env="NOT_SET_ANYWHERE",
                       input_cost_per_token=0, output_cost_per_token=0)
    with pytest.raises(LLMRejected, match=r"NOT_SET_ANYWHERE .* is not set"):
        LLMClient(config, environ={}).complete(MESSAGES, purpose="test")
    assert not llm_server.requests


def test_an_unknown_price_is_refused_up_front() -> None:
    with pytest.raises(LLMRejected, match=r"set llm\.input_cost_per_token"):
        LLMClient(LLMConfig(model="openai/no-such-model-anywhere"))


def test_a_known_model_is_priced_from_litellm() -> None:
    llm = LLMClient(LLMConfig(model="openai/gpt-4o-mini"))
    assert llm.remaining_usd() is None


def test_embeddings(llm_server: ScriptedLLMServer) -> None:
    llm = client(llm_server)
    vectors = llm.embed(["add dropout", "add dropout", "use adamw"], model="openai/embedder")
    assert len(vectors) == 3 and vectors[0] == vectors[1] != vectors[2]
    (call,) = llm.drain_calls()
    assert call.ok and call.model == "openai/embedder" and call.prompt_tokens == 6
