"""A local S3-compatible server for tests and benchmarks: moto's standalone server on 127.0.0.1.

``moto[server]`` is a development dependency (``pip install -e .[dev]``); its ``moto_server``
program runs as its own process on a free port and is stopped by its process handle. It speaks
the S3 REST API that boto3 and Label Studio use, so the upload, presigned-URL and
storage-connection code of the S3 route runs unchanged against it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from onereward.errors import InputError
from onereward.testing.local_label_studio import free_port

# Throwaway credentials for the local server only.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "onereward-test",
    "AWS_SECRET_ACCESS_KEY": "onereward-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def running_s3(log_dir: Path) -> Iterator[str]:
    """Start moto's S3 server; yields its endpoint URL (``http://127.0.0.1:<port>``)."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.is_file():
        raise InputError(f"{exe}: not found; install the development extras (pip install -e '.[dev]')")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "moto.log", "ab")  # noqa: SIM115 - the process owns it until stop
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log_dir / 'moto.log'}")
            try:
                urllib.request.urlopen(endpoint + "/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer at {endpoint}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
