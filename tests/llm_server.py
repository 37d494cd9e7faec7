"""A scripted OpenAI-compatible server on loopback, for litellm to talk real HTTP to.

Chat replies come from a script (consumed in order, then `default`; with neither, a 500 "script
exhausted"); a step can be slow, answer an HTTP error, send a raw (malformed) body, or compute its
content from the request. Embeddings are a hashed bag of words, so equal texts get equal vectors;
`script_embeddings` queues steps for them too (errors, delays, raw bodies). Loopback only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Step:
    content: str = ""  # the assistant message
    status: int = 200
    delay_s: float = 0.0
    raw: str | None = None
    prompt_tokens: int | None = None  # None: counted from the request, as a provider would
    completion_tokens: int = 50  # never more than the request's max_tokens
    retry_after: float | None = None  # sent as a Retry-After header with an error status
    handler: Callable[[dict[str, Any]], str] | None = None


class Headers(dict[str, str]):
    """Request headers by name, whatever case the client sent them in (HTTP names are
    case-insensitive; litellm versions differ in how they spell Authorization)."""

    def __init__(self, items: Any) -> None:
        super().__init__((name.lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class ScriptedLLMServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"} of every request
        self.default: Step | None = None
        self._script: list[Step] = []
        self._embedding_script: list[Step] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *steps: Step | str) -> None:
        with self._lock:
            self._script.extend(Step(content=s) if isinstance(s, str) else s for s in steps)

    def script_embeddings(self, *steps: Step) -> None:
        """Steps for /embeddings requests, in order; once used up, embeddings are answered normally."""
        with self._lock:
            self._embedding_script.extend(steps)

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests` instead."""

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                # The client may have given up (a timeout under test): then nobody is left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._serve(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() waits for it, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- serving -----------------------------------------------------------------------
    def _next(self, embeddings: bool) -> Step | None:
        with self._lock:
            if embeddings:
                return self._embedding_script.pop(0) if self._embedding_script else Step()
            return self._script.pop(0) if self._script else self.default

    def _serve(self, http: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"path": http.path, "headers": Headers(http.headers.items()), "body": body})
        embeddings = http.path.endswith("/embeddings")
        if not embeddings and not http.path.endswith("/chat/completions"):
            self._send(http, 404, {"error": {"message": f"no route {http.path}", "type": "invalid_request_error"}})
            return
        step = self._next(embeddings)
        if step is None:
            self._send(http, 500, {"error": {"message": "script exhausted", "type": "server_error"}})
            return
        if step.delay_s:
            time.sleep(step.delay_s)
        if step.raw is not None:
            self._send_raw(http, step.status, step.raw.encode())
            return
        if step.status != 200:
            headers = {"Retry-After": str(step.retry_after)} if step.retry_after is not None else {}
            error = {"error": {"message": f"scripted error {step.status}", "type": "scripted", "code": step.status}}
            self._send(http, step.status, error, headers)
            return
        if embeddings:
            self._send(http, 200, _embeddings(body))
            return
        content = step.handler(body) if step.handler is not None else step.content
        prompt = step.prompt_tokens if step.prompt_tokens is not None else _count_tokens(body)
        completion = min(step.completion_tokens, int(body.get("max_tokens") or step.completion_tokens))
        self._send(http, 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, data: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        ScriptedLLMServer._send_raw(http, status, json.dumps(data).encode(), headers)

    @staticmethod
    def _send_raw(http: BaseHTTPRequestHandler, status: int, payload: bytes,
                  headers: dict[str, str] | None = None) -> None:
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(payload)


def _count_tokens(body: dict[str, Any]) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download at import
    import litellm

    return int(litellm.token_counter(model="gpt-4o", messages=body.get("messages") or []))


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """A hashed bag of words per input: equal texts get equal vectors, shared words add up."""
    inputs = body.get("input") or []
    inputs = [inputs] if isinstance(inputs, str) else inputs
    data = []
    for i, text in enumerate(inputs):
        vector = [0.0] * 64
        for word in str(text).lower().split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = sum(len(str(t).split()) for t in inputs)
    return {"object": "list", "data": data, "model": body.get("model", "scripted"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
