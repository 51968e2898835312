"""Label Studio API access: the SDK client with retries, backoff and clear errors.

The token comes only from the environment (``LABEL_STUDIO_API_KEY``; on the cluster a Kubernetes
Secret mounted as that variable), never from a parameter, an artifact or a log line. A server
that is down is retried with exponential backoff and then reported as an :class:`InputError`
naming the URL; a rejected token is reported at once (retrying cannot fix it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("annotate.client")

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
T = TypeVar("T")

# Errors that mean "the server is not reachable right now": worth retrying. Timeouts (a slow
# server) are transport errors too. A retried write is safe: creates and task imports look up what
# the server already stored before they send again (export.py, simulate.py).
_TRANSIENT = (httpx.TransportError,)
# Answers worth retrying: rate limiting, and server errors that a restart or a moment cures (a 500
# from a worker that died mid-request, a proxy's 502/503/504).
_RETRY_STATUS = {429, 500, 502, 503, 504}


class LabelStudioUnavailable(InputError):
    """The server did not answer after all retries."""


def token_from_env() -> str:
    """The API token from ``LABEL_STUDIO_API_KEY``; a clear error when it is not set."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise InputError(
            f"{TOKEN_ENV}: not set; export the Label Studio API token (Account & Settings > Access Token) "
            "or mount the Kubernetes Secret that holds it"
        )
    return token


def _short_body(body: Any, limit: int = 300) -> str:
    try:
        text = body if isinstance(body, str) else json.dumps(body)
    except (TypeError, ValueError):
        text = str(body)
    return text[:limit]


class LabelStudioClient:
    """The SDK client plus retry/backoff and error translation for every call.

    ``max_retries`` attempts after the first one, sleeping ``backoff * 2**k`` seconds (capped at 10 s)
    between attempts, for connection errors, timeouts (``timeout`` seconds per answer) and
    429/500/502/503/504 answers.
    """

    def __init__(
        self, url: str, *, max_retries: int = 4, backoff: float = 0.5, timeout: float = 120.0
    ) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise InputError(f"--label-studio-url: expected an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.sdk = LabelStudio(base_url=self.url, api_key=token_from_env(), timeout=timeout)
        # The SDK's own silent retries (2, without backoff) would multiply ours; this class owns them.
        http = getattr(getattr(self.sdk, "_client_wrapper", None), "httpx_client", None)
        if http is not None and hasattr(http, "base_max_retries"):
            http.base_max_retries = 0

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` with retries; ``what`` names the operation in errors and logs."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except ApiError as e:
                if e.status_code in (401, 403):
                    raise InputError(
                        f"{TOKEN_ENV}: Label Studio at {self.url} rejected the token ({e.status_code}) while "
                        f"trying to {what}; check the token of the user who owns the project"
                    ) from None
                if e.status_code not in _RETRY_STATUS or attempt >= self.max_retries:
                    tries = f" after {attempt + 1} attempts" if e.status_code in _RETRY_STATUS else ""
                    raise InputError(
                        f"--label-studio-url: Label Studio at {self.url}: {what} failed with HTTP {e.status_code}"
                        f"{tries}: {_short_body(e.body)}"
                    ) from None
                reason = f"HTTP {e.status_code}"
            except _TRANSIENT as e:
                if attempt >= self.max_retries:
                    raise LabelStudioUnavailable(
                        f"--label-studio-url: Label Studio at {self.url} is not reachable ({type(e).__name__}) "
                        f"while trying to {what}, after {attempt + 1} attempts; start the server or fix the URL, "
                        "then rerun (work already done is kept and not duplicated)"
                    ) from None
                reason = type(e).__name__
            delay = min(self.backoff * 2**attempt, 10.0)
            attempt += 1
            log.warning(
                "%s: %s at %s; retry %d/%d in %.1f s",
                what,
                reason,
                self.url,
                attempt,
                self.max_retries,
                delay,
            )
            time.sleep(delay)

    # --- small helpers over the SDK -------------------------------------------------------------

    def check_auth(self) -> int:
        """Id of the user the token belongs to (fails fast on a down server or a wrong token)."""
        return int(self.call("check the token", self.sdk.users.whoami).id)

    def find_project(self, title: str) -> Any | None:
        """The project with exactly this title, or None; several with that title is an error."""
        return self.call(f"look up project {title!r}", self.find_project_once, title)

    def find_project_once(self, title: str) -> Any | None:
        """One attempt of find_project (no retries)."""
        matches = [p for p in self.sdk.projects.list(title=title, page_size=100) if p.title == title]
        if len(matches) > 1:
            raise InputError(
                f"{self.url}: {len(matches)} projects are titled {title!r} "
                f"(ids {sorted(int(p.id) for p in matches)}); expected at most one. Delete or "
                "rename the duplicates in Label Studio, then rerun."
            )
        return matches[0] if matches else None

    def export_tasks_once(
        self, project_id: int, *, poll_timeout: float = 1800.0, poll_interval: float = 0.2
    ) -> list[dict[str, Any]]:
        """All tasks of a project with every annotation (skipped and ground truth too), one attempt.

        Uses an export snapshot: create it (all tasks; all annotations; drafts and predictions as
        ids only; no annotation history), wait until it is ``completed`` (Label Studio builds it in
        the request, or in a background worker on a cluster with Redis), download it as JSON, then
        delete it so snapshots do not pile up on the server. Measured on 10,000 annotated tasks
        (benchmarks/bench_label_studio.py, 2 cores): 12 s, against 33 s for paging through the
        data manager's task list (``/api/tasks/?fields=all``, which computes every data-manager
        column) and 47 s for the synchronous ``/export`` endpoint.
        """
        exports = self.sdk.projects.exports
        t0 = time.perf_counter()
        snapshot = self._create_export_snapshot(project_id)
        export_id = int(snapshot.id)
        try:
            self._wait_for_snapshot(project_id, export_id, snapshot.status, poll_timeout, poll_interval)
            body = b"".join(exports.download(project_id, export_id, export_type="JSON"))
        finally:
            try:
                exports.delete(project_id, export_id)
            except (ApiError, *_TRANSIENT) as e:  # best effort: a leftover snapshot is harmless
                log.warning("could not delete export snapshot %d of project %d: %s", export_id, project_id, e)
        tasks = self._parse_export(project_id, body)
        seconds = time.perf_counter() - t0
        log.info(
            "project %d: %d tasks read from export snapshot %d (%.1f MB) in %.1f s (%.0f tasks/s)",
            project_id,
            len(tasks),
            export_id,
            len(body) / 1e6,
            seconds,
            len(tasks) / max(seconds, 1e-9),
        )
        return tasks

    def _create_export_snapshot(self, project_id: int) -> Any:
        """Start an export snapshot of every task and annotation (ids only for drafts, predictions
        and annotators; no history)."""
        from label_studio_sdk.types import (
            LseAnnotationFilterOptionsRequest,
            LseTaskFilterOptionsRequest,
            SerializationOptionRequest,
            SerializationOptionsRequest,
        )

        only_id = SerializationOptionRequest(only_id=True)
        return self.sdk.projects.exports.create(
            project_id,
            title=f"onereward import {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
            task_filter_options=LseTaskFilterOptionsRequest(only_with_annotations=False),
            annotation_filter_options=LseAnnotationFilterOptionsRequest(
                usual=True, ground_truth=True, skipped=True
            ),
            serialization_options=SerializationOptionsRequest(
                drafts=only_id,
                predictions=only_id,
                annotations_completed_by=only_id,
                include_annotation_history=False,
                interpolate_key_frames=False,
            ),
        )

    def _wait_for_snapshot(
        self, project_id: int, export_id: int, status: str, poll_timeout: float, poll_interval: float
    ) -> None:
        """Poll the snapshot (growing intervals, at most 5 s) until it is ``completed``."""
        deadline, delay = time.monotonic() + poll_timeout, poll_interval
        while status != "completed":
            if status == "failed":
                raise InputError(
                    f"Label Studio at {self.url}: the export snapshot {export_id} of project {project_id} "
                    "failed on the server; see the server's log, then rerun"
                )
            if time.monotonic() > deadline:
                raise InputError(
                    f"Label Studio at {self.url}: the export snapshot {export_id} of project {project_id} "
                    f"is still {status!r} after {poll_timeout:.0f} s; is the server's export worker running?"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            status = self.sdk.projects.exports.get(project_id, export_id).status

    def _parse_export(self, project_id: int, body: bytes) -> list[dict[str, Any]]:
        """The downloaded export as a list of tasks (a clear error when it is not one)."""
        try:
            tasks = json.loads(body)
        except json.JSONDecodeError as e:
            raise InputError(
                f"Label Studio at {self.url}: the export of project {project_id} is not valid JSON ({e})"
            ) from None
        if not isinstance(tasks, list):
            raise InputError(
                f"Label Studio at {self.url}: the export of project {project_id} is not a list of tasks"
            )
        return tasks

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """All tasks of a project with their annotations, with retries."""
        return self.call(f"export the tasks of project {project_id}", self.export_tasks_once, project_id)

    def ensure_user(self, username: str) -> int:
        """Id of the user ``username`` (an e-mail address), created when missing."""
        users = self.call("list users", self.sdk.users.list)
        for u in users:
            if u.username == username or u.email == username:
                return int(u.id)
        user = self.call(f"create user {username}", self.sdk.users.create, username=username, email=username)
        return int(user.id)
