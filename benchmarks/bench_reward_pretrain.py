"""The tiny reward VLM on the trained generators' candidates: random weights vs the shipped
pretraining on the world's degraded pairs, by the number of annotated items.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_reward_pretrain.py [--items 2000]
[--sizes 100,300,500,all] [--world DIR]``.

The world: a synthetic pool (its own seed: neither the pretraining's world nor a demo uses it), 4
candidates per item from the tiny profile's trained FLUX-Fill (generate_candidates, the profile's
randomised sampling) and noise-free oracle best / worst preferences over them; split by item
(test 20 %). For each starting point - the zoo's architecture with seeded random weights, and the
zoo's reward VLM pretrained on degraded pairs (``models/weights/reward_vlm``) - the table gives
the zero-shot accuracy on the held-out generated pairs, then the accuracy after fine-tuning on the
pairs of the first N training items with the tiny profile's reward settings (what the demo's
train_reward_model does). Accuracy: mean over task x dimension cells (the gate's figure), its
lowest cell (the gate needs every cell >= 0.6), and the pooled query accuracy with a Wilson 95 %
interval. The demo annotates 500 items because of this table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402

WORLD_SEED = 11  # the pretraining world uses 7, the demo 0


def generated_world(root: Path, items: int, candidates: int, seed: int) -> Path:
    """Pool -> the trained base's candidates -> oracle preferences (reused when present)."""
    from onereward.generate.stage import run as generate
    from onereward.reward.oracle_preferences import write_oracle_preferences
    from onereward.synth.stage import run as synth

    prefs = root / "prefs"
    if (prefs / "manifest.json").is_file():
        return prefs
    synth(str(root / "pool"), items=items, seed=seed)
    generate(
        str(root / "pool"), str(root / "candidates"), profile="tiny", num_candidates=candidates, seed=seed
    )
    write_oracle_preferences(root / "candidates", prefs)
    return prefs


def evaluate(scorer: Any, pairs: list, store: Any) -> dict[str, Any]:
    from onereward.reward.evaluate import metrics_from_scores, score_pairs
    from onereward.stats import wilson_interval

    m = metrics_from_scores(score_pairs(scorer, pairs, store))
    cells = {f"{t}/{d}": v for t, dd in m["accuracy"].items() for d, v in dd.items()}
    n = 2 * len(pairs)
    lo, hi = wilson_interval(m["query_accuracy"] * n, n) if n else (float("nan"), float("nan"))
    return {"mean_accuracy": m["mean_accuracy"], "min_cell": min(cells.values()), "cells": cells,
            "query_accuracy": m["query_accuracy"], "query_interval": [lo, hi]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="items of the generated world")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--sizes", default="100,300,500,all", help="annotated training items per run")
    parser.add_argument("--world", default=None, help="keep (or reuse) the generated world here")
    args = parser.parse_args(argv)

    import torch

    from onereward.models import reward_vlm
    from onereward.profile import load_profile
    from onereward.reward.config import RewardConfig
    from onereward.reward.data import ImageStore, read_preferences, split_by_item
    from onereward.reward.stage import load_trainable_scorer
    from onereward.reward.train import train

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="bench_reward_pretrain_")
    root = Path(args.world) if args.world else Path(tmp.name)
    prefs = read_preferences(generated_world(root, args.items, args.candidates, WORLD_SEED))
    prof = load_profile("tiny")
    cfg = RewardConfig.resolve(prof.reward, {"keep_checkpoints": 0})
    train_pairs, test_pairs = split_by_item(prefs.pairs, test_fraction=cfg.test_fraction, seed=cfg.seed)
    train_items = sorted({p.item_id for p in train_pairs})
    world_s = time.perf_counter() - t0
    print(f"world: {args.items} items, {len(train_pairs)} train / {len(test_pairs)} test pairs "
          f"({len(train_items)} train items) in {world_s:.0f}s", flush=True)  # fmt: skip
    inits = {"random": root / "init_random", "pretrained": root / "init_pretrained"}
    reward_vlm.build_tiny(inits["random"], seed=0)
    reward_vlm.build_trained(inits["pretrained"])
    store = ImageStore(max_images=len(prefs.pairs) * 2 + 16, max_pixels=cfg.max_pixels)
    runs: list[dict[str, Any]] = []
    for init, folder in inits.items():
        scorer = load_trainable_scorer(str(folder), cfg, torch.device("cpu"))
        runs.append({"init": init, "items": 0, "train_pairs": 0, "seconds": 0.0,
                     **evaluate(scorer, test_pairs, store)})  # fmt: skip
        for size in args.sizes.split(","):
            n = len(train_items) if size == "all" else int(size)
            keep = set(train_items[:n])
            pairs = [p for p in train_pairs if p.item_id in keep]
            scorer = load_trainable_scorer(str(folder), cfg, torch.device("cpu"))
            t1 = time.perf_counter()
            train(scorer, pairs, store, cfg, checkpoint_dir=None, resume=False)
            runs.append({"init": init, "items": n, "train_pairs": len(pairs),
                         "seconds": time.perf_counter() - t1, **evaluate(scorer, test_pairs, store)})  # fmt: skip
            print(f"{init} {n} items: mean accuracy {runs[-1]['mean_accuracy']:.3f}", flush=True)
    rows = [
        [r["init"], r["items"], r["train_pairs"], round(r["mean_accuracy"], 3), round(r["min_cell"], 3),
         round(r["query_accuracy"], 3), f"[{r['query_interval'][0]:.3f}, {r['query_interval'][1]:.3f}]",
         round(r["seconds"], 1)]
        for r in runs
    ]  # fmt: skip
    print_table(
        f"reward VLM on the trained base's candidates: {len(test_pairs)} held-out pairs, fine-tune "
        f"{cfg.max_steps} steps at lr {cfg.learning_rate} (items 0 = zero-shot)",
        ["init", "items", "pairs", "mean acc", "min cell", "query acc", "95% interval", "train s"],
        rows,
    )
    cells = sorted(runs[0]["cells"])
    print_table("accuracy per task x dimension", ["init", "items", *cells],
                [[r["init"], r["items"], *(round(r["cells"][c], 2) for c in cells)] for r in runs])  # fmt: skip
    from onereward.models import trained

    shipped = trained.read_index("reward_vlm")
    result = {"world_items": args.items, "n_test_pairs": len(test_pairs), "world_seconds": world_s,
              "settings": {"max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate}, "runs": runs,
              "peak_rss_mb": peak_rss_mb(), "shipped": {k: shipped["summary"][k] for k in ("timings", "holdout_mean_accuracy")}}  # fmt: skip
    write_results("reward_pretrain", result)
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
