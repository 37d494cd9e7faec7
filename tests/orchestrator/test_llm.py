"""The litellm client against a scripted OpenAI-compatible server over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from orchestrator.config import LLMConfig
from orchestrator.proposers.llm import LLMClient, LLMError, LLMRejected, LLMUnavailable, SpendCapReached
from tests.llm_server import ScriptedLLMServer, Step

KEY = "sk-test-SENTINEL-123"
MESSAGES = [{"role": "user", "content": "propose something"}]
IN_PRICE, OUT_PRICE = 1e-6, 2e-6


def client(server: ScriptedLLMServer, sleeps: list[float] | None = None, **overrides: Any) -> LLMClient:
    max_usd = overrides.pop("max_usd", None)
    config = LLMConfig.model_validate({
        "model": "openai/scripted", "api_base": server.url, "api_key_env": "TEST_KEY", "max_retries": 2,
        "backoff_s": 1.0, "timeout_s": 5, "input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE,
        **overrides,
    })
    record = sleeps if sleeps is not None else []
    return LLMClient(config, max_usd=max_usd, sleep=record.append, environ={"TEST_KEY": KEY})


def chat_bodies(server: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]


# ----- replies and their records -----------------------------------------------------------
def test_a_reply_is_costed_from_its_tokens(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(content='{"proposals": []}', prompt_tokens=1000, completion_tokens=200))
    llm = client(llm_server)
    before = time.time()
    reply = llm.complete(MESSAGES, purpose="draft params")
    assert reply.text == '{"proposals": []}'
    call = reply.call
    assert (call.purpose, call.model, call.ok, call.error) == ("draft params", "openai/scripted", True, "")
    assert (call.prompt_tokens, call.completion_tokens, call.attempts) == (1000, 200, 1)
    assert before <= call.started_at <= time.time() and call.latency_s >= 0
    assert call.cost_usd == pytest.approx(1000 * IN_PRICE + 200 * OUT_PRICE) == llm.spent_usd
    assert call.to_dict()["cost_usd"] == call.cost_usd
    assert llm.drain_calls() == [call] and llm.drain_calls() == []
    request = llm_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"  # the key goes to the provider, and only there
    body = request["body"]
    assert body["response_format"] == {"type": "json_object"}
    assert (body["model"], body["messages"], body["temperature"], body["max_tokens"]) == (
        "scripted", MESSAGES, 0.7, 4096)


def test_json_mode_and_max_tokens_are_per_call(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(content="plain")
    llm = client(llm_server, max_tokens=1000)
    assert llm.complete(MESSAGES, purpose="t", json_object=False, max_tokens=100).text == "plain"
    llm.complete(MESSAGES, purpose="t", max_tokens=50_000)  # llm.max_tokens stays the ceiling
    first, second = chat_bodies(llm_server)
    assert "response_format" not in first and first["max_tokens"] == 100
    assert second["response_format"] == {"type": "json_object"} and second["max_tokens"] == 1000


def test_a_server_without_json_mode_is_asked_again_without_it(llm_server: ScriptedLLMServer) -> None:
    refusal = json.dumps({"error": {"message": "response_format is not supported", "type": "invalid_request_error"}})
    llm_server.script(Step(status=400, raw=refusal))
    llm_server.default = Step(content="{}")
    sleeps: list[float] = []
    llm = client(llm_server, sleeps)
    assert llm.complete(MESSAGES, purpose="t").call.attempts == 2
    llm.complete(MESSAGES, purpose="t")  # remembered: not asked for again
    assert ["response_format" in body for body in chat_bodies(llm_server)] == [True, False, False]
    assert sleeps == []


# ----- retries --------------------------------------------------------------------------------
def test_retryable_errors_are_retried_with_backoff(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(status=429), Step(status=500), Step(content="ok"))
    sleeps: list[float] = []
    llm = client(llm_server, sleeps)
    reply = llm.complete(MESSAGES, purpose="test")
    assert reply.text == "ok" and reply.call.attempts == 3 and reply.call.ok
    assert sleeps == [1.0, 2.0]  # backoff_s * 2**i, no real waiting in the test
    assert len(llm_server.requests) == 3


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(llm_server: ScriptedLLMServer, status: int) -> None:
    llm_server.script(Step(status=status), Step(content="ok"))
    assert client(llm_server).complete(MESSAGES, purpose="test").call.attempts == 2


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 7.0), (0.1, 1.0), (3600, 60.0)])
def test_retry_after_is_honoured_within_a_cap(
    llm_server: ScriptedLLMServer, retry_after: float, expected: float
) -> None:
    llm_server.script(Step(status=429, retry_after=retry_after), Step(content="ok"))
    sleeps: list[float] = []
    client(llm_server, sleeps).complete(MESSAGES, purpose="test")
    assert sleeps == [expected]  # at least the backoff, at most 60 s


def test_a_provider_that_stays_down_is_unavailable(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(status=500)
    sleeps: list[float] = []
    llm = client(llm_server, sleeps)
    with pytest.raises(LLMUnavailable, match=r"openai/scripted at http://127\.0\.0\.1:\d+/v1 failed 3 times") as raised:
        llm.complete(MESSAGES, purpose="test")
    assert "max_retries=2" in str(raised.value)
    assert len(llm_server.requests) == 3 and sleeps == [1.0, 2.0]
    (call,) = llm.drain_calls()
    assert not call.ok and call.attempts == 3 and call.cost_usd == 0 and "InternalServerError" in call.error
    assert llm.spent_usd == 0


def test_an_unreachable_server_is_unavailable(llm_server: ScriptedLLMServer) -> None:
    llm = client(llm_server, max_retries=1)
    llm_server.stop()  # nothing listens on that port any more
    with pytest.raises(LLMUnavailable, match="cannot be reached"):
        llm.complete(MESSAGES, purpose="test")
    assert llm.drain_calls()[0].attempts == 2


def test_a_slow_provider_times_out(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(content="late", delay_s=1.5)
    sleeps: list[float] = []
    llm = client(llm_server, sleeps, timeout_s=0.3, max_retries=1)
    with pytest.raises(LLMUnavailable, match=r"failed 2 times.*Timeout.*raise it"):
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 2 and sleeps == [1.0]


# ----- garbage ----------------------------------------------------------------------------------
def test_a_garbage_body_is_retried_then_unavailable(llm_server: ScriptedLLMServer) -> None:
    # Decided: an unparseable 200 body is a transient server fault (a proxy's error page), so it
    # is retried; if it persists, the message points at llm.api_base (not an OpenAI endpoint?).
    llm_server.default = Step(raw="<html>502 upstream</html>")
    llm = client(llm_server, max_retries=1)
    with pytest.raises(LLMUnavailable, match=r"failed 2 times.*not an OpenAI-compatible reply: check llm\.api_base"):
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 2


def test_a_garbage_body_then_a_reply_recovers(llm_server: ScriptedLLMServer) -> None:
    llm_server.script(Step(raw="not json"), Step(status=502, raw="<html>bad gateway</html>"), "ok")
    assert client(llm_server).complete(MESSAGES, purpose="test").call.attempts == 3


def test_a_reply_without_choices_is_retried_and_billed(llm_server: ScriptedLLMServer) -> None:
    empty = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted", "choices": [],
             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    llm_server.script(Step(raw=json.dumps(empty)), Step(content="ok", prompt_tokens=10, completion_tokens=5))
    llm = client(llm_server)
    call = llm.complete(MESSAGES, purpose="test").call
    assert (call.attempts, call.prompt_tokens, call.completion_tokens) == (2, 20, 10)
    assert call.cost_usd == pytest.approx(20 * IN_PRICE + 10 * OUT_PRICE) == llm.spent_usd


# ----- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "hint"), [
    (401, r"Check the key in \$TEST_KEY"),
    (403, r"Check the key in \$TEST_KEY"),
    (404, r"Check llm\.model"),
    (400, r"Check llm\.model, llm\.api_base"),
    (402, r"credit or billing"),
    (422, r"Check llm\.model, llm\.api_base"),
])
def test_refusals_are_not_retried(llm_server: ScriptedLLMServer, status: int, hint: str) -> None:
    llm_server.default = Step(status=status)
    sleeps: list[float] = []
    llm = client(llm_server, sleeps)
    with pytest.raises(LLMRejected, match=hint):
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 1 and sleeps == []
    (call,) = llm.drain_calls()
    assert not call.ok and call.attempts == 1


def test_a_missing_key_variable_is_named(llm_server: ScriptedLLMServer) -> None:
    config = LLMConfig(model="openai/scripted", api_base=llm_server.url, api_key_env="NOT_SET_ANYWHERE",
                       input_cost_per_token=0, output_cost_per_token=0)
    with pytest.raises(LLMRejected, match=r"set the environment variable NOT_SET_ANYWHERE"):
        LLMClient(config, environ={}).complete(MESSAGES, purpose="test")
    assert not llm_server.requests


def test_an_unknown_price_is_refused_up_front() -> None:
    unknown = r"price of model openai/no-such-model-anywhere is unknown; set llm\.input_cost_per_token"
    with pytest.raises(LLMRejected, match=unknown):
        LLMClient(LLMConfig(model="openai/no-such-model-anywhere"))


def test_a_model_without_provider_is_refused_up_front() -> None:
    config = LLMConfig(model="no-such-provider-model", input_cost_per_token=0, output_cost_per_token=0)
    with pytest.raises(LLMRejected, match=r"provider/name, e\.g\. openai/"):
        LLMClient(config)


def test_a_known_model_is_priced_from_litellm() -> None:
    llm = LLMClient(LLMConfig(model="openai/gpt-4o-mini"), max_usd=1.0)
    assert llm.remaining_usd() == 1.0 and llm.spent_usd == 0


# ----- the key never leaks --------------------------------------------------------------------------
def test_the_key_never_leaks(
    llm_server: ScriptedLLMServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = json.dumps({"error": {"message": f"invalid key {KEY} for this model"}})
    llm = client(llm_server, max_retries=1)
    errors: list[LLMError] = []
    for steps in ([Step(status=401, raw=echo)], [Step(status=400, raw=echo)],
                  [Step(status=500, raw=echo), Step(status=500, raw=echo)], [Step(raw=f"garbage {KEY}")] * 2):
        llm_server.script(*steps)
        with pytest.raises(LLMError) as raised:
            llm.complete(MESSAGES, purpose="test")
        errors.append(raised.value)
    assert [type(e) for e in errors] == [LLMRejected, LLMRejected, LLMUnavailable, LLMUnavailable]
    calls = llm.drain_calls()
    assert len(calls) == 4 and all("***" in call.error for call in calls[:3])
    out, err = capfd.readouterr()
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [str(c.to_dict()) for c in calls]
    texts += [repr(llm), caplog.text, out, err]
    for text in texts:
        assert KEY not in text
    # Raised outside litellm's except blocks: no exception holding the request rides along.
    assert all(e.__context__ is None and e.__cause__ is None for e in errors)


def test_the_providers_default_key_variable_is_redacted_too(
    llm_server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # api_key_env unset: litellm reads the provider's variable
    llm_server.default = Step(status=401, raw=json.dumps({"error": {"message": f"bad key {KEY}"}}))
    config = LLMConfig(model="openai/scripted", api_base=llm_server.url, input_cost_per_token=0,
                       output_cost_per_token=0)
    with pytest.raises(LLMRejected, match=r"Check the key in \$OPENAI_API_KEY") as raised:
        LLMClient(config).complete(MESSAGES, purpose="test")
    assert llm_server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(raised.value) and "***" in str(raised.value)


# ----- the spend cap -----------------------------------------------------------------------------------
def test_the_spend_cap_is_never_crossed(llm_server: ScriptedLLMServer) -> None:
    llm_server.default = Step(content="ok", completion_tokens=4000)  # as much as max_tokens allows
    cap = 0.02
    llm = client(llm_server, max_usd=cap)
    with pytest.raises(SpendCapReached, match=r"raise budget\.max_llm_usd"):
        for _ in range(10):
            llm.complete(MESSAGES, purpose="more")
            assert llm.spent_usd <= cap
    asked = [body["max_tokens"] for body in chat_bodies(llm_server)]
    assert asked[:2] == [4096, 4096] and len(asked) == 3
    assert 64 <= asked[2] < 4000  # lowered so that the worst case fits what was left
    assert llm.spent_usd <= cap and llm.remaining_usd() == pytest.approx(cap - llm.spent_usd)
    assert len(llm.drain_calls()) == 3  # a call the cap refused made no request and has no record
    with pytest.raises(SpendCapReached):
        llm.complete(MESSAGES, purpose="after the cap")
    assert len(llm_server.requests) == 3  # no request once the cap is reached


def test_spend_carried_over_counts_against_the_cap(llm_server: ScriptedLLMServer) -> None:
    config = LLMConfig(model="openai/scripted", api_base=llm_server.url, input_cost_per_token=IN_PRICE,
                       output_cost_per_token=OUT_PRICE)
    llm = LLMClient(config, max_usd=1.0, spent_usd=0.9999, environ={})
    with pytest.raises(SpendCapReached, match=r"\$0\.9999 of \$1\.0000"):
        llm.complete(MESSAGES, purpose="test")
    assert not llm_server.requests and llm.drain_calls() == []


def test_a_retry_the_cap_cannot_afford_is_not_made(llm_server: ScriptedLLMServer) -> None:
    # A billed but unusable reply leaves too little for another attempt.
    empty = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted", "choices": [],
             "usage": {"prompt_tokens": 10, "completion_tokens": 450, "total_tokens": 460}}
    llm_server.script(Step(raw=json.dumps(empty)))
    llm = client(llm_server, max_usd=0.001)
    with pytest.raises(SpendCapReached):
        llm.complete(MESSAGES, purpose="test")
    assert len(llm_server.requests) == 1 and llm.spent_usd <= 0.001
    (call,) = llm.drain_calls()
    assert not call.ok and call.attempts == 1 and call.cost_usd == pytest.approx(10 * IN_PRICE + 450 * OUT_PRICE)


# ----- embeddings --------------------------------------------------------------------------------------
def test_embeddings(llm_server: ScriptedLLMServer) -> None:
    llm = client(llm_server)
    vectors = llm.embed(["add dropout", "add dropout", "use adamw"], model="openai/embedder")
    assert len(vectors) == 3 and vectors[0] == vectors[1] != vectors[2]
    request = llm_server.requests[0]
    assert request["path"] == "/v1/embeddings" and request["headers"]["Authorization"] == f"Bearer {KEY}"
    (call,) = llm.drain_calls()
    assert call.ok and call.model == "openai/embedder" and call.prompt_tokens == 6
    assert call.cost_usd == pytest.approx(6 * IN_PRICE)  # unknown to litellm: llm.input_cost_per_token


def test_embeddings_of_a_listed_model_use_its_price(llm_server: ScriptedLLMServer) -> None:
    llm = client(llm_server)
    llm.embed(["add dropout"], model="openai/text-embedding-3-small")
    assert llm.drain_calls()[0].cost_usd == pytest.approx(2 * 2e-8)  # litellm's list price


def test_embeddings_are_retried(llm_server: ScriptedLLMServer) -> None:
    llm_server.script_embeddings(Step(status=503), Step(raw="garbage"))
    sleeps: list[float] = []
    assert len(client(llm_server, sleeps).embed(["a b"], model="openai/embedder")) == 1
    assert sleeps == [1.0, 2.0] and len(llm_server.requests) == 3  # ours are the only retries


def test_embeddings_respect_the_cap(llm_server: ScriptedLLMServer) -> None:
    llm = client(llm_server, max_usd=1e-6)
    with pytest.raises(SpendCapReached):
        llm.embed(["a fairly long hypothesis about dropout"] * 10, model="openai/embedder")
    assert not llm_server.requests


def test_embeddings_of_an_unpriced_model_are_refused(llm_server: ScriptedLLMServer) -> None:
    llm = LLMClient(LLMConfig(model="openai/gpt-4o-mini", api_base=llm_server.url), environ={})
    with pytest.raises(LLMRejected, match=r"price of embedding model openai/embedder is unknown"):
        llm.embed(["x"], model="openai/embedder")
    assert not llm_server.requests
