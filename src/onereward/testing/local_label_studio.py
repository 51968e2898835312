"""A local Label Studio server for tests, benchmarks and the screenshot script.

Label Studio's pins clash with ours, so the server lives in its own virtual environment
(``scripts/install_label_studio.sh``, default ``<repo>/.venv-labelstudio``). The first start on an
empty data directory runs the Django migrations (about 40 s); :func:`migrated_template` does that
once and later servers start from a copy of the migrated directory (about 5 s).

The admin user and its legacy API token are created from environment variables on the first
start only; the token is generated here per template (random, never written to an artifact) and
handed to clients through ``LABEL_STUDIO_API_KEY``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("testing.local_label_studio")

LABEL_STUDIO_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install_label_studio.sh"
ADMIN_USERNAME = "admin@onereward.local"


def default_venv() -> Path:
    """Where the Label Studio venv lives: ``$ONEREWARD_LABEL_STUDIO_VENV`` or ``<repo>/.venv-labelstudio``."""
    return Path(os.environ.get("ONEREWARD_LABEL_STUDIO_VENV", REPO_ROOT / ".venv-labelstudio"))


def ensure_installed(venv: str | os.PathLike[str] | None = None) -> Path:
    """Install Label Studio into ``venv`` when missing (runs the install script); return the executable."""
    venv = Path(venv) if venv else default_venv()
    exe = venv / "bin" / "label-studio"
    marker = venv / f".onereward-label-studio-{LABEL_STUDIO_VERSION}"
    if exe.is_file() and marker.is_file():
        return exe
    if not INSTALL_SCRIPT.is_file():
        raise InputError(
            f"Label Studio: {exe} is missing and the install script {INSTALL_SCRIPT} is not there"
        )
    log.info("installing Label Studio %s into %s (about a minute)", LABEL_STUDIO_VERSION, venv)
    subprocess.run(["bash", str(INSTALL_SCRIPT), str(venv)], check=True)
    return exe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalLabelStudio:
    """One Label Studio server process on 127.0.0.1 with its own data directory.

    ``document_root`` is the Local Storage document root (images handed to annotators go under it).
    Use :meth:`start` / :meth:`stop` (or the context manager); :meth:`stop` ends only this process.
    """

    data_dir: Path
    document_root: Path
    token: str
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    venv: Path | None = None
    # Extra server settings (e.g. S3 credentials, SSRF subnets); never logged.
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment of the server process: headless, no telemetry, legacy token, local files on."""
        env = dict(os.environ)
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_USERNAME": ADMIN_USERNAME,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "DJANGO_DB": "sqlite",
                # Label Studio defaults to DEBUG with root logging at DEBUG, which logs every SQL
                # query and makes exports several times slower.
                "DEBUG": "false",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> LocalLabelStudio:
        """Start the server and wait until ``/health`` answers (first start runs migrations)."""
        exe = ensure_installed(self.venv)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.document_root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.log_path = self.data_dir / "server.log"
        logf = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it until stop()
        cmd = [
            str(exe),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--username",
            ADMIN_USERNAME,
            # The password and token reach the server through its environment only
            # (LABEL_STUDIO_PASSWORD / LABEL_STUDIO_USER_TOKEN): a command line is visible in `ps`.
        ]
        self.process = subprocess.Popen(
            cmd, env=self.env(), stdout=logf, stderr=subprocess.STDOUT, cwd=self.data_dir
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Label Studio exited with code {self.process.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        log.info("Label Studio up at %s (pid %d)", self.url, self.process.pid)
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"Label Studio did not answer at {self.url} within {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        """Stop this server process (and only it)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> LocalLabelStudio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def migrated_template(template_dir: str | os.PathLike[str]) -> tuple[Path, str, str]:
    """A data directory migrated once (admin user + token created); returns (dir, token, password).

    Reused when ``template_dir/ready.json`` exists, so migrations run once per machine/CI job.
    """
    template_dir = Path(template_dir)
    ready = template_dir / "ready.json"
    if ready.is_file():
        info = json.loads(ready.read_text())
        return template_dir / "data", info["token"], info["password"]
    shutil.rmtree(template_dir, ignore_errors=True)
    token = secrets.token_hex(20)
    server = LocalLabelStudio(
        data_dir=template_dir / "data", document_root=template_dir / "files", token=token
    )
    t0 = time.perf_counter()
    with server:
        pass
    log.info("migrated a Label Studio template data dir in %.1f s", time.perf_counter() - t0)
    # The token only opens servers started from copies of this throwaway local directory.
    ready.write_text(json.dumps({"token": token, "password": server.password}))
    os.chmod(ready, 0o600)
    return template_dir / "data", token, server.password


def server_from_template(
    template_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    extra_env: dict[str, str] | None = None,
) -> LocalLabelStudio:
    """A (not yet started) server whose data dir is a fresh copy of the migrated template."""
    data, token, password = migrated_template(template_dir)
    work_dir = Path(work_dir)
    shutil.rmtree(work_dir / "data", ignore_errors=True)
    shutil.copytree(data, work_dir / "data", ignore=shutil.ignore_patterns("server.log"))
    return LocalLabelStudio(
        data_dir=work_dir / "data",
        document_root=work_dir / "files",
        token=token,
        password=password,
        extra_env=dict(extra_env or {}),
    )


if __name__ == "__main__":  # manual use: python -m onereward.testing.local_label_studio DIR
    srv = server_from_template(Path(sys.argv[1]) / "template", Path(sys.argv[1]) / "run")
    srv.start()
    print(json.dumps({"url": srv.url, "pid": srv.process.pid if srv.process else None}))
    try:
        srv.process.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        srv.stop()
