"""Settings of evaluate (one declaration; see :mod:`onereward.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from onereward.config import Config, setting

HUMAN_MODES: tuple[str, ...] = ("none", "simulate", "export")


@dataclass(frozen=True)
class EvaluateConfig(Config):
    """Benchmark trained policies against their base (paper section 5.2): the benchmark's size per
    task, the fixed sampling parameters every model uses, the judges' margins and the human A/B
    project."""

    section: ClassVar[str] = "evaluate"

    # -- the benchmark set (held out from training by item; see evaluate/benchmark.py)
    fill_items: int = setting(130, "Benchmark image_fill items (the paper: 130).", profile=True)
    extend_items: int = setting(
        200, "Benchmark image_extend items, half of them with a prompt (the paper: 200).", profile=True
    )
    removal_items: int = setting(100, "Benchmark object_removal items (the paper: 100).", profile=True)
    seed: int = setting(
        0, "Root seed: the benchmark order and each item's noise depend only on (seed, item_id)."
    )
    # -- fixed sampling parameters, the same for every model compared
    steps: int = setting(50, "Inference steps of every model (fixed).", profile=True)
    cfg_scale: float = setting(4.0, "True-CFG scale of every model (1 = no negative pass).", profile=True)
    negative_prompt: str = setting("", "Negative prompt used when cfg_scale > 1 ('' = none).")
    guidance: float = setting(1.0, "FLUX distilled-guidance input.", profile=True)
    feather: int = setting(
        0, "Paste-back feather radius in pixels inside the mask (0 = hard paste).", profile=True
    )
    batch_size: int = setting(4, "Images per generator batch.", profile=True)
    max_sequence_length: int = setting(512, "T5 prompt length in tokens (FLUX).", profile=True)
    dtype: Literal["float32", "bfloat16", "float16"] = setting(
        "bfloat16", "Generator and judge weights dtype.", profile=True
    )
    device: str = setting("auto", "Torch device: auto (cuda when available), cpu, cuda, cuda:N.")
    ema: bool = setting(True, "Also evaluate the policy's EMA weights (when the policy artifact has them).")
    # -- judges
    margin: float = setting(
        0.05,
        "Reward-model GSB margin: Good only when P(Yes) > 0.5 + margin with the model first and < 0.5 - margin with it second.",
        profile=True,
    )
    oracle_margin: float = setting(
        0.02, "Oracle GSB margin: Good when the raw oracle score beats the base's by more than this."
    )
    judge_batch_size: int = setting(32, "Comparisons per reward-model forward pass.")
    removal_threshold: float = setting(
        0.5, "Object removal counts as a success when the oracle's removal_quality is at least this."
    )
    ocr: Literal["recognise", "detect"] = setting(
        "detect",
        "Text rendering OCR of the mask's box: recognise (one line, fast) or detect (detection + recognition).",
        profile=True,
    )
    # -- human GSB: a blind A/B Label Studio project (left/right at random)
    human: Literal["none", "simulate", "export"] = setting(
        "none",
        "Human GSB: none, simulate (oracle annotators answer the A/B project; synthetic world), export (create it for people).",
    )
    human_model: str = setting("policy", "Model shown against the base in the human A/B project.")
    label_studio_url: str = setting(
        "", "Label Studio URL for the A/B project ('' = offline, in the artifact)."
    )
    document_root: str = setting(
        "", "Label Studio's local-files document root ('' = $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)."
    )
    project_title: str = setting("onereward-eval", "A/B project title; title and version identify it.")
    project_version: str = setting("v1", "A/B project version; the same title and version reuse the project.")
    annotators: int = setting(3, "Annotators per A/B task (simulated ones, or the project's overlap).")
    # People call close results "about the same": the threshold is well above the noise, so two
    # identical results get "same" from ~92% of the simulated answers (|N(0, 0.02 * sqrt 2)| < 0.05).
    annotator_noise: float = setting(
        0.02, "Simulated annotators: standard deviation of the Gaussian noise on each oracle score."
    )
    annotator_threshold: float = setting(
        0.05, "Simulated annotators: 'about the same' when the noisy scores differ by less than this."
    )
    report_items: int = setting(12, "Items shown in the image grids of report.html.")

    def validate(self) -> None:
        for name in ("fill_items", "extend_items", "removal_items"):
            self.require(getattr(self, name) >= 0, name, "expected an integer >= 0")
        self.require(
            self.fill_items + self.extend_items + self.removal_items >= 1,
            "fill_items",
            "the benchmark needs at least one item (fill_items + extend_items + removal_items >= 1)",
        )
        self.require(self.seed >= 0, "seed", "expected an integer >= 0")
        self.require(self.steps >= 1, "steps", "expected an integer >= 1")
        self.require(self.cfg_scale >= 1.0, "cfg_scale", "expected a number >= 1")
        self.require(self.guidance >= 0, "guidance", "expected a number >= 0")
        self.require(self.feather >= 0, "feather", "expected an integer >= 0")
        self.require(self.batch_size >= 1, "batch_size", "expected an integer >= 1")
        self.require(self.max_sequence_length >= 1, "max_sequence_length", "expected an integer >= 1")
        self.require(0.0 <= self.margin < 0.5, "margin", "expected a number in [0, 0.5)")
        self.require(self.oracle_margin >= 0, "oracle_margin", "expected a number >= 0")
        self.require(self.judge_batch_size >= 1, "judge_batch_size", "expected an integer >= 1")
        self.require(0.0 <= self.removal_threshold <= 1.0, "removal_threshold", "expected a number in [0, 1]")
        self.require(bool(self.human_model.strip()), "human_model", "must name a compared model")
        self.require(bool(self.project_title.strip()), "project_title", "must not be empty")
        self.require(bool(self.project_version.strip()), "project_version", "must not be empty")
        self.require(self.annotators >= 1, "annotators", "expected an integer >= 1")
        self.require(self.annotator_noise >= 0, "annotator_noise", "expected a number >= 0")
        self.require(self.annotator_threshold >= 0, "annotator_threshold", "expected a number >= 0")
        self.require(self.report_items >= 0, "report_items", "expected an integer >= 0")
        self.require(
            self.human != "export" or bool(self.label_studio_url),
            "label_studio_url",
            "required with --human export (people answer the A/B project on a Label Studio server)",
        )

    @property
    def sizes(self) -> dict[str, int]:
        """Wanted items per benchmark group; image_extend splits half with a prompt (the larger half)."""
        from onereward.evaluate.benchmark import EXTEND_NO_PROMPT, EXTEND_PROMPT, FILL, REMOVAL

        with_prompt = (self.extend_items + 1) // 2
        return {
            FILL: self.fill_items,
            EXTEND_PROMPT: with_prompt,
            EXTEND_NO_PROMPT: self.extend_items - with_prompt,
            REMOVAL: self.removal_items,
        }
