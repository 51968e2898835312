"""Scoring API of the reward model: batched P(Yes | a, b, q) from one forward pass.

``RewardScorer.p_yes(images_a, images_b, tasks, dimensions, prompts)`` answers "is image a better
than image b for this task and dimension?" for a batch of comparisons. The probability is read
from the logits at the answer position (the last token of the chat prompt, after
``<|im_start|>assistant\\n``) with ``logits_to_keep=1`` - no ``generate``. By default it is
normalised over the two answer tokens {Yes, No} (``answer_norm="yes_no"``); ``"vocab"`` uses the
softmax over the whole vocabulary as the paper's P(y+) literally reads.

Two image paths:

- **differentiable** (``grad=True``, float tensors [B, 3, H, W] in [0, 1]): preprocessing in torch
  (:mod:`onereward.reward.preprocess`), so gradients reach the pixels (RL, ReFL);
- **fast** (``grad=False``): uint8 arrays go through the Hugging Face image processor, float
  tensors through the torch preprocessing, both under ``torch.no_grad`` and in chunks.

Policy training, evaluation and the reward stage's own test metrics all call this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onereward.errors import InputError
from onereward.models import reward_vlm
from onereward.reward.preprocess import VisionPreprocessSpec, preprocess_images
from onereward.reward.template import QueryTemplate, load_template

MODEL_SUBDIR = "model"
ANSWER_NORMS = ("yes_no", "vocab")

ImageBatch = torch.Tensor | np.ndarray | Sequence[np.ndarray]


def resolve_model_folder(path: str | os.PathLike[str], what: str = "--reward-model") -> tuple[Path, Path]:
    """(model folder, template folder) of a reward-model artifact or of a plain VLM folder."""
    root = Path(path)
    if (root / MODEL_SUBDIR / "config.json").is_file():
        return root / MODEL_SUBDIR, root
    if (root / "config.json").is_file():
        return root, root
    raise InputError(
        f"{what}: {root} holds neither {MODEL_SUBDIR}/config.json (a reward_model artifact) "
        "nor config.json (a VLM folder)"
    )


def _load_vlm(model_dir: Path, what: str, **kwargs: Any) -> Any:
    """``reward_vlm.load`` with weights that are missing, cut short or of other shapes than the
    config's reported as one :class:`InputError` naming ``what`` and the folder (never a traceback).
    Out-of-memory and other runtime errors propagate unchanged."""
    from safetensors import SafetensorError

    weights = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if not weights:
        raise InputError(
            f"{what}: {model_dir} holds no model.safetensors (weights are read from safetensors files only)"
        )
    try:
        return reward_vlm.load(model_dir, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        text = str(e).strip().splitlines()
        if isinstance(e, RuntimeError) and not any(k in str(e) for k in ("mismatch", "size", "state_dict")):
            raise
        detail = next((t for t in text if "size mismatch" in t), text[0] if text else type(e).__name__)
        raise InputError(
            f"{what}: the weights in {model_dir} ({', '.join(weights)}) do not load into the model its "
            f"config.json describes: {type(e).__name__}: {detail.strip()[:300]}"
        ) from None


def _batch_size_of(images: ImageBatch, what: str) -> int:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"{what}: expected a float tensor [B, 3, H, W], got shape {tuple(images.shape)}")
        return int(images.shape[0])
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"{what}: expected uint8 arrays [B, H, W, 3], got shape {images.shape}")
        return int(images.shape[0])
    return len(images)


def _as_uint8_list(images: ImageBatch, what: str) -> list[np.ndarray]:
    """uint8 HxWx3 arrays (float tensors in [0, 1] are quantised; only for the no-grad path)."""
    if isinstance(images, torch.Tensor):
        arr = (
            (images.detach().float().clamp(0, 1) * 255.0)
            .round()
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
            .cpu()
            .numpy()
        )
        return list(arr)
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim == 2:  # a mask or a grey image
            a = np.repeat(a[..., None], 3, axis=2)
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise InputError(
                f"{what}[{i}]: expected an HxWx3 uint8 array, got shape {a.shape} dtype {a.dtype}"
            )
        out.append(a)
    return out


def _as_float_tensor(images: ImageBatch, what: str, device: torch.device) -> torch.Tensor:
    """Float [B, 3, H, W] in [0, 1]; masks [B, 1, H, W] or [B, H, W] become 3 channels."""
    if isinstance(images, torch.Tensor):
        t = images
        if t.ndim == 3:
            t = t.unsqueeze(1)
        if t.ndim == 4 and t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        if not t.is_floating_point():
            t = t.float() / (255.0 if t.dtype == torch.uint8 else 1.0)
        return t.to(device)
    arrays = _as_uint8_list(images, what)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(
            f"{what}: images of one batch must share a size for the tensor path, got {sorted(shapes)}"
        )
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return stacked.to(device)


class RewardScorer:
    """A reward VLM plus its query template: P(Yes) for batches of pairwise comparisons."""

    def __init__(
        self, vlm: reward_vlm.RewardVLM, template: QueryTemplate, *, answer_norm: str = "yes_no"
    ) -> None:
        if answer_norm not in ANSWER_NORMS:
            raise InputError(f"answer_norm: expected one of {ANSWER_NORMS}, got {answer_norm!r}")
        self.vlm = vlm
        self.template = template
        self.answer_norm = answer_norm
        self.spec = VisionPreprocessSpec.from_processor(vlm.processor)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        trainable: bool = False,
        answer_norm: str = "yes_no",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        template: QueryTemplate | None = None,
        what: str = "--reward-model",
    ) -> RewardScorer:
        """Load a ``reward_model`` artifact (``model/`` + ``query_template.json``) or a plain VLM folder.

        With ``trainable=False`` (scoring, RL) the weights are frozen and the model is in eval mode;
        gradients still flow to the input pixels on the differentiable path. ``what`` names the input
        in errors (a folder that is no model, weights that are missing or do not fit: InputError).
        """
        model_dir, template_dir = resolve_model_folder(path, what)
        vlm = _load_vlm(
            model_dir, what, dtype=dtype, device=device, min_pixels=min_pixels, max_pixels=max_pixels
        )
        if not trainable:
            vlm.model.eval()
            vlm.model.requires_grad_(False)
        return cls(vlm, template or load_template(template_dir), answer_norm=answer_norm)

    # ----------------------------------------------------------------------------------- inputs
    @property
    def model(self) -> Any:
        return self.vlm.model

    @property
    def device(self) -> torch.device:
        return next(self.vlm.model.parameters()).device

    @property
    def images_per_comparison(self) -> int:
        return 4 if self.template.context_images else 2

    def chat_text(self, query: str, image_tokens: Sequence[int]) -> str:
        """Chat-formatted prompt with each image's ``<|image_pad|>`` expanded to its token count."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in image_tokens]
        content.append({"type": "text", "text": query})
        text = self.vlm.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        pad = reward_vlm.IMAGE_PAD
        parts = text.split(pad)
        if len(parts) != len(image_tokens) + 1:  # the chat template must emit one pad per image
            raise RuntimeError(
                f"chat template emitted {len(parts) - 1} image pads for {len(image_tokens)} images"
            )
        out = [parts[0]]
        for n, rest in zip(image_tokens, parts[1:], strict=True):
            out.append(pad * n)
            out.append(rest)
        return "".join(out)

    def _images_in_order(
        self, images_a: ImageBatch, images_b: ImageBatch, sources: ImageBatch | None, masks: ImageBatch | None
    ) -> list[tuple[ImageBatch, str]]:
        if self.template.context_images:
            if sources is None or masks is None:
                raise InputError(
                    "sources/masks: this reward model takes the source and mask as context images"
                )
            return [(sources, "sources"), (masks, "masks"), (images_a, "images_a"), (images_b, "images_b")]
        return [(images_a, "images_a"), (images_b, "images_b")]

    def prepare(
        self,
        images_a: ImageBatch,
        images_b: ImageBatch,
        tasks: Sequence[str],
        dimensions: Sequence[str],
        prompts: Sequence[str | None],
        *,
        sources: ImageBatch | None = None,
        masks: ImageBatch | None = None,
        differentiable: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Model inputs (input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw).

        Sequences are left-padded so that the answer position is the last one in every row.
        """
        n = _batch_size_of(images_a, "images_a")
        for seq, what in (
            (images_b, "images_b"),
            (tasks, "tasks"),
            (dimensions, "dimensions"),
            (prompts, "prompts"),
        ):
            got = _batch_size_of(seq, what) if what == "images_b" else len(seq)
            if got != n:
                raise InputError(f"{what}: expected {n} entries (one per comparison), got {got}")
        queries = [self.template.render(t, d, p) for t, d, p in zip(tasks, dimensions, prompts, strict=True)]
        groups = self._images_in_order(images_a, images_b, sources, masks)
        device = self.device
        use_tensor_path = differentiable or any(isinstance(g, torch.Tensor) for g, _ in groups)
        if use_tensor_path:
            tensors = [_as_float_tensor(g, what, device) for g, what in groups]
            k = len(tensors)
            # interleave per comparison: [a0, b0, a1, b1, ...] (or with source/mask first)
            stacked = torch.stack(tensors, dim=1).reshape(n * k, *tensors[0].shape[1:])
            pixel_values, grid = preprocess_images(stacked, self.spec)
            h, w = tensors[0].shape[-2:]
            image_tokens = [[self.spec.tokens_per_image(h, w)] * k for _ in range(n)]
        else:
            lists = [_as_uint8_list(g, what) for g, what in groups]
            ordered = [arr for i in range(n) for arr in (lst[i] for lst in lists)]
            proc = self.vlm.processor.image_processor(images=ordered, return_tensors="pt")
            pixel_values, grid = proc["pixel_values"], proc["image_grid_thw"]
            image_tokens = [
                [self.spec.tokens_per_image(*lst[i].shape[:2]) for lst in lists] for i in range(n)
            ]
        texts = [self.chat_text(q, toks) for q, toks in zip(queries, image_tokens, strict=True)]
        enc = self.vlm.tokenizer(
            texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False
        )
        input_ids = enc["input_ids"].to(device)
        image_token_id = self.vlm.model.config.image_token_id
        return {
            "input_ids": input_ids,
            "attention_mask": enc["attention_mask"].to(device),
            "mm_token_type_ids": (input_ids == image_token_id).to(torch.int32),
            "pixel_values": pixel_values.to(device=device, dtype=self.vlm.model.dtype),
            "image_grid_thw": grid.to(device),
        }

    # ---------------------------------------------------------------------------------- scoring
    def answer_log_probs(self, inputs: dict[str, torch.Tensor], model: Any = None) -> torch.Tensor:
        """[B, 2] log-probabilities of (Yes, No) at the answer position (one forward pass).

        ``model`` replaces ``self.model`` for the call (a DDP/FSDP- or LoRA-wrapped copy in training).
        """
        out = (model if model is not None else self.vlm.model)(**inputs, logits_to_keep=1, use_cache=False)
        logits = out.logits[:, -1, :].float()
        ids = torch.tensor([self.vlm.yes_id, self.vlm.no_id], device=logits.device)
        if self.answer_norm == "yes_no":
            return torch.log_softmax(logits.index_select(-1, ids), dim=-1)
        return torch.log_softmax(logits, dim=-1).index_select(-1, ids)

    def p_yes(
        self,
        images_a: ImageBatch,
        images_b: ImageBatch,
        tasks: Sequence[str],
        dimensions: Sequence[str],
        prompts: Sequence[str | None],
        *,
        sources: ImageBatch | None = None,
        masks: ImageBatch | None = None,
        grad: bool = False,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """P(Yes | a, b, Phi(task, dimension, prompt)) per comparison, shape [B].

        ``images_a`` / ``images_b``: float tensors [B, 3, H, W] in [0, 1] or uint8 arrays
        (a list of HxWx3 or one [B, H, W, 3] array). ``grad=True`` keeps the autograd graph (one
        forward pass over the whole batch, float tensors differentiable w.r.t. their pixels);
        ``grad=False`` runs under ``torch.no_grad`` in chunks of ``batch_size``.
        """
        if grad:
            inputs = self.prepare(
                images_a,
                images_b,
                tasks,
                dimensions,
                prompts,
                sources=sources,
                masks=masks,
                differentiable=True,
            )
            return self.answer_log_probs(inputs)[:, 0].exp()
        n = _batch_size_of(images_a, "images_a")
        out = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                sl = slice(start, start + batch_size)
                inputs = self.prepare(
                    images_a[sl],
                    images_b[sl],
                    tasks[sl],
                    dimensions[sl],
                    prompts[sl],
                    sources=None if sources is None else sources[sl],
                    masks=None if masks is None else masks[sl],
                )
                out.append(self.answer_log_probs(inputs)[:, 0].exp())
        return torch.cat(out) if out else torch.zeros(0)
