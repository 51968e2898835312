"""Logging and throughput reporting shared by all stages."""

from __future__ import annotations

import logging
import os
import sys
import time

_CONFIGURED = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest and notebooks swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; we always follow sys.stderr
        pass


def get_logger(name: str) -> logging.Logger:
    """A logger writing ``time level name: message`` to stderr (level from ONEREWARD_LOG_LEVEL)."""
    global _CONFIGURED
    if not _CONFIGURED:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root = logging.getLogger("onereward")
        root.addHandler(handler)
        root.setLevel(os.environ.get("ONEREWARD_LOG_LEVEL", "INFO"))
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name if name.startswith("onereward") else f"onereward.{name}")


class Throughput:
    """Counts units over wall time: ``with Throughput('images') as t: ...; t.add(n)``; ``t.rate``."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.count = 0
        self.t0 = time.perf_counter()
        self.elapsed = 0.0

    def __enter__(self) -> Throughput:
        self.t0 = time.perf_counter()
        return self

    def add(self, n: int) -> None:
        self.count += n

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        elapsed = self.elapsed or (time.perf_counter() - self.t0)
        return self.count / elapsed if elapsed > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.count} {self.unit} in {self.elapsed:.2f}s ({self.rate:.1f} {self.unit}/s)"
