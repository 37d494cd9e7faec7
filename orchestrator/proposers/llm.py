"""A thin litellm client: any provider (or a local OpenAI-compatible server), retries only on
errors worth retrying, every call costed and recorded, and a spend cap no call can cross.

The key comes from the environment (`llm.api_key_env`) at call time; it is never stored on the
client, and any echo of it in a provider's error text is redacted before the text goes anywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download at import

import litellm

from orchestrator.config import LLMConfig

litellm.suppress_debug_info = True
litellm.set_verbose = False

MIN_COMPLETION_TOKENS = 64  # below this a call cannot return even one proposal
MAX_RETRY_AFTER_S = 60.0

RETRYABLE: tuple[type[BaseException], ...] = (
    litellm.RateLimitError,
    litellm.Timeout,
    litellm.APIConnectionError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.BadGatewayError,
)
REJECTED: tuple[type[BaseException], ...] = (
    litellm.AuthenticationError,
    litellm.PermissionDeniedError,
    litellm.BadRequestError,
    litellm.NotFoundError,
    litellm.UnprocessableEntityError,
)


class LLMError(RuntimeError):
    """An LLM call failed; the message says what to do and never contains the key."""


class LLMUnavailable(LLMError):
    """Retryable errors persisted past llm.max_retries."""


class LLMRejected(LLMError):
    """The provider refused the request (key, model, request); retrying will not help."""


class SpendCapReached(LLMError):
    """The campaign's LLM spend cap would be crossed: no call was made."""


@dataclass(frozen=True)
class LLMCall:
    """One call, all its attempts together: a row of the ledger's llm_calls table."""

    purpose: str
    model: str
    started_at: float
    latency_s: float
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ok: bool
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LLMReply:
    text: str
    call: LLMCall


class LLMClient:
    def __init__(
        self,
        config: LLMConfig,
        *,
        max_usd: float | None = None,
        spent_usd: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._max_usd = max_usd
        self._spent = spent_usd
        self._sleep = sleep
        self._environ = os.environ if environ is None else environ
        self._calls: list[LLMCall] = []
        self._prices = self._price_of(config)

    def __repr__(self) -> str:
        return f"LLMClient(model={self._config.model!r}, api_base={self._config.api_base!r})"

    # ----- spend -------------------------------------------------------------------------
    @property
    def spent_usd(self) -> float:
        return self._spent

    def sync_spent(self, usd: float) -> None:
        """Take the campaign's recorded spend (after a restart this client starts at zero)."""
        self._spent = max(self._spent, usd)

    def remaining_usd(self) -> float | None:
        return None if self._max_usd is None else max(0.0, self._max_usd - self._spent)

    def drain_calls(self) -> list[LLMCall]:
        calls, self._calls = self._calls, []
        return calls

    # ----- calls -------------------------------------------------------------------------
    def complete(
        self, messages: list[dict[str, str]], *, purpose: str, max_tokens: int | None = None,
        json_object: bool = True,
    ) -> LLMReply:
        config = self._config
        limit = self._affordable_tokens(messages, max_tokens or config.max_tokens)
        kwargs: dict[str, Any] = {
            "model": config.model, "messages": messages, "temperature": config.temperature,
            "max_tokens": limit, "timeout": config.timeout_s, "num_retries": 0,
        }
        if json_object:
            kwargs["response_format"] = {"type": "json_object"}
        response = self._attempt(lambda key: litellm.completion(**kwargs, **self._endpoint(key)), purpose)
        text = response.choices[0].message.content or ""
        return LLMReply(text=text, call=self._calls[-1])

    def embed(self, texts: list[str], *, model: str) -> list[list[float]]:
        response = self._attempt(
            lambda key: litellm.embedding(model=model, input=texts, timeout=self._config.timeout_s,
                                          **self._endpoint(key)),
            f"embed {len(texts)} hypotheses", model=model,
        )
        return [list(item["embedding"]) for item in response.data]

    def _endpoint(self, key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._config.api_base:
            out["api_base"] = self._config.api_base
        if key is not None:
            out["api_key"] = key
        return out

    def _key(self) -> str | None:
        name = self._config.api_key_env
        if name is None:
            return None
        key = self._environ.get(name)
        if not key:
            raise LLMRejected(f"the environment variable {name} (llm.api_key_env) is not set; export the API key in it")
        return key

    def _attempt(self, call: Callable[[str | None], Any], purpose: str, model: str | None = None) -> Any:
        model = model or self._config.model
        key = self._key()
        started = time.time()
        attempts = 0
        while True:
            attempts += 1
            try:
                response = call(key)
            except RETRYABLE as exc:
                error = self._redact(exc, key)
                if attempts > self._config.max_retries:
                    self._record(purpose, model, started, attempts, None, error)
                    raise LLMUnavailable(
                        f"{model} at {self._config.api_base or 'the provider'} failed {attempts} times; last error: "
                        f"{error}. Check the provider, or raise llm.max_retries / llm.timeout_s"
                    ) from None
                self._sleep(self._backoff(attempts, exc))
                continue
            except REJECTED as exc:
                error = self._redact(exc, key)
                self._record(purpose, model, started, attempts, None, error)
                raise LLMRejected(f"{model} refused the request: {error}. {_hint(exc, self._config)}") from None
            except litellm.APIError as exc:  # an unclassified provider error, e.g. an unparseable body
                error = self._redact(exc, key)
                if attempts > self._config.max_retries:
                    self._record(purpose, model, started, attempts, None, error)
                    raise LLMUnavailable(f"{model} kept failing ({attempts} attempts): {error}") from None
                self._sleep(self._backoff(attempts, exc))
                continue
            self._record(purpose, model, started, attempts, response, "")
            return response

    @staticmethod
    def _redact(exc: BaseException, key: str | None) -> str:
        return _redact_exc(exc, key)

    def _backoff(self, attempts: int, exc: BaseException) -> float:
        wait = self._config.backoff_s * 2 ** (attempts - 1)
        retry_after = _retry_after(exc)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
        return wait

    def _record(self, purpose: str, model: str, started: float, attempts: int, response: Any, error: str) -> None:
        usage = getattr(response, "usage", None) if response is not None else None
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = prompt * self._prices[0] + completion * self._prices[1] if response is not None else 0.0
        self._spent += cost
        self._calls.append(LLMCall(
            purpose=purpose, model=model, started_at=started, latency_s=round(time.time() - started, 4),
            attempts=attempts, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost,
            ok=response is not None, error=error,
        ))

    def _affordable_tokens(self, messages: list[dict[str, str]], wanted: int) -> int:
        """max_tokens such that the call's worst case stays within the cap."""
        remaining = self.remaining_usd()
        if remaining is None:
            return wanted
        # Token counts are estimates (the provider's tokenizer may differ): keep a margin.
        prompt_tokens = int(litellm.token_counter(model=self._config.model, messages=messages) * 1.1) + 16
        left = remaining - prompt_tokens * self._prices[0]
        affordable = wanted if self._prices[1] == 0 else int(left / self._prices[1])
        if left < 0 or affordable < MIN_COMPLETION_TOKENS:
            raise SpendCapReached(
                f"LLM spend cap: ${self._spent:.4f} of ${self._max_usd:.2f} spent, and a call of "
                f"{prompt_tokens} prompt tokens could cross it; raise budget.max_llm_usd to go on"
            )
        return min(wanted, affordable)

    # ----- prices ------------------------------------------------------------------------
    @staticmethod
    def _price_of(config: LLMConfig) -> tuple[float, float]:
        if config.input_cost_per_token is not None and config.output_cost_per_token is not None:
            return config.input_cost_per_token, config.output_cost_per_token
        info = litellm.model_cost.get(config.model) or litellm.model_cost.get(config.model.split("/", 1)[-1])
        if info and "input_cost_per_token" in info:
            return float(info["input_cost_per_token"]), float(info.get("output_cost_per_token", 0.0))
        raise LLMRejected(
            f"the price of model {config.model} is unknown; set llm.input_cost_per_token and "
            "llm.output_cost_per_token (0 for a free local server)"
        )


def _retry_after(exc: BaseException) -> float | None:
    """The provider's Retry-After, in seconds, where litellm kept the response headers."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if headers and headers.get("retry-after") is not None:
            try:
                return float(headers.get("retry-after"))
            except (TypeError, ValueError):
                return None
    return None


def _hint(exc: BaseException, config: LLMConfig) -> str:
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        where = f"${config.api_key_env}" if config.api_key_env else "the provider's key variable"
        return f"Check the key in {where}."
    if isinstance(exc, litellm.NotFoundError):
        return "Check llm.model (and llm.api_base)."
    return "Check llm.model and the request limits (llm.max_tokens)."


def _redact_text(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return text


def _first_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact_exc(exc: BaseException, key: str | None) -> str:
    return _first_line(_redact_text(f"{type(exc).__name__}: {exc}", key))

