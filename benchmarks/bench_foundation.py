"""Foundation timings: tiny zoo build, synthetic pool, and a local end_to_end pipeline run.

Usage: ``python benchmarks/bench_foundation.py [--items 48] [--skip-pipeline]``.
Targets: zoo build under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48, help="synthetic pool size")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip the local end_to_end run")
    args = parser.parse_args(argv)

    from onereward.synth.stage import make_pool
    from onereward.zoo import build_zoo

    rows = []
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        zoo = build_zoo("tiny", tmp_path / "zoo")
        secs = time.perf_counter() - t0
        results["zoo_build_s"] = round(secs, 2)
        results["zoo_build_per_model_s"] = {k: v for k, v in zoo.timings.items() if k.startswith("build_")}
        rows.append(["zoo build (tiny, 4 models)", f"{secs:.2f}", "target < 30 s"])

        t0 = time.perf_counter()
        make_pool(tmp_path / "pool", args.items, 0)
        secs = time.perf_counter() - t0
        results["synth_s"] = round(secs, 2)
        results["synth_items_per_s"] = round(args.items / secs, 1)
        rows.append([f"synth ({args.items} items)", f"{secs:.2f}", f"{args.items / secs:.1f} items/s"])

        if not args.skip_pipeline:
            from onereward_kfp.pipelines.runner import run_local

            t0 = time.perf_counter()
            summary = run_local("end_to_end", tmp_path / "run", {"synth_items": args.items})
            secs = time.perf_counter() - t0
            results["end_to_end_local_s"] = round(secs, 2)
            results["end_to_end_stage_s"] = {s: i["seconds"] for s, i in summary["stages"].items()}
            rows.append(["end_to_end local run", f"{secs:.2f}", f"{len(summary['stages'])} stages"])
            for stage, s in results["end_to_end_stage_s"].items():
                rows.append([f"  {stage} (inside the stage)", f"{s:.2f}", ""])
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print_table("foundation timings (seconds)", ["what", "seconds", "note"], rows)
    write_results("foundation", results)
    return results


if __name__ == "__main__":
    main()
