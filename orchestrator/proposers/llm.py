"""A thin litellm client: any provider (or a local OpenAI-compatible server), retries only on
errors worth retrying, every call costed and recorded, and a spend cap no call can cross.

The key comes from the environment (`llm.api_key_env`) at call time; it is never stored on the
client, and any echo of it (or of another secret-looking variable) in a provider's error text
is redacted before the text goes anywhere. docs/llm.md is the user's view of all this.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download at import

import litellm
import openai

from orchestrator.config import LLMConfig

litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
litellm.disable_hf_tokenizer_download = True  # a token estimate must never reach Hugging Face
# We do every retry ourselves. litellm's OpenAI embedding path reads max_retries=0 as "use this
# default" (`max_retries or DEFAULT_MAX_RETRIES`), so the SDK would retry twice more on its own.
setattr(litellm, "DEFAULT_MAX_RETRIES", 0)  # noqa: B010 (litellm types it Final)
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MIN_COMPLETION_TOKENS = 64  # below this a call cannot return even one proposal
MAX_RETRY_AFTER_S = 60.0  # a provider asking for longer is treated as down, not waited for
# Token estimates use litellm's tokenizer for the model (tiktoken when it has none): leave room
# for a provider whose tokenizer counts more.
PROMPT_MARGIN = 1.2
PROMPT_SLACK_TOKENS = 16

RETRYABLE: tuple[type[BaseException], ...] = (
    litellm.RateLimitError,
    litellm.Timeout,
    litellm.APIConnectionError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.BadGatewayError,
    litellm.APIResponseValidationError,
)
REJECTED: tuple[type[BaseException], ...] = (
    litellm.AuthenticationError,
    litellm.PermissionDeniedError,
    litellm.BadRequestError,  # includes context-window, content-policy and unknown-provider errors
    litellm.NotFoundError,
    litellm.UnprocessableEntityError,
)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx
# What litellm's message says when a 200 body was not a chat completion (it raises a 500 for it).
GARBAGE_MARKERS = ("Expecting value", "Received response", "not a list")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


class LLMError(RuntimeError):
    """An LLM call failed; the message says what to do and never contains the key."""


class LLMUnavailable(LLMError):
    """Retryable errors persisted past llm.max_retries."""


class LLMRejected(LLMError):
    """The provider refused the request (key, model, request) or the setup is wrong; retrying will not help."""


class SpendCapReached(LLMError):
    """The campaign's LLM spend cap would be crossed: no (further) request was made."""


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
    error: str  # redacted; "" when ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LLMReply:
    text: str
    call: LLMCall


class _MalformedReply(Exception):
    """A 200 answer litellm parsed but that holds no message: treated like a garbage body."""


@dataclass
class _Tally:
    """What the attempts of one call consumed (a billed but unusable reply still costs)."""

    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


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
        self._environ = environ  # None: os.environ, read at call time (never copied onto the client)
        self._calls: list[LLMCall] = []
        provider = _provider_of(config.model)
        self._prices = _config_prices(config) or _litellm_prices(config.model) or _unknown_price(config.model)
        self._json_mode = "response_format" in _supported_params(config.model, provider)

    def __repr__(self) -> str:
        return (f"LLMClient(model={self._config.model!r}, api_base={self._config.api_base!r}, "
                f"spent_usd={self._spent:.6f}, max_usd={self._max_usd!r})")

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
        """Call records since the last drain, failed calls included (a call refused by the cap made none)."""
        calls, self._calls = self._calls, []
        return calls

    # ----- calls -------------------------------------------------------------------------
    def complete(
        self, messages: list[dict[str, str]], *, purpose: str, max_tokens: int | None = None,
        json_object: bool = True,
    ) -> LLMReply:
        """One chat completion; the text is returned as the model wrote it (parsing is the caller's job)."""
        config = self._config
        wanted = min(max_tokens or config.max_tokens, config.max_tokens)
        prompt_estimate = _estimate_tokens(config.model, messages=messages)

        def request(key: str | None, tally: _Tally) -> str:
            kwargs: dict[str, Any] = {
                "model": config.model, "messages": messages, "temperature": config.temperature,
                "max_tokens": self._affordable_tokens(prompt_estimate, wanted),  # each attempt: spend moves
                "timeout": config.timeout_s, "num_retries": 0, "max_retries": 0, **self._endpoint(key),
            }
            if json_object and self._json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            response = litellm.completion(**kwargs)
            self._bill(tally, response, self._prices)
            choices = getattr(response, "choices", None)
            if not choices or getattr(choices[0], "message", None) is None:
                raise _MalformedReply("the reply holds no message (empty `choices`)")
            return choices[0].message.content or ""

        text, call = self._run(request, purpose, config.model, json_object=json_object)
        return LLMReply(text=text, call=call)

    def embed(self, texts: list[str], *, model: str) -> list[list[float]]:
        """Embeddings through the same endpoint, key, retries, costing and cap as completions.

        Price: litellm's list for the embedding model, else llm.input_cost_per_token.
        """
        prices = _litellm_prices(model) or (
            (self._config.input_cost_per_token, 0.0) if self._config.input_cost_per_token is not None else None
        )
        if prices is None:
            raise LLMRejected(
                f"the price of embedding model {model} is unknown; set llm.input_cost_per_token "
                "(0 for a free local server), which embeddings then use"
            )
        estimate = sum(_estimate_tokens(model, text=text) for text in texts)
        self._check_cap(estimate * prices[0], f"embedding {len(texts)} texts of about {estimate} tokens")

        def request(key: str | None, tally: _Tally) -> list[list[float]]:
            response = litellm.embedding(model=model, input=texts, timeout=self._config.timeout_s, num_retries=0,
                                         max_retries=0, **self._endpoint(key))
            self._bill(tally, response, prices)
            data = getattr(response, "data", None) or []
            if len(data) != len(texts):
                raise _MalformedReply(f"{len(data)} embeddings for {len(texts)} texts")
            return [list(item["embedding"]) for item in data]

        vectors, _ = self._run(request, f"embed {len(texts)} texts", model, json_object=False)
        return vectors

    # ----- the retry loop ----------------------------------------------------------------
    def _run(self, request: Callable[[str | None, _Tally], Any], purpose: str, model: str, *,
             json_object: bool) -> tuple[Any, LLMCall]:
        """Attempts until success, a non-retryable error, or retries exhausted; records one LLMCall.

        Exceptions are raised outside the `except` blocks, so none carries litellm's exception
        (which holds the request, key included) as its __context__.
        """
        key = self._key()
        started, clock = time.time(), time.monotonic()
        tally = _Tally()
        retries = 0
        while True:
            tally.attempts += 1
            capped: str | None = None
            failure: Exception | None = None
            try:
                result = request(key, tally)
            except SpendCapReached as exc:
                capped = str(exc)
            except Exception as exc:  # classified below; anything unknown is not retried
                failure = exc
            else:
                return result, self._record(purpose, model, started, clock, tally, "")
            if capped is not None:  # this attempt was not made
                tally.attempts -= 1
                if tally.attempts:  # earlier attempts were: they are the call
                    self._record(purpose, model, started, clock, tally, f"stopped before a retry: {capped}")
                raise SpendCapReached(capped)
            assert failure is not None
            kind = _classify(failure)
            error = _describe(failure, self._secrets(key))
            if kind == "reject" and json_object and self._json_mode and _refuses_json_mode(failure):
                # An OpenAI-compatible server without JSON mode: ask again without it (the prompt
                # asks for JSON anyway), and stop asking for it.
                self._json_mode = False
                continue
            if kind == "retry" and retries < self._config.max_retries:
                wait = self._backoff(retries, failure)
                del failure  # it holds the request; don't keep it through the wait
                retries += 1
                self._sleep(wait)
                continue
            hint = _unavailable_hint(failure) if kind == "retry" else self._hint(failure)
            del failure
            self._record(purpose, model, started, clock, tally, error)
            where = self._config.api_base or "the provider's default endpoint"
            if kind == "retry":
                raise LLMUnavailable(
                    f"{model} at {where} failed {tally.attempts} time{'s' * (tally.attempts != 1)} "
                    f"(llm.max_retries={self._config.max_retries}); "
                    f"last error: {error}. {hint}"
                )
            raise LLMRejected(f"{model} at {where} refused the request: {error}. {hint}")

    def _backoff(self, retries: int, exc: BaseException) -> float:
        wait = self._config.backoff_s * 2**retries
        retry_after = _retry_after(exc)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
        return wait

    def _hint(self, exc: BaseException) -> str:
        """What to do about a non-retryable error."""
        status = getattr(exc, "status_code", None)
        if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError) or status in (401, 403):
            names = [self._config.api_key_env] if self._config.api_key_env else _provider_key_names(self._config.model)
            where = " or ".join(f"${name}" for name in names) or "the provider's key variable"
            return f"Check the key in {where} (llm.api_key_env names the variable)."
        if isinstance(exc, litellm.NotFoundError):
            return "Check llm.model (and llm.api_base): the endpoint does not know it."
        if isinstance(exc, litellm.ContextWindowExceededError):
            return "The prompt is too long for the model: lower the proposer's history or max_file_chars."
        if status == 402:
            return "Check the provider account's credit or billing."
        if isinstance(exc, openai.APIError):
            return "Check llm.model, llm.api_base and the request limits (llm.max_tokens)."
        return "An unexpected error inside litellm: check llm.model and llm.api_base."

    # ----- key ---------------------------------------------------------------------------
    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _key(self) -> str | None:
        name = self._config.api_key_env
        if name is None:
            return None  # litellm reads the provider's usual variable itself
        key = self._env().get(name)
        if not key:
            raise LLMRejected(
                f"the environment variable {name} (llm.api_key_env) is not set; set the environment variable "
                f"{name} to the API key"
            )
        return key

    def _secrets(self, key: str | None) -> list[str]:
        """Strings to redact: the key, and secret-looking variables litellm may have read itself."""
        found = {key} if key else set()
        for env in (self._env(), os.environ):
            found.update(v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8)
        return sorted(found, key=len, reverse=True)

    def _endpoint(self, key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._config.api_base:
            out["api_base"] = self._config.api_base
        if key is not None:
            out["api_key"] = key
        return out

    # ----- cost and cap ------------------------------------------------------------------
    def _bill(self, tally: _Tally, response: Any, prices: tuple[float, float]) -> None:
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = prompt * prices[0] + completion * prices[1]
        tally.prompt_tokens += prompt
        tally.completion_tokens += completion
        tally.cost_usd += cost
        self._spent += cost

    def _affordable_tokens(self, prompt_tokens: int, wanted: int) -> int:
        """max_tokens such that the attempt's worst case stays within the cap."""
        remaining = self.remaining_usd()
        if remaining is None:
            return wanted
        input_price, output_price = self._prices
        left = remaining - prompt_tokens * input_price
        affordable = wanted if output_price == 0 else math.floor(left / output_price * (1 - 1e-9))
        if left < 0 or affordable < MIN_COMPLETION_TOKENS:
            raise SpendCapReached(self._cap_message(f"a call of about {prompt_tokens} prompt tokens"))
        return min(wanted, affordable)

    def _check_cap(self, worst_usd: float, what: str) -> None:
        remaining = self.remaining_usd()
        if remaining is not None and worst_usd > remaining:
            raise SpendCapReached(self._cap_message(what))

    def _cap_message(self, what: str) -> str:
        return (f"LLM spend cap: ${self._spent:.4f} of ${self._max_usd or 0:.4f} spent, and {what} could cross it; "
                "raise budget.max_llm_usd to go on")

    def _record(self, purpose: str, model: str, started: float, clock: float, tally: _Tally, error: str) -> LLMCall:
        call = LLMCall(
            purpose=purpose, model=model, started_at=started, latency_s=round(time.monotonic() - clock, 4),
            attempts=tally.attempts, prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
            cost_usd=tally.cost_usd, ok=not error, error=error,
        )
        self._calls.append(call)
        return call


# ----- classification ----------------------------------------------------------------------
def _classify(exc: BaseException) -> Literal["retry", "reject"]:
    if isinstance(exc, (*RETRYABLE, _MalformedReply)):
        return "retry"
    if isinstance(exc, REJECTED):
        return "reject"
    if isinstance(exc, openai.APIError):  # litellm.APIError: a status litellm has no class for (402, 409, 413, ...)
        status = getattr(exc, "status_code", None)
        return "retry" if status is None or status >= 500 or status in RETRYABLE_STATUS else "reject"
    return "reject"  # not from the provider: a bug or a setting litellm refused; retrying will not help


def _refuses_json_mode(exc: BaseException) -> bool:
    return isinstance(exc, litellm.BadRequestError | litellm.UnprocessableEntityError) and (
        "response_format" in str(exc) or "json_object" in str(exc)
    )


def _unavailable_hint(exc: BaseException) -> str:
    """What to do about a retryable error that persisted."""
    if isinstance(exc, _MalformedReply) or any(marker in str(exc) for marker in GARBAGE_MARKERS):
        return ("The server answered with something that is not an OpenAI-compatible reply: check llm.api_base "
                "(for a local server it usually ends in /v1).")
    if isinstance(exc, litellm.Timeout):
        return "No answer within llm.timeout_s: raise it for a slow model or server."
    if isinstance(exc, litellm.APIConnectionError) or "Connection error" in str(exc):
        return "The endpoint cannot be reached: check llm.api_base and that the server is running."
    return "Check that the provider is up, or raise llm.max_retries / llm.backoff_s."


def _retry_after(exc: BaseException) -> float | None:
    """The provider's Retry-After (seconds or an HTTP date; or retry-after-ms), where litellm kept the headers."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        try:
            if headers.get("retry-after-ms") is not None:
                return float(headers.get("retry-after-ms")) / 1000
            value = headers.get("retry-after")
            if value is None:
                continue
            try:
                return max(0.0, float(value))
            except ValueError:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, AttributeError):
            return None
    return None


def _describe(exc: BaseException, secrets: list[str]) -> str:
    """One redacted line: the exception's class and message."""
    name = type(exc).__name__.lstrip("_")
    text = str(exc).removeprefix(f"litellm.{name}: ").removeprefix(f"{name}: ")  # litellm repeats the class
    text = f"{name}: {text}"
    for secret in secrets:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:399] + "…"


# ----- model facts from litellm's local tables -------------------------------------------------
def _provider_of(model: str) -> str:
    try:
        return str(litellm.get_llm_provider(model)[1])
    except Exception:
        raise LLMRejected(
            f"litellm cannot tell the provider of llm.model {model!r}; write it as provider/name, "
            "e.g. openai/gpt-4o-mini, or openai/NAME for a local OpenAI-compatible server"
        ) from None


def _supported_params(model: str, provider: str) -> list[str]:
    try:
        return list(litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or [])
    except Exception:  # unknown to litellm's tables: send only the basic parameters
        return []


def _config_prices(config: LLMConfig) -> tuple[float, float] | None:
    if config.input_cost_per_token is None or config.output_cost_per_token is None:
        return None
    return config.input_cost_per_token, config.output_cost_per_token


def _litellm_prices(model: str) -> tuple[float, float] | None:
    """Per-token list prices from litellm's bundled table (no network)."""
    info: dict[str, Any]
    try:
        info = dict(litellm.get_model_info(model))
    except Exception:
        info = dict(litellm.model_cost.get(model) or {})
    if info.get("input_cost_per_token") is None:
        return None
    return float(info["input_cost_per_token"]), float(info.get("output_cost_per_token") or 0.0)


def _unknown_price(model: str) -> tuple[float, float]:
    raise LLMRejected(
        f"the price of model {model} is unknown; set llm.input_cost_per_token and llm.output_cost_per_token "
        "(0 for a free local server)"
    )


def _provider_key_names(model: str) -> list[str]:
    """The variables litellm reads the key from: those it misses, else the usual PROVIDER_API_KEY."""
    try:
        missing = list(litellm.validate_environment(model).get("missing_keys") or [])
    except Exception:
        missing = []
    if missing:
        return missing
    try:
        usual = f"{litellm.get_llm_provider(model)[1].upper()}_API_KEY"
    except Exception:
        return []
    return [usual] if usual in os.environ else []


def _estimate_tokens(model: str, *, messages: list[dict[str, str]] | None = None, text: str | None = None) -> int:
    """A generous estimate of the tokens the provider will bill for this input."""
    try:
        counted = litellm.token_counter(model=model, messages=messages, text=text)
    except Exception:  # no tokenizer for the model: about 3 characters a token, generously
        chars = len(text or "") + sum(len(m.get("content") or "") + 8 for m in messages or [])
        counted = chars // 3 + 1
    return int(counted * PROMPT_MARGIN) + PROMPT_SLACK_TOKENS
