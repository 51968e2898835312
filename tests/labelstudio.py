"""A real Label Studio server for the annotation tests (used by tests/test_annotate_labelstudio.py).

The server is installed into its own venv on first use (``scripts/install_label_studio.sh``,
about a minute), migrated once into a template data dir kept beside that venv (about 40 s), and
each test session starts a server from a fresh copy of the template (about 5 s) on a free port
of 127.0.0.1. Only the server started here is stopped, by its process handle.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from onereward.testing.local_label_studio import (
    LocalLabelStudio,
    default_venv,
    ensure_installed,
    server_from_template,
)


def template_dir() -> Path:
    """Migrated template data dir: ``$ONEREWARD_LABEL_STUDIO_TEMPLATE`` or inside the server's venv."""
    return Path(os.environ.get("ONEREWARD_LABEL_STUDIO_TEMPLATE", default_venv() / "onereward-template"))


@contextlib.contextmanager
def running_label_studio(
    work_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[LocalLabelStudio]:
    """A running server; ``LABEL_STUDIO_API_KEY`` is set to its admin token while it runs."""
    ensure_installed()
    server = server_from_template(template_dir(), work_dir, extra_env=extra_env)
    server.start()
    old = os.environ.get("LABEL_STUDIO_API_KEY")
    os.environ["LABEL_STUDIO_API_KEY"] = server.token
    try:
        yield server
    finally:
        server.stop()
        if old is None:
            os.environ.pop("LABEL_STUDIO_API_KEY", None)
        else:
            os.environ["LABEL_STUDIO_API_KEY"] = old
