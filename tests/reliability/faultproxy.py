"""A small HTTP proxy on 127.0.0.1 that sits between a stage and a real Label Studio server and
injects faults: slow answers, HTTP 401/500 (instead of the server's answer, or after the server did
the work and its answer is lost), dropped connections, and actions such as stopping the server at
a chosen request. Every request is logged with the time it arrived and what was done to it.

Only for tests: one thread per connection, bodies buffered in memory.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Rule:
    """What to do to the next ``times`` requests whose method and path match.

    ``action``: ``status`` (answer ``status``), ``delay`` (wait ``seconds``, then forward), ``drop``
    (close the connection without an answer) or ``call`` (run ``callback``). With ``after`` the
    request reaches the server first and the fault replaces its answer (the server did the work;
    a ``call`` runs before the client gets the answer). The first ``skip`` matches pass untouched.
    """

    path: str
    action: str
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    times: float = 1
    after: bool = False
    callback: Callable[[], None] | None = None
    skip: int = 0
    hits: int = 0
    seen: int = 0

    def take(self, method: str, path: str) -> bool:
        """Does this rule apply to the request (counting it)?"""
        if self.hits >= self.times or (self.method is not None and self.method != method):
            return False
        if re.search(self.path, path) is None:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        self.hits += 1
        return True


@dataclass
class Entry:
    t: float
    method: str
    path: str
    fault: str  # "" when forwarded untouched
    status: int | None  # what the client got (None: no answer)


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:8080
    rules: list[Rule] = field(default_factory=list)
    log: list[Entry] = field(default_factory=list)
    on_fault: Callable[[str], None] | None = None  # told about every fault injected
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, **kw) -> Rule:
        rule = Rule(**kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def requests(self, path: str = "", method: str | None = None) -> list[Entry]:
        return [e for e in self.log if re.search(path, e.path) and (method is None or e.method == method)]

    def _take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.take(method, path):
                    return rule
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                t = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                rule = proxy._take(self.command, self.path)
                fault = f"{rule.action}{'-after' if rule.after else ''}" if rule else ""
                if rule and proxy.on_fault:
                    proxy.on_fault(f"{rule.action} {rule.status if rule.action == 'status' else ''}".strip())
                if rule and not rule.after:
                    if rule.action == "delay":
                        time.sleep(rule.seconds)
                    elif rule.action == "call":
                        rule.callback()
                    elif rule.action == "drop":
                        return self._log(t, fault, None, close=True)
                    elif rule.action == "status":
                        return self._answer(t, fault, rule.status, _error_body(rule.status))
                status, headers, data = self._forward(body)
                if status is None:  # the server is down: the client sees a closed connection
                    return self._log(t, fault or "upstream-down", None, close=True)
                if rule and rule.after:
                    if rule.action == "status":
                        return self._answer(t, fault, rule.status, _error_body(rule.status))
                    if rule.action == "drop":
                        return self._log(t, fault, None, close=True)
                    if rule.action == "delay":
                        time.sleep(rule.seconds)
                    if rule.action == "call":
                        rule.callback()
                self._answer(t, fault, status, data, headers)

            def _forward(self, body: bytes | None):
                up = urlsplit(proxy.upstream)
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=600)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                headers["Host"] = up.netloc
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, resp.getheaders(), data
                except OSError:
                    return None, [], b""
                finally:
                    conn.close()

            def _answer(self, t, fault, status, data, headers=()) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers:
                        if k.lower() not in HOP_BY_HOP | {"content-length"}:
                            self.send_header(k, v)
                    if not headers:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (its timeout) before the answer
                    status = None
                self._log(t, fault, status)

            def _log(self, t, fault, status, close: bool = False) -> None:
                if close:
                    self.close_connection = True
                with proxy._lock:
                    proxy.log.append(Entry(t, self.command, self.path, fault, status))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _error_body(status: int) -> bytes:
    detail = {401: "Invalid token.", 500: "Internal server error (injected by the test proxy)"}
    return json.dumps({"detail": detail.get(status, f"HTTP {status} (injected)")}).encode()
