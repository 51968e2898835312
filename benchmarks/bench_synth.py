"""Synthetic world timings: pool writing, oracle calls per task, synthetic candidates.

Usage: ``python benchmarks/bench_synth.py [--items 96] [--calls 2000]``.
Target: ``oracle.score_all`` about 1 ms per call at 64 px (annotators simulate thousands of calls).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402


def _oracle_ms(items: list[dict], calls: int) -> dict[str, tuple[float, float]]:
    """Mean (wall ms, CPU ms) per ``score_all`` per task kind, over synthetic candidates.

    CPU time (``time.process_time``) is the figure to compare on a shared machine: wall time
    also counts the time other processes hold the cores.
    """
    from onereward.synth import oracle
    from onereward.synth.candidates import SyntheticItem, synthesize_candidates

    cases: dict[str, list[tuple]] = {}
    for k, raw in enumerate(items):
        item = SyntheticItem.from_world(raw)
        kind = (
            item.task
            if item.task != "image_extend"
            else ("image_extend+prompt" if item.prompt else "image_extend")
        )
        if item.meta.get("prompted") == "text":
            kind = "image_fill (text)"
        for result, _ in synthesize_candidates(item, 4, np.random.default_rng(k)):
            cases.setdefault(kind, []).append((item.task, item.source, item.mask, item.prompt, result))
    out = {}
    for kind, calls_of_kind in sorted(cases.items()):
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while n < calls // len(cases):
            for case in calls_of_kind:
                oracle.score_all(*case)
                n += 1
        out[kind] = (1000 * (time.perf_counter() - t0) / n, 1000 * (time.process_time() - c0) / n)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96, help="pool size")
    parser.add_argument("--calls", type=int, default=2000, help="oracle calls per image size")
    args = parser.parse_args(argv)

    from onereward.synth import stage as synth_stage
    from onereward.synth import world
    from onereward.synth.candidates import make_candidates

    rows = []
    results: dict = {"oracle_ms": {}, "oracle_cpu_ms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for size in (64, 256):
            t0 = time.perf_counter()
            synth_stage.make_pool(tmp_path / f"pool{size}", args.items, 0, image_size=size)
            secs = time.perf_counter() - t0
            results[f"pool_items_per_s_{size}px"] = round(args.items / secs, 1)
            rows.append([f"make_pool {args.items} items", f"{size} px", f"{args.items / secs:.1f} items/s"])
        t0 = time.perf_counter()
        manifest = make_candidates(tmp_path / "pool64", tmp_path / "cands", per_item=4, seed=0)
        secs = time.perf_counter() - t0
        n = manifest.counts["n_candidates"]
        results["candidates_per_s_64px"] = round(n / secs, 1)
        rows.append(
            [f"make_candidates {n} candidates (incl. oracle report)", "64 px", f"{n / secs:.1f} cand/s"]
        )
    for size in (64, 256):
        items = world.sample_items(min(args.items, 48), 1, size)
        per_kind = _oracle_ms(items, args.calls if size == 64 else max(200, args.calls // 10))
        results["oracle_ms"][f"{size}px"] = {k: round(v[0], 3) for k, v in per_kind.items()}
        results["oracle_cpu_ms"][f"{size}px"] = {k: round(v[1], 3) for k, v in per_kind.items()}
        for kind, (wall, cpu) in per_kind.items():
            rows.append(
                [f"oracle.score_all {kind}", f"{size} px", f"{wall:.2f} ms/call wall, {cpu:.2f} ms CPU"]
            )
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print_table("synthetic world timings", ["what", "size", "rate"], rows)
    write_results("synth", results)
    return results


if __name__ == "__main__":
    main()
