"""Bearer tokens for the KFP and Kubernetes APIs, from the environment or a kubeconfig.

A token is never printed: :class:`BearerToken` hides its value from ``repr`` and carries a
``source`` (where it came from) for messages. Lookup order for the KFP API (:func:`kfp_token`):

1. ``KF_PIPELINES_TOKEN``: the token itself;
2. ``KF_PIPELINES_SA_TOKEN_PATH``: a file holding it (the variable kfp.Client reads; inside a
   Kubeflow pod the projected service-account token lives at
   ``/var/run/secrets/kubeflow/pipelines/token``);
3. the kubeconfig (``$KUBECONFIG``, first file of the list, else ``~/.kube/config``): the
   ``token`` or ``tokenFile`` of the current context's user. Users that authenticate through an
   ``exec`` plugin or an ``auth-provider`` are not run here; export a token instead.

No token at all is fine for an open endpoint (e.g. a port-forwarded ``ml-pipeline`` service).
The kubeconfig YAML is parsed here rather than with the ``kubernetes`` client, so this works with
nothing but PyYAML.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onereward.errors import InputError

TOKEN_ENV = "KF_PIPELINES_TOKEN"
TOKEN_FILE_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


@dataclass(frozen=True)
class BearerToken:
    """A bearer token (value hidden from ``repr``) and where it was found."""

    value: str = field(repr=False)
    source: str

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header carrying the token."""
        return {"Authorization": f"Bearer {self.value}"}


def kfp_token(env: Mapping[str, str] | None = None) -> BearerToken | None:
    """The token for the KFP API (lookup order in the module docstring); None when there is none."""
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV, "").strip():
        return BearerToken(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if env.get(TOKEN_FILE_ENV, "").strip():
        return _token_file(Path(env[TOKEN_FILE_ENV].strip()), f"${TOKEN_FILE_ENV}")
    return kubeconfig_token(env)


def kubeconfig_token(env: Mapping[str, str] | None = None) -> BearerToken | None:
    """The current kubeconfig user's static token (``token`` or ``tokenFile``), or None."""
    env = os.environ if env is None else env
    path = kubeconfig_path(env)
    if path is None:
        return None
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"kubeconfig {path}: not valid YAML ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise InputError(f"kubeconfig {path}: expected a mapping at the top level")
    current = doc.get("current-context")
    if not current:
        return None
    context = _named(doc, "contexts", current, path).get("context") or {}
    user_name = context.get("user")
    if not user_name:
        return None
    user = _named(doc, "users", user_name, path).get("user") or {}
    if user.get("token"):
        return BearerToken(str(user["token"]).strip(), f"kubeconfig {path} user {user_name!r}")
    if user.get("tokenFile"):
        return _token_file(Path(user["tokenFile"]), f"kubeconfig {path} user {user_name!r} tokenFile")
    return None  # exec / auth-provider / client certificates: nothing we can send as a bearer token


def kubeconfig_path(env: Mapping[str, str]) -> Path | None:
    """The kubeconfig file in use: the first existing entry of ``$KUBECONFIG``, else ``~/.kube/config``."""
    if env.get("KUBECONFIG"):
        for entry in env["KUBECONFIG"].split(os.pathsep):
            if entry and Path(entry).expanduser().is_file():
                return Path(entry).expanduser()
        return None
    home = env.get("HOME") or str(Path.home())
    default = Path(home) / ".kube" / "config"
    return default if default.is_file() else None


def _named(doc: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise InputError(f"kubeconfig {path}: {section} has no entry named {name!r}")


def _token_file(path: Path, source: str) -> BearerToken:
    try:
        value = path.expanduser().read_text().strip()
    except OSError as e:
        raise InputError(f"{source}: cannot read token file {path} ({e.strerror})") from None
    if not value:
        raise InputError(f"{source}: token file {path} is empty")
    return BearerToken(value, f"{source} ({path})")
