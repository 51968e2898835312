"""A local Hugging Face hub for tests: serves model folders over the hub's HTTP endpoints.

No model hub is reachable from our machines, so the model resolver and ``import-models`` are tested
against this server on 127.0.0.1 (``HF_ENDPOINT=http://127.0.0.1:<port>``). It implements what
``huggingface_hub.snapshot_download`` calls: ``GET /api/models/<repo>/revision/<rev>`` (repo
info with the file list and the commit sha) and ``HEAD``/``GET /<repo>/resolve/<rev>/<file>``
(metadata headers ``X-Repo-Commit``, ``ETag``, ``Content-Length``; then the bytes). A repo listed
in ``private`` answers 401 without ``Authorization: Bearer <token>``. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class LocalHub:
    """``repos`` maps ``org/name`` to a local folder; ``token`` guards the ``private`` repos."""

    repos: dict[str, Path]
    private: set[str] = field(default_factory=set)
    token: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, auth)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sha(self, repo: str) -> str:
        """The commit sha of a repo: a hash of its files (stable while the folder is unchanged)."""
        h = hashlib.sha1()
        for p in sorted(self._files(repo)):
            h.update(p.encode())
            h.update((self.repos[repo] / p).read_bytes())
        return h.hexdigest()

    def _files(self, repo: str) -> list[str]:
        root = self.repos[repo]
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _answer(self, body: bytes | None) -> None:
                path = unquote(urlparse(self.path).path)
                auth = self.headers.get("Authorization", "")
                hub.requests.append((self.command, path, auth))
                repo, rest = _route(path)
                if repo is None or repo not in hub.repos:
                    return self._error(404, "Repository not found")
                if repo in hub.private and auth != f"Bearer {hub.token}":
                    return self._error(401, "Invalid credentials")
                sha = hub.sha(repo)
                if rest[0] == "tree":
                    entries = [
                        {"type": "file", "path": f, "size": (hub.repos[repo] / f).stat().st_size,
                         "oid": hashlib.sha1((hub.repos[repo] / f).read_bytes()).hexdigest()}
                        for f in sorted(hub._files(repo))
                    ]  # fmt: skip
                    return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})
                if rest[0] == "info":
                    info = {"id": repo, "modelId": repo, "sha": sha, "private": repo in hub.private,
                            "siblings": [{"rfilename": f} for f in sorted(hub._files(repo))]}  # fmt: skip
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
                file = hub.repos[repo] / rest[1]
                if not file.is_file():
                    return self._error(404, "Entry not found", {"X-Error-Code": "EntryNotFound"})
                data = file.read_bytes()
                headers = {
                    "X-Repo-Commit": sha,
                    "ETag": '"' + hashlib.sha256(data).hexdigest() + '"',
                    "Content-Type": "application/octet-stream",
                }
                return self._send(200, data if body is not None else b"", headers, length=len(data))

            def _send(
                self, code: int, data: bytes, headers: dict[str, str], length: int | None = None
            ) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(
                    code,
                    json.dumps({"error": message}).encode(),
                    {"X-Error-Message": message, **(headers or {})},
                )

            def do_GET(self) -> None:  # noqa: N802
                self._answer(b"")

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(None)

        return Handler


def _route(path: str) -> tuple[str | None, tuple[str, str]]:
    """``/api/models/<org>/<name>/revision/<rev>`` -> (repo, ("info", rev));
    ``/<org>/<name>/resolve/<rev>/<file>`` -> (repo, ("file", file))."""
    parts = path.strip("/").split("/")
    if len(parts) >= 5 and parts[:2] == ["api", "models"] and parts[4] == "tree":
        return f"{parts[2]}/{parts[3]}", ("tree", "/".join(parts[5:]))
    if len(parts) >= 5 and parts[:2] == ["api", "models"] and parts[4] == "revision":
        return f"{parts[2]}/{parts[3]}", ("info", "/".join(parts[5:]))
    if len(parts) >= 5 and parts[2] == "resolve":
        return f"{parts[0]}/{parts[1]}", ("file", "/".join(parts[4:]))
    return None, ("", "")
