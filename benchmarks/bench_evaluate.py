"""evaluate on the tiny profile: seconds per evaluated item and model for each judge and metric,
OCR accuracy on rendered words, and (``--demo``) the demo's end-to-end wall time.

Usage: ``python benchmarks/bench_evaluate.py [--fill 12 --extend 12 --removal 8] [--demo]``.
The benchmark: a synthetic pool, half of it "trained on" (held out), a small policy artifact (the
base with seeded LoRA deltas) and the zoo's untrained reward VLM as a reward_model artifact; the
base, the policy and its EMA are compared with simulated people answering the blind A/B project.
CPU seconds are given beside wall seconds: on a shared machine wall time also counts the time other
processes hold the cores (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402


def _load() -> float:
    return os.getloadavg()[0]


def _world(root: Path, n_items: int) -> dict[str, Path]:
    from onereward.artifacts import ArtifactWriter
    from onereward.synth.stage import make_pool
    from onereward.tables import read_table, write_table
    from onereward.testing.policy import make_policy_artifact, make_reward_model_artifact
    from onereward.zoo import ensure_zoo

    zoo = ensure_zoo("tiny")
    make_pool(root / "pool", n_items, seed=11)
    rows = read_table(root / "pool" / "items.parquet")
    with ArtifactWriter(root / "subset", kind="subset", stage="bench") as art:
        write_table(art.path / "items.parquet", [{"item_id": r["item_id"]} for r in rows[::2]])
    make_policy_artifact(root / "policy", zoo=zoo, scale=0.3)
    make_reward_model_artifact(root / "reward_model", zoo=zoo)
    return {
        "zoo": zoo,
        "pool": root / "pool",
        "subset": root / "subset",
        "policy": root / "policy",
        "rm": root / "reward_model",
    }


def _ocr_accuracy() -> dict:
    """Rendered words read by rapidocr (recognition of the crop): PIL's default font at several
    sizes, and the synthetic world's bitmap words at the tiny profile's scale."""
    from PIL import Image, ImageDraw, ImageFont

    from onereward.evaluate.ocr import TextReader
    from onereward.synth.world import WORDS, text_glyphs, text_scale

    t0 = time.perf_counter()
    reader = TextReader("recognise")
    load_s = time.perf_counter() - t0
    words = list(WORDS) + ["GRAND OPENING", "Cafe 42 Sale", "SALE 50%", "Hello"]
    cases = []
    for word in words:
        for size in (12, 16, 24, 32):
            img = Image.new("RGB", (16 + size * len(word), 16 + 2 * size), (215, 215, 215))
            ImageDraw.Draw(img).text((8, 8), word, fill=(200, 30, 30), font=ImageFont.load_default(size=size))
            a = np.asarray(img)
            cases.append((f"pil-{size}", word, a, np.ones(a.shape[:2], bool)))
    for word in WORDS:
        glyphs = text_glyphs(word, text_scale(64))
        a = np.full((64, 64, 3), 200, np.uint8)
        h, w = glyphs.shape
        a[20 : 20 + h, 8 : 8 + w][glyphs] = (210, 30, 30)
        m = np.zeros((64, 64), bool)
        m[16 : 24 + h, 4 : 12 + w] = True
        cases.append(("world-64px", word, a, m))
    by_kind: dict[str, list[int]] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    misses = []
    for kind, word, image, mask in cases:
        s = reader.score(image, mask, word)
        by_kind.setdefault(kind, []).append(int(s.exact))
        if not s.exact:
            misses.append({"kind": kind, "word": word, "read": s.read})
    n = len(cases)
    return {
        "n_words": n,
        "sentence_accuracy": round(sum(sum(v) for v in by_kind.values()) / n, 4),
        "accuracy_by_kind": {k: round(sum(v) / len(v), 4) for k, v in by_kind.items()},
        "seconds_per_read": round((time.perf_counter() - t0) / n, 4),
        "cpu_seconds_per_read": round((time.process_time() - c0) / n, 4),
        "load_seconds": round(load_s, 3),
        "misses": misses,
    }


def _demo(out: Path) -> dict:
    """`onereward demo` in a fresh process: wall seconds and each stage's seconds."""
    load = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "onereward.cli", "demo", "--out", str(out)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"failed": proc.stderr[-2000:]}
    run = json.loads((out / "run.json").read_text())
    return {
        "wall_seconds": round(wall, 1),
        "pipeline_seconds": run["wall_seconds"],
        "stage_seconds": {k: v["seconds"] for k, v in run["stages"].items()},
        "load_before": round(load, 2),
        "load_after": round(_load(), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=160, help="pool size (half is held out as 'trained on')")
    parser.add_argument("--fill", type=int, default=12)
    parser.add_argument("--extend", type=int, default=12)
    parser.add_argument("--removal", type=int, default=8)
    parser.add_argument("--demo", action="store_true", help="also time `onereward demo` end to end")
    args = parser.parse_args(argv)

    from onereward.evaluate.stage import run

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        w = _world(root, args.items)
        load = _load()
        t0, c0 = time.perf_counter(), time.process_time()
        m = run(
            str(w["pool"]),
            str(root / "eval"),
            reward_model=str(w["rm"]),
            zoo=str(w["zoo"]),
            policy=str(w["policy"]),
            exclude=[str(w["subset"])],
            fill_items=args.fill,
            extend_items=args.extend,
            removal_items=args.removal,
            human="simulate",
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        timings = json.loads((root / "eval" / "manifest.json").read_text())["timings"]
        demo = _demo(root / "demo") if args.demo else None
    per = m["seconds_per_item_model"]
    rows = [[k, v] for k, v in per.items()]
    print_table(
        f"evaluate, tiny profile: {m['n_items']} items x {len(m['models'])} models (load {load:.1f})",
        ["judge / metric", "s per item and model"],
        rows,
    )
    ocr = _ocr_accuracy()
    print_table(
        "OCR (rapidocr 3.10, recognition of the crop) on rendered words",
        ["words", "sentence accuracy", "s per read", "by kind"],
        [
            [
                ocr["n_words"],
                ocr["sentence_accuracy"],
                ocr["seconds_per_read"],
                json.dumps(ocr["accuracy_by_kind"]),
            ]
        ],
    )
    if demo:
        print_table(
            "demo (end_to_end, tiny)",
            ["wall s", "evaluate s", "load"],
            [
                [
                    demo.get("wall_seconds"),
                    demo.get("stage_seconds", {}).get("evaluate"),
                    demo.get("load_before"),
                ]
            ],
        )
    results = {
        "n_items": m["n_items"],
        "models": m["models"],
        "seconds_per_item_model": per,
        "stage_timings": timings,
        "evaluate_wall_seconds": round(wall, 2),
        "evaluate_cpu_seconds": round(cpu, 2),
        "load_average": round(load, 2),
        "ocr": ocr,
        "demo": demo,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    write_results("evaluate", results)
    return results


if __name__ == "__main__":
    main()
