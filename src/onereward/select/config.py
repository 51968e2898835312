"""Settings of select_subset (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from onereward import tasks
from onereward.config import Config, setting

BACKENDS: tuple[str, ...] = ("auto", "sklearn", "torch", "faiss")
TWO_LEVEL: tuple[str, ...] = ("auto", "on", "off")


@dataclass(frozen=True)
class SelectConfig(Config):
    """How the representative subset is chosen: embedding, clustering, dedup and generated masks."""

    section: ClassVar[str] = "select"

    size: int = setting(
        24, "Target number of selected items (fewer when the pool has fewer good unique items)."
    )
    per_task: bool = setting(True, "Cluster each task separately (the size split by the tasks' pool sizes).")
    backend: Literal["auto", "sklearn", "torch", "faiss"] = setting(
        "auto",
        "K-means engine: auto (torch from faiss_min_items items, else sklearn), sklearn, torch (CPU or "
        "GPU) or faiss (the engine before the torch one, for comparison).",
    )
    seed: int = setting(0, "Seed of K-means, generated masks, task assignment and the random baseline.")
    max_bad_fraction: float = setting(0.2, "The stage fails when more than this fraction of the pool is bad.")
    per_cluster: int = setting(1, "Representatives taken per cluster (K = ceil(size / per_cluster)).")
    dedup_threshold: float = setting(
        0.97, "Cosine similarity at which two images are near-duplicates (model-dependent).", profile=True
    )
    min_image_size: int = setting(32, "Images with a side shorter than this many pixels are bad.")
    mask_threshold: int = setting(128, "Grey level >= this marks the edit region of a non-binary mask.")
    alpha_background: str = setting(
        "255,255,255", "R,G,B colour (0-255 each) that images with transparency are composited over."
    )
    max_prompt_chars: int = setting(
        tasks.MAX_PROMPT_CHARS, "Items whose prompt is longer than this many characters are bad."
    )
    assign_tasks: str = setting(
        tasks.IMAGE_EXTEND,
        "Comma-separated tasks given (seeded by item id) to items whose source names none.",
    )
    extend_ratios: str = setting(
        "0.25,0.5", "Comma-separated canvas expansion ratios for image_extend masks."
    )
    extend_sides: str = setting(
        "left,right,top,bottom,all", "Comma-separated sides to expand (left, right, top, bottom, all)."
    )
    fill_kinds: str = setting("box,brush", "Comma-separated generated fill mask kinds (box, brush).")
    fill_area_min: float = setting(0.1, "Smallest fraction of the image a generated fill mask covers.")
    fill_area_max: float = setting(0.3, "Largest fraction of the image a generated fill mask covers.")
    faiss_min_items: int = setting(
        50_000, "The auto backend switches from sklearn to the torch engine from this many items per group."
    )
    cluster_device: str = setting(
        "auto", "Device of the torch K-means engine: auto (a GPU when torch sees one), cpu, cuda or cuda:N."
    )
    two_level: Literal["auto", "on", "off"] = setting(
        "auto", "Two-level K-means: auto (from 1024 clusters), on or off."
    )
    batch_size: int = setting(64, "Embedding batch size.", profile=True)
    num_workers: int = setting(0, "DataLoader workers decoding images.", profile=True)
    cache_dir: str = setting("", "Embedding cache root ('' = $ONEREWARD_CACHE or ~/.cache/onereward).")
    use_cache: bool = setting(True, "Read and write the embedding cache.")
    coverage_sample: int = setting(50_000, "Coverage is measured on at most this many pool items (seeded).")
    threads: int = setting(0, "Cap on faiss/BLAS threads while clustering (0 = all cores).")
    device: str = setting("cpu", "Torch device for the CLIP forward passes.")
    progress: bool = setting(True, "Show a progress bar while embedding.")

    def validate(self) -> None:
        self.require(self.size >= 1, "size", "expected an integer >= 1")
        self.require(self.per_cluster >= 1, "per_cluster", "expected an integer >= 1")
        self.require(0.0 <= self.max_bad_fraction <= 1.0, "max_bad_fraction", "expected a fraction in [0, 1]")
        self.require(
            0.0 < self.dedup_threshold <= 1.0, "dedup_threshold", "expected a cosine similarity in (0, 1]"
        )
        self.require(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.cluster_device) is not None,
            "cluster_device",
            "expected auto, cpu, cuda or cuda:N",
        )
        self.require(self.coverage_sample >= 1, "coverage_sample", "expected an integer >= 1")
        self.require(self.batch_size >= 1, "batch_size", "expected an integer >= 1")
        self.require(self.num_workers >= 0, "num_workers", "expected an integer >= 0")
        self.require(self.min_image_size >= 1, "min_image_size", "expected an integer >= 1")
        self.require(0 <= self.mask_threshold <= 255, "mask_threshold", "expected a grey level in [0, 255]")
        self.background()
        self.require(self.max_prompt_chars >= 1, "max_prompt_chars", "expected an integer >= 1")
        self.require(self.faiss_min_items >= 1, "faiss_min_items", "expected an integer >= 1")
        self.require(self.threads >= 0, "threads", "expected an integer >= 0")
        for name in ("assign_tasks", "extend_sides", "fill_kinds"):
            self.csv(name)
        self.csv("extend_ratios", float)
        for t in self.csv("assign_tasks"):
            self.require(t in tasks.TASKS, "assign_tasks", f"expected tasks among {', '.join(tasks.TASKS)}")

    def background(self) -> tuple[int, int, int]:
        """``alpha_background`` as an (r, g, b) tuple."""
        parts = [p.strip() for p in self.alpha_background.split(",")]
        try:
            rgb = tuple(int(p) for p in parts)
        except ValueError:
            rgb = ()
        self.require(
            len(rgb) == 3 and all(0 <= c <= 255 for c in rgb),
            "alpha_background",
            "expected three integers 0-255 as R,G,B, e.g. 255,255,255",
        )
        return rgb  # type: ignore[return-value]

    def csv(self, name: str, cast: type = str) -> tuple[Any, ...]:
        """A comma-separated field as a tuple (``cast`` per entry)."""
        parts = [p.strip() for p in str(getattr(self, name)).split(",") if p.strip()]
        try:
            return tuple(cast(p) for p in parts)
        except ValueError:
            self.fail(name, f"expected a comma-separated list of {cast.__name__}")
