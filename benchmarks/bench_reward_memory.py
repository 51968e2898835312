"""Benchmark: reward SFT's peak memory is flat in the number of preference pairs.

For 1k and 10k oracle preference pairs (tiny profile, 64 px), one epoch of training runs in a fresh
process each, with the bounded image cache (the default ``image_cache``) and with an unbounded one
(every decoded image kept, the former behaviour), and prints each process's peak RSS.

``OMP_NUM_THREADS=1 python benchmarks/bench_reward_memory.py [--pairs 1000 10000] [--epochs 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_results  # noqa: E402

CHILD = """
import json, resource, sys, time
from onereward.reward import stage
t0 = time.perf_counter()
m = stage.run(sys.argv[1], sys.argv[2], profile=sys.argv[3], max_steps=int(sys.argv[4]),
              image_cache=int(sys.argv[5]), keep_checkpoints=0, seed=0)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "train_pairs": m["n_train_pairs"]}))
"""


def main() -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    from onereward.models import reward_vlm
    from onereward.reward.data import read_preferences
    from onereward.reward.oracle_preferences import make_oracle_preferences

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reward_vlm.build_tiny(root / "vlm", seed=0)
        text = resources.files("onereward.profiles").joinpath("tiny.yaml").read_text()
        text = text.replace(
            'reward_model: {ref: "zoo:reward_vlm"}', f'reward_model: {{ref: "{root / "vlm"}"}}'
        )
        (root / "profile.yaml").write_text(text)
        for n_pairs in args.pairs:
            prefs = root / f"prefs{n_pairs}"
            make_oracle_preferences(prefs, max(20, int(n_pairs / 2.3)), seed=1)  # ~2.3 pairs per item
            n = len(read_preferences(prefs).pairs)
            steps = max(1, int(args.epochs * n * 0.8 / 8))  # batch 16 = 8 pairs; 80 % of pairs train
            for label, cache in (("bounded (4096 images)", 4096), ("unbounded", 10**9)):
                out = root / f"rm{n_pairs}-{cache}"
                run = subprocess.run(
                    [sys.executable, "-c", CHILD, str(prefs), str(out), str(root / "profile.yaml"), str(steps), str(cache)],
                    capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                )  # fmt: skip
                if run.returncode != 0:
                    raise SystemExit(run.stderr[-2000:])
                got = json.loads(run.stdout.strip().splitlines()[-1])
                results.append({"pairs": n, "steps": steps, "cache": label, **got})
                rows.append([n, steps, label, f"{got['peak_rss_mb']:.0f}", f"{got['seconds']:.0f}"])
    print_table(
        "reward SFT peak RSS over one epoch (tiny, 64 px)",
        ["pairs", "steps", "image cache", "peak RSS (MB)", "s"],
        rows,
    )
    write_results("reward_memory", {"runs": results})
    return {"runs": results}


if __name__ == "__main__":
    main()
