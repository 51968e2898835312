"""Settings of synthesize_pool (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from onereward.config import Config, setting


@dataclass(frozen=True)
class SynthConfig(Config):
    """The synthetic pool: how many items, their size and the task mix."""

    section: ClassVar[str] = "synth"

    items: int = setting(48, "Number of items (fill 0.4, extend 0.3, removal 0.3 by default).")
    seed: int = setting(0, "Scene seed: the same seed and settings give the same bytes.")
    image_size: int = setting(64, "Image side in pixels, a multiple of 16 (>= 32).")
    masks: bool = setting(
        True, "Write masks for image_fill / image_extend items (otherwise select_subset makes them)."
    )
    text_fraction: float = setting(0.25, "Share of image_fill items with a text-rendering prompt.")
    extend_prompt_fraction: float = setting(0.5, "Share of image_extend items with a prompt.")

    def validate(self) -> None:
        self.require(self.items >= 1, "items", "expected an integer >= 1")
        self.require(self.seed >= 0, "seed", "expected an integer >= 0")
        self.require(
            self.image_size >= 32 and self.image_size % 16 == 0,
            "image_size",
            "expected a multiple of 16 and >= 32",
        )
        self.require(0.0 <= self.text_fraction <= 1.0, "text_fraction", "expected a fraction in [0, 1]")
        self.require(
            0.0 <= self.extend_prompt_fraction <= 1.0,
            "extend_prompt_fraction",
            "expected a fraction in [0, 1]",
        )
