"""Settings of generate_candidates (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from onereward.config import Config, setting

Family = Literal["flux_fill", "sd_inpaint"]
FAMILIES: tuple[str, ...] = ("flux_fill", "sd_inpaint")
DEFAULT_NEGATIVE_PROMPTS = "none;nsfw;blurry;low quality;blurry, low quality, distorted"


@dataclass(frozen=True)
class GenerateConfig(Config):
    """How candidates are sampled (paper section 4.2): the ranges each candidate's inference steps,
    true-CFG scale, initial noise strength and negative prompt are drawn from, and batching."""

    section: ClassVar[str] = "generate"

    family: Family = setting(
        "flux_fill", "Generator family: flux_fill (profile model generator) or sd_inpaint (generator_sd)."
    )
    num_candidates: int = setting(4, "Candidates per item.", profile=True)
    shard: str = setting(
        "0/1", "'i/n': generate only the items at positions i, i+n, ... of the id-sorted list."
    )
    seed: int = setting(0, "Root seed: an item's parameters and noises depend on (seed, item_id) only.")
    min_steps: int = setting(4, "Fewest inference steps sampled.", profile=True)
    max_steps: int = setting(12, "Most inference steps sampled.", profile=True)
    cfg_min: float = setting(2.0, "Lowest true-CFG scale sampled (>= 1; 1 = no negative pass).", profile=True)
    cfg_max: float = setting(6.0, "Highest true-CFG scale sampled.", profile=True)
    strength_min: float = setting(
        0.6, "Lowest initial noise strength sampled, in (0, 1] (below 1 starts from the noised source).",
        profile=True,
    )  # fmt: skip
    strength_max: float = setting(
        1.0, "Highest initial noise strength sampled (1 = pure noise).", profile=True
    )
    negative_prompts: str = setting(
        DEFAULT_NEGATIVE_PROMPTS,
        "';'-separated negative prompts to sample from; 'none' = no negative prompt (acts only when cfg > 1).",
        profile=True,
    )
    guidance: float = setting(
        1.0, "FLUX distilled-guidance input (OneReward: 1 with true CFG); unused by sd_inpaint.", profile=True
    )
    feather: int = setting(
        0, "Paste-back feather radius in pixels inside the mask (0 = hard paste).", profile=True
    )
    batch_size: int = setting(8, "Candidates per generator batch.", profile=True)
    max_sequence_length: int = setting(32, "T5 prompt length in tokens (FLUX).", profile=True)
    dtype: Literal["float32", "bfloat16", "float16"] = setting(
        "float32", "Generator weights dtype.", profile=True
    )
    device: str = setting("auto", "Torch device: auto (cuda when available), cpu, cuda, cuda:N.")
    report_items: int = setting(24, "Items shown in report.html.")
    policy: str = setting(
        "", "Policy artifact (train_policy) whose weights go onto the base generator ('' = the base alone)."
    )
    policy_weights: Literal["policy", "ema"] = setting(
        "policy", "Weights of the policy artifact to sample with: the trained policy or its EMA."
    )

    def validate(self) -> None:
        self.require(self.num_candidates >= 1, "num_candidates", "expected an integer >= 1")
        self.require(
            1 <= self.min_steps <= self.max_steps,
            "min_steps",
            f"need 1 <= min_steps <= max_steps ({self.max_steps})",
        )
        self.require(
            1.0 <= self.cfg_min <= self.cfg_max, "cfg_min", f"need 1 <= cfg_min <= cfg_max ({self.cfg_max})"
        )
        self.require(
            0.0 < self.strength_min <= self.strength_max <= 1.0,
            "strength_min",
            f"need 0 < strength_min <= strength_max <= 1 (strength_max={self.strength_max})",
        )
        self.require(self.guidance >= 0, "guidance", "expected a number >= 0")
        self.require(self.feather >= 0, "feather", "expected an integer >= 0")
        self.require(self.batch_size >= 1, "batch_size", "expected an integer >= 1")
        self.require(self.max_sequence_length >= 1, "max_sequence_length", "expected an integer >= 1")
        self.require(self.report_items >= 0, "report_items", "expected an integer >= 0")
        self.require(
            bool(self.negative_prompts.strip()),
            "negative_prompts",
            "expected ';'-separated prompts ('none' = no negative prompt)",
        )
        self.shard_index()  # validates the shard spec

    def shard_index(self) -> tuple[int, int]:
        """``"i/n"`` -> (i, n) with 0 <= i < n."""
        try:
            i_s, n_s = str(self.shard).split("/")
            i, n = int(i_s), int(n_s)
        except ValueError:
            self.fail("shard", "expected 'i/n' such as '0/4'")
        self.require(n >= 1 and 0 <= i < n, "shard", "need 0 <= i < n")
        return i, n

    @property
    def negatives(self) -> list[str]:
        """The negative prompt choices (``""`` = none)."""
        return parse_negative_prompts(self.negative_prompts)

    @property
    def model_key(self) -> str:
        """The profile's model key of the family."""
        return "generator" if self.family == "flux_fill" else "generator_sd"


def parse_negative_prompts(spec: str) -> list[str]:
    """``"none;nsfw;blurry"`` -> ``["", "nsfw", "blurry"]`` ("none" or an empty entry = no negative)."""
    entries = [e.strip() for e in str(spec).split(";")]
    out = ["" if e.lower() in ("", "none") else e for e in entries]
    return list(dict.fromkeys(out))
