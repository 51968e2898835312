"""Run every benchmark in this folder (``bench_*.py``), one process each, and summarise.

Usage: ``python benchmarks/run_all.py [--only NAME ...] [--list]``. Not part of the test suite.
Each benchmark prints its own table and writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (file stem without bench_)")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="arguments passed to every benchmark after --"
    )
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.list:
        for s in scripts:
            print(s.stem[len("bench_") :])
        return 0
    if args.only:
        wanted = set(args.only)
        scripts = [s for s in scripts if s.stem[len("bench_") :] in wanted]
    extra = [a for a in args.extra if a != "--"]
    failures = []
    summary = []
    for script in scripts:
        t0 = time.perf_counter()
        print(f"\n=== {script.stem} ===", flush=True)
        rc = subprocess.call([sys.executable, str(script), *extra])
        summary.append((script.stem, rc, time.perf_counter() - t0))
        if rc != 0:
            failures.append(script.stem)
    print("\n=== summary ===")
    for name, rc, secs in summary:
        print(f"{name:40s} rc={rc} {secs:7.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
