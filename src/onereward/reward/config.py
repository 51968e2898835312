"""Settings of train_reward_model (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from onereward.config import Config, setting


@dataclass(frozen=True)
class RewardConfig(Config):
    """Pairwise Yes/No SFT of the VLM reward model (paper Eq. 3): optimisation, image sizes, the
    split, checkpoints."""

    section: ClassVar[str] = "reward"

    max_steps: int = setting(1000, "Training steps.", profile=True)
    batch_size: int = setting(
        16, "Queries per step: both orders of batch_size / 2 pairs (even).", profile=True
    )
    learning_rate: float = setting(1e-6, "AdamW learning rate (linear warmup, cosine decay).", profile=True)
    finetune: Literal["full", "lora"] = setting(
        "full", "Full fine-tune or LoRA adapters (merged on save).", profile=True
    )
    lora_rank: int = setting(16, "LoRA rank when finetune is lora.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    warmup_steps: int = setting(0, "Linear warmup steps (0 = max_steps // 20, at least 1).")
    max_pixels: int = setting(4096, "Qwen2-VL dynamic resolution: most pixels per image.", profile=True)
    min_pixels: int = setting(
        3136, "Qwen2-VL dynamic resolution: fewest pixels per image (56 x 56).", profile=True
    )
    bf16: bool = setting(False, "bf16 mixed precision on GPU.", profile=True)
    gradient_checkpointing: bool = setting(
        False, "Gradient checkpointing on GPU (memory for compute).", profile=True
    )
    image_cache: int = setting(
        4096, "Decoded images kept in memory per process (LRU; memory stays flat in the pairs)."
    )
    num_workers: int = setting(
        0, "DataLoader workers decoding the training images (0 = on the training thread)."
    )
    seed: int = setting(0, "Seed of the split, the pair order and the training RNG.")
    test_fraction: float = setting(0.2, "Share of each task's items held out for testing (split by item).")
    context_images: bool = setting(
        False, "Also show the source and the mask to the model (off in the paper)."
    )
    answer_norm: Literal["yes_no", "vocab"] = setting(
        "yes_no", "P(Yes) normalised over {Yes, No} (yes_no) or the full vocabulary softmax (vocab)."
    )
    log_every: int = setting(0, "Log training scalars every N steps (0 = max_steps // 20, at most 25).")
    checkpoint_every: int = setting(0, "Save a checkpoint every N steps (0 = max_steps // 4).")
    keep_checkpoints: int = setting(2, "Newest checkpoints kept on disk while training (0 = write none).")
    checkpoint_dir: str = setting(
        "",
        "Checkpoints and TensorBoard logs ('' = .<out>.checkpoints beside the output); may sit on a volume.",
    )
    resume: bool = setting(True, "Resume from checkpoint_dir when it holds a checkpoint of this run.")
    keep_checkpoint_dir: bool = setting(False, "Keep checkpoint_dir after success (default: removed).")

    def validate(self) -> None:
        self.require(self.max_steps >= 1, "max_steps", "expected an integer >= 1")
        self.require(
            self.batch_size >= 2 and self.batch_size % 2 == 0,
            "batch_size",
            "expected an even number >= 2 (pairs x both orders)",
        )
        self.require(self.learning_rate > 0, "learning_rate", "expected a number > 0")
        self.require(self.lora_rank >= 1, "lora_rank", "expected an integer >= 1")
        self.require(self.weight_decay >= 0, "weight_decay", "expected a number >= 0")
        self.require(self.warmup_steps >= 0, "warmup_steps", "expected an integer >= 0")
        self.require(self.min_pixels > 0, "min_pixels", "expected an integer > 0")
        self.require(
            self.min_pixels <= self.max_pixels,
            "min_pixels",
            f"must not exceed max_pixels ({self.max_pixels})",
        )
        self.require(0.0 < self.test_fraction < 1.0, "test_fraction", "expected a fraction in (0, 1)")
        self.require(self.log_every >= 0, "log_every", "expected an integer >= 0")
        self.require(self.image_cache >= 0, "image_cache", "expected an integer >= 0")
        self.require(self.num_workers >= 0, "num_workers", "expected an integer >= 0")
        self.require(self.checkpoint_every >= 0, "checkpoint_every", "expected an integer >= 0")
        self.require(self.keep_checkpoints >= 0, "keep_checkpoints", "expected an integer >= 0")

    # Derived intervals: "0 = automatic" resolves against max_steps here, in one place.
    @property
    def warmup(self) -> int:
        return self.warmup_steps or max(1, self.max_steps // 20)

    @property
    def log_interval(self) -> int:
        return self.log_every or max(1, min(25, self.max_steps // 20))

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints; 0 = none (keep_checkpoints 0)."""
        if self.keep_checkpoints == 0:
            return 0
        return self.checkpoint_every or max(1, self.max_steps // 4)
