"""Shared helpers of the annotation tests: a small synthetic candidates artifact and oracle answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onereward.annotate.artifact_io import read_candidate_set
from onereward.artifacts import ArtifactWriter
from onereward.imageio import load_mask, load_rgb
from onereward.synth import oracle
from onereward.synth.candidates import make_candidates
from onereward.synth.stage import make_pool
from onereward.tables import write_table


def synthetic_candidates(root: Path, n_items: int = 9, seed: int = 3, per_item: int = 4) -> Path:
    """A candidates artifact of the synthetic world (all three tasks), under ``root``."""
    make_pool(root / "pool", n_items, seed)
    make_candidates(root / "pool", root / "candidates", per_item=per_item, seed=seed)
    return root / "candidates"


def subset_candidates(src: Path, out: Path, item_ids: list[str]) -> Path:
    """A candidates artifact holding only ``item_ids`` of ``src`` (same files, same hashes)."""
    cs = read_candidate_set(src, kind="candidates", what="src")
    with ArtifactWriter(out, kind="candidates", stage="test_subset", inputs=[cs.manifest]) as art:
        items = [r for r in cs.item_rows if r["item_id"] in item_ids]
        cands = [r for r in cs.candidate_rows if r["item_id"] in item_ids]
        write_table(art.path / "items.parquet", items)
        write_table(art.path / "candidates.parquet", cands)
        for r in items:
            for col in ("image", "mask"):
                (art.path / r[col]).parent.mkdir(parents=True, exist_ok=True)
                (art.path / r[col]).write_bytes((src / r[col]).read_bytes())
        for r in cands:
            (art.path / r["image"]).parent.mkdir(parents=True, exist_ok=True)
            (art.path / r["image"]).write_bytes((src / r["image"]).read_bytes())
    return out


def oracle_pairs(candidates: Path) -> dict[tuple[str, str], tuple[str, str] | None]:
    """The noise-free oracle's (winner, loser) per (item, dimension), computed independently of the
    stage code; None where every candidate scores the same (no preference)."""
    cs = read_candidate_set(
        candidates, kind=("candidates", "project", "annotations", "preferences"), what="c"
    )
    expected: dict[tuple[str, str], tuple[str, str] | None] = {}
    for item_id, item in cs.items.items():
        source = load_rgb(candidates / item["image"])
        mask = load_mask(candidates / item["mask"])
        rows = cs.candidates[item_id]
        scores = [
            oracle.score_all(item["task"], source, mask, item["prompt"], load_rgb(candidates / r["image"]))
            for r in rows
        ]
        for dim in scores[0]:
            s = np.array([x[dim] for x in scores])
            if s.max() == s.min():
                expected[(item_id, dim)] = None
            else:
                expected[(item_id, dim)] = (
                    rows[int(np.argmax(s))]["candidate_id"],
                    rows[int(np.argmin(s))]["candidate_id"],
                )
    return expected
