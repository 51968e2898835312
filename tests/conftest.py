"""Shared fixtures: an isolated onereward cache per test session, and the tiny profile's zoo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def onereward_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point ONEREWARD_CACHE at a session temp dir (inherited by kfp.local subprocesses) unless CI
    or the developer set it explicitly, so tests never touch ~/.cache."""
    if os.environ.get("ONEREWARD_TEST_CACHE"):
        cache = Path(os.environ["ONEREWARD_TEST_CACHE"])
    else:
        cache = tmp_path_factory.mktemp("onereward-cache")
    os.environ["ONEREWARD_CACHE"] = str(cache)
    # Tests talk to 127.0.0.1 only: hub ids resolve from the local Hugging Face cache, never the hub
    # (tests/test_model_refs.py serves a local hub and sets HF_ENDPOINT for its own processes).
    os.environ["HF_HUB_OFFLINE"] = "1"
    return cache


@pytest.fixture(scope="session")
def tiny_zoo(onereward_cache: Path) -> Path:
    """The tiny profile's zoo, built once per session through the real cache path."""
    from onereward.zoo import ensure_zoo

    return ensure_zoo("tiny")
