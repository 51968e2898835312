"""Benchmark conventions: every ``bench_*.py`` prints a table and writes JSON.

A benchmark script defines ``main(argv: list[str] | None = None) -> dict`` and ends with
``if __name__ == "__main__": main()``. It measures, prints one table with :func:`print_table`, and
writes its figures with :func:`write_results` to ``benchmarks/results/<name>.json`` (or to
``$ONEREWARD_BENCH_OUT``). ``python benchmarks/run_all.py`` runs them all; none is part of the tests.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(os.environ.get("ONEREWARD_BENCH_OUT", Path(__file__).resolve().parent / "results"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a fixed-width table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(c) for c in r] for r in rows]
    widths = [
        max(len(str(c)), *(len(r[i]) for r in cells)) if cells else len(str(c)) for i, c in enumerate(columns)
    ]
    lines = [title, "  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_results(
    name: str, data: dict[str, Any], also_to: Path | None = None, *, shared: bool = True
) -> Path:
    """Write ``data`` (plus machine info and a timestamp) to ``<RESULTS_DIR>/<name>.json``, and to
    ``also_to/<name>.json`` when given (a bench's own workdir: two benches of one name running side
    by side each keep theirs there; the shared file holds the one that finished last). ``shared``
    False: only ``also_to`` (figures of something that is not the package's own, e.g. weights not
    installed). Returns the first path written."""
    payload = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    payload.update(data)
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    folders = [f for f in (RESULTS_DIR if shared else None, also_to) if f is not None]
    if not folders:
        raise ValueError("write_results: nowhere to write (shared=False and no also_to)")
    path = folders[0] / f"{name}.json"
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.json"
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
        print(f"results: {target}", flush=True)
    return path
