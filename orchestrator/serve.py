"""`arborist serve`: a read-only web view of a campaign, running or not.

A stdlib threading HTTP server. It serves the page and its assets (orchestrator/web/, by name:
no other file), and JSON built by orchestrator/view.py. The ledger is replayed again only when
its files changed since the last replay, so a page polling every few seconds costs a stat of the
campaign folder, not a replay. It never writes to the campaign.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrator import view
from orchestrator.config import CampaignConfig

ASSETS = {"view.js": "text/javascript; charset=utf-8", "view.css": "text/css; charset=utf-8"}
REMOTE_REREAD_S = 30.0  # a ledger on object storage has no cheap change signal: re-read at most this often


def asset(name: str) -> str:
    return resources.files("orchestrator.web").joinpath(name).read_text(encoding="utf-8")


def ledger_signature(config: CampaignConfig) -> tuple[Any, ...]:
    """What changes whenever the ledger does: the size and time of the journal and of every file
    of a local ledger folder. A remote ledger's signature is the time, in REMOTE_REREAD_S steps."""
    assert config.campaign_dir is not None
    campaign = Path(config.campaign_dir)
    parts: list[Any] = []
    folders = [campaign / "ledger"] if not config.storage else []
    for path in [campaign / "journal.wal"]:
        try:
            st = path.stat()
            parts.append((str(path), st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            parts.append((str(path), None))
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # compacted away while we walked: the next poll sees the new file
                parts.append((dirpath, name, st.st_size, st.st_mtime_ns))
    if config.storage:
        parts.append(int(time.time() // REMOTE_REREAD_S))
    return tuple(parts)


class CampaignSource:
    """The replayed campaign, replayed again when the ledger's signature changed."""

    def __init__(self, config: CampaignConfig, loader: Callable[[CampaignConfig], view.Campaign] = view.load) -> None:
        self.config = config
        self._loader = loader
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._campaign: view.Campaign | None = None
        self._data: dict[str, Any] | None = None
        self.replays = 0

    def current(self) -> tuple[view.Campaign, dict[str, Any]]:
        with self._lock:
            signature = ledger_signature(self.config)
            if self._campaign is None or signature != self._signature:
                self._campaign = self._loader(self.config)
                self._data = view.view_data(self._campaign)
                self._signature = signature
                self.replays += 1
            assert self._data is not None
            return self._campaign, self._data


def page_html(data: dict[str, Any] | None = None) -> str:
    """The page: served with its assets by URL, or with the assets and `data` inlined."""
    if data is None:
        head = '<link rel="stylesheet" href="/assets/view.css">'
        tail = '<script src="/assets/view.js"></script>'
    else:
        # "</" inside a script element would end it early: JSON may say "<\\/" instead.
        payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
        head = f"<style>{asset('view.css')}</style>"
        script = asset("view.js").replace("</", "<\\/")
        tail = (f'<script id="arborist-data" type="application/json">{payload}</script>\n'
                f"<script>{script}</script>")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; "
        "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:\">"
        f"<title>arborist</title>{head}</head>\n<body><div id=\"app\">Loading the campaign…</div>\n{tail}\n"
        "</body></html>\n"
    )


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"query parameter {name}={raw!r} is not a whole number") from exc


def make_handler(source: CampaignSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "arborist"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a page polling every few seconds would fill the terminal

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            try:
                self._route(url.path, query)
            except KeyError as exc:
                self._json({"error": f"no node {exc.args[0]!r} in this campaign"}, HTTPStatus.NOT_FOUND)
            except ValueError as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)

        def _route(self, path: str, query: dict[str, list[str]]) -> None:
            if path in ("/", "/index.html"):
                self._send(page_html().encode(), "text/html; charset=utf-8")
            elif path.startswith("/assets/") and path[len("/assets/"):] in ASSETS:
                name = path[len("/assets/"):]
                self._send(asset(name).encode(), ASSETS[name])
            elif path == "/api/view":
                self._json(source.current()[1])
            elif path == "/api/children":
                campaign = source.current()[0]
                self._json(view.children(campaign, query.get("node", [""])[0],
                                         _int(query, "offset", 0), _int(query, "limit", 50)))
            elif path == "/api/node":
                self._json(view.node_detail(source.current()[0], query.get("id", [""])[0]))
            elif path == "/api/nodes":
                self._json(view.nodes_page(source.current()[0], _int(query, "offset", 0),
                                           _int(query, "limit", 50), query.get("status", [""])[0]))
            else:
                self._json({"error": f"nothing at {path}; the page is at /"}, HTTPStatus.NOT_FOUND)

        def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(json.dumps(data, allow_nan=False, default=str).encode(), "application/json", status)

        def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def make_server(config: CampaignConfig, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to host:port (0: a free port), not yet serving."""
    server = ThreadingHTTPServer((host, port), make_handler(CampaignSource(config)))
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(config: CampaignConfig, host: str, port: int) -> int:
    """`arborist serve`: serve until interrupted."""
    try:
        server = make_server(config, host, port)
    except OSError as exc:
        print(f"arborist: cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port "
              "(0 picks a free one)", file=sys.stderr)
        return 2
    print(f"arborist: serving campaign {config.name} at {url_of(server)} (read-only; Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"arborist: warning: bound to {host}: anyone who can reach this machine can read the campaign",
              file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def write_html(config: CampaignConfig, path: Path) -> Path:
    """`arborist report --html FILE`: the view as one file, data and script inlined."""
    data = view.export(view.load(config))
    path.write_text(page_html(data), encoding="utf-8")
    return path
