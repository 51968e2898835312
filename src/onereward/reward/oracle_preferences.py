"""Preferences straight from the synthetic world's oracle (a noise-free best/worst annotator).

For every item of a ``candidates`` artifact and every dimension of its task, the candidate with the
highest oracle score wins and the one with the lowest loses (skipped when the spread is below
``min_margin``: "no clear difference"). This is what the simulated annotator of
``onereward.annotate`` does without noise; tests and the reward benchmark use it to build a
``preferences`` artifact quickly without Label Studio's export format.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from onereward import tasks
from onereward.artifacts import ArtifactWriter, Manifest, read_artifact
from onereward.imageio import load_mask, load_rgb
from onereward.tables import read_table, write_table


def write_oracle_preferences(
    candidates_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, min_margin: float = 0.02
) -> Manifest:
    """Write a ``preferences`` artifact (docs/contracts.md) from a synthetic ``candidates`` artifact."""
    from onereward.synth.oracle import score_all

    src = Path(candidates_dir)
    manifest = read_artifact(src, kind="candidates", what="candidates")
    items = {r["item_id"]: r for r in read_table(src / "items.parquet", what="candidates: items.parquet")}
    by_item: dict[str, list[dict]] = {}
    for row in read_table(src / "candidates.parquet", what="candidates: candidates.parquet"):
        by_item.setdefault(row["item_id"], []).append(row)
    with ArtifactWriter(out_dir, kind="preferences", stage="oracle_preferences", inputs=[manifest],
                        parameters={"min_margin": min_margin}) as art:  # fmt: skip
        rows = []
        for item_id in sorted(by_item):
            item = items[item_id]
            cands = sorted(by_item[item_id], key=lambda r: r["index"])
            source, mask = load_rgb(src / item["image"]), load_mask(src / item["mask"])
            scores = [
                score_all(item["task"], source, mask, item["prompt"], load_rgb(src / c["image"]))
                for c in cands
            ]
            for rel in [item["image"], item["mask"]] + [c["image"] for c in cands]:
                dst = art.path / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    shutil.copyfile(src / rel, dst)
            for dim in tasks.dimensions_for(item["task"], item["prompt"]):
                values = [s[dim] for s in scores]
                best = max(range(len(cands)), key=lambda i: values[i])
                worst = min(range(len(cands)), key=lambda i: values[i])
                if values[best] - values[worst] < min_margin:
                    continue
                rows.append(
                    {
                        "pair_id": f"{item_id}-{dim}",
                        "item_id": item_id,
                        "task": item["task"],
                        "dimension": dim,
                        "prompt": item["prompt"],
                        "winner": cands[best]["candidate_id"],
                        "loser": cands[worst]["candidate_id"],
                        "winner_image": cands[best]["image"],
                        "loser_image": cands[worst]["image"],
                        "source_image": item["image"],
                        "mask_image": item["mask"],
                        "annotators": json.dumps(["oracle"]),
                        "n_annotators": 1,
                        "agreement": 1.0,
                    }
                )
        write_table(art.path / "pairs.parquet", rows)
        art.counts["n_pairs"] = len(rows)
        art.metrics["n_pairs"] = len(rows)
    assert art.manifest is not None
    return art.manifest


def make_oracle_preferences(
    out_dir: str | os.PathLike[str],
    n_items: int,
    *,
    seed: int = 0,
    per_item: int = 4,
    work_dir: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Synthetic pool -> synthetic candidates -> oracle preferences in ``out_dir`` (tests, benchmarks).

    The intermediate pool and candidates artifacts go to ``work_dir`` (default: beside ``out_dir``).
    """
    from onereward.synth.candidates import make_candidates
    from onereward.synth.stage import make_pool

    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out.parent / f".{out.name}.work"
    make_pool(work / "pool", n_items, seed=seed)
    make_candidates(work / "pool", work / "candidates", per_item=per_item, seed=seed)
    return write_oracle_preferences(work / "candidates", out)
