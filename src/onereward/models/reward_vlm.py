"""Qwen2.5-VL reward model family: tiny builders (random or the shipped pretrained weights) and loader.

``build_tiny(out_dir, seed)`` writes a folder with the same layout as the published
``Qwen/Qwen2.5-VL-7B-Instruct`` checkpoint (``config.json``, safetensors weights, tokenizer,
image/video processor, chat template), so that :func:`load` goes through exactly the
``from_pretrained`` calls a real checkpoint goes through. The tiny model is a
``Qwen2_5_VLForConditionalGeneration`` from a small config with seeded random weights; its Qwen2
tokenizer is built from an in-memory byte-level vocabulary whose merges make ``Yes`` and ``No``
single tokens (the reward is read from those two logits). :func:`build_trained` builds the tiny
zoo's model: the same architecture with the weights pretrained on the synthetic world's degraded
pairs that ship with the package (:mod:`onereward.reward.pretrain`, :mod:`onereward.models.trained`).

``configs/qwen2_5_vl_7b.json`` keeps the published 7B configuration; :func:`real_shape_config`
turns it into a loadable config with the real widths (text hidden 3584, vision hidden 1280, rope
sections [16, 24, 24], the vision merger) but fewer blocks, for tests and benchmarks that need the
real architecture without the 16 GB of weights.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from onereward.models.text_tokenizers import bytes_to_unicode

YES_TOKEN = "Yes"
NO_TOKEN = "No"

# Special tokens of the Qwen2 / Qwen2.5-VL tokenizer (same strings as the published one).
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VISION_PAD = "<|vision_pad|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    VISION_PAD,
    IMAGE_PAD,
    VIDEO_PAD,
)

# Qwen2-VL-style chat template: images become <|vision_start|><|image_pad|><|vision_end|> and the
# processor expands each <|image_pad|> to the image's number of merged patches.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words that get whole-word merges in the tiny vocabulary: the answers (which must be single
# tokens), words of the chat template, the reward queries and the dimension definitions, and the
# synthetic world's prompt vocabulary, so that sequences stay short (a query is ~40 tokens instead
# of ~120 bytes-and-pairs) and tiny training steps stay cheap.
_STATIC_WORDS: tuple[str, ...] = (
    "Yes", "No", "system", "user", "assistant", "You", "are", "a", "helpful", "the", "first", "second",
    "image", "images", "is", "better", "than", "for", "task", "dimension", "prompt", "fill", "extend",
    "object", "removal", "text", "alignment", "consistency", "structure", "aesthetics", "quality",
    "Task", "Dimension", "Prompt", "Answer", "or", "with", "and", "of", "in", "to", "Is", "Image",
    "source", "mask", "edited", "edit", "region", "remove", "specified", "naturally", "Compare", "two",
    "results", "that", "follow", "The", "which", "one", "on", "word", "letters", "background", "plain",
    "gradient", "striped", "checkered", "red", "green", "blue", "yellow", "purple", "orange", "grey",
    "light", "beige", "pale", "sage", "slate", "sand", "charcoal", "circle", "square", "triangle",
    "OPEN", "STOP", "EXIT", "HOTEL", "TAXI", "WIFI",
)  # fmt: skip


def _vocabulary_words() -> tuple[str, ...]:
    from onereward.tasks import DIMENSION_DEFINITIONS

    words = list(_STATIC_WORDS)
    for text in DIMENSION_DEFINITIONS.values():
        words.extend(w for w in re.findall(r"[A-Za-z]+", text) if w not in words)
    return tuple(dict.fromkeys(words))


def build_vocabulary(words: tuple[str, ...] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level vocabulary (256 byte symbols) plus left-to-right merges for ``words``.

    Each word gets merges in its bare form and with a leading space (``Ġword``), built one
    character at a time, so BPE turns it into a single token (bare forms may still split when an
    earlier word's merge pre-empts them; the answers never do). Returns (vocab, merges).
    """
    words = _vocabulary_words() if words is None else words
    byte_map = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for b in range(256):
        vocab[byte_map[b]] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    # BPE applies the lowest-ranked merge first, so the order matters: the answers come first (they
    # must always be single tokens), then every " word" chain (all start with the space symbol and
    # cannot be pre-empted by a bare-word merge), then the bare words.
    forms = [YES_TOKEN, NO_TOKEN] + [" " + w for w in words] + list(words)
    for form in forms:
        symbols = [byte_map[b] for b in form.encode("utf-8")]
        current = symbols[0]
        for nxt in symbols[1:]:
            pair = (current, nxt)
            current = current + nxt
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            if current not in vocab:
                vocab[current] = len(vocab)
    return vocab, merges


def build_tokenizer() -> Any:
    """Offline Qwen2 tokenizer from the in-memory vocabulary, with the Qwen2-VL special tokens."""
    from transformers import Qwen2Tokenizer

    vocab, merges = build_vocabulary()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=32768,
        extra_special_tokens={"image_token": IMAGE_PAD, "video_token": VIDEO_PAD},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    for word in (YES_TOKEN, NO_TOKEN):
        ids = tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:  # a bug in the vocabulary, not bad input
            raise RuntimeError(f"tokenizer: {word!r} must be a single token, got ids {ids}")
    return tokenizer


@dataclass(frozen=True)
class TinySize:
    """Widths of the tiny reward VLM (defaults: the zoo's model)."""

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64
    mrope_section: tuple[int, int, int] = (2, 3, 3)  # sums to head_dim / 2 = 64 / 4 / 2
    # Weight init std. The published 0.02 suits widths of thousands; at width 64 it makes the
    # attention logits ~0 (uniform attention), so the first and the second image look alike to
    # the answer position and pairwise training stalls at P(Yes) = 0.5. ~1/sqrt(width) does not.
    initializer_range: float = 0.12


def tiny_config(tokenizer: Any, size: TinySize = TinySize()) -> Any:
    """A ``Qwen2_5_VLConfig`` of ``size`` whose special-token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    head_dim = size.text_hidden // size.text_heads
    if sum(size.mrope_section) * 2 != head_dim:
        raise ValueError(f"mrope_section {size.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
    n_tokens = len(tokenizer)
    vocab_size = (n_tokens + 63) // 64 * 64  # padded like the real embeddings
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": size.text_hidden,
            "intermediate_size": size.text_intermediate,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "num_key_value_heads": size.text_kv_heads,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": list(size.mrope_section),
            },
            "bos_token_id": ids[ENDOFTEXT],
            "eos_token_id": ids[IM_END],
            "pad_token_id": ids[ENDOFTEXT],
            "max_window_layers": size.text_layers,
            "initializer_range": size.initializer_range,
        },
        vision_config={
            "depth": size.vision_depth,
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.vision_intermediate,
            "num_heads": size.vision_heads,
            "out_hidden_size": size.text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [size.vision_depth - 1],
            "tokens_per_second": 2,
            "initializer_range": size.initializer_range,
        },
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
    )


def build_processor(tokenizer: Any, *, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> Any:
    """``Qwen2_5_VLProcessor`` (Qwen2-VL image + video processors) around ``tokenizer``."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_components(seed: int = 0, size: TinySize | None = None) -> dict[str, Any]:
    """``{"model": Qwen2_5_VLForConditionalGeneration}`` of ``size`` with seeded random weights (the
    global RNG is left as it was)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = tiny_config(build_tokenizer(), size or TinySize())
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return {"model": model}


def _save(model: Any, out_dir: str | os.PathLike[str]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    build_processor(build_tokenizer()).save_pretrained(out)


def build_tiny(out_dir: str | os.PathLike[str], seed: int = 0, *, size: TinySize | None = None) -> None:
    """Build the tiny Qwen2.5-VL reward VLM with seeded random weights into ``out_dir``.

    Writes config, safetensors weights, tokenizer (``tokenizer.json``), processor configs and the
    chat template with ``save_pretrained``; the same ``seed`` gives identical weights.
    """
    _save(tiny_components(seed, size)["model"], out_dir)


def build_trained(
    out_dir: str | os.PathLike[str], seed: int = 0, *, weights_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Build the zoo's tiny reward VLM pretrained on the synthetic world into ``out_dir`` and return
    its weights index.

    The architecture comes from the shipped ``weights.json`` (``size``), the weights from the
    shipped safetensors (:mod:`onereward.models.trained`, written by
    :mod:`onereward.reward.pretrain`; ``weights_root`` overrides where they are read); ``seed`` is
    unused and accepted so that every zoo builder has one signature. Saved like :func:`build_tiny`.
    """
    from onereward.models import trained

    del seed
    comps, index = trained.trained_components("reward_vlm", TinySize, tiny_components, weights_root)
    _save(comps["model"], out_dir)
    return index


@dataclass
class RewardVLM:
    """A loaded reward VLM: model, processor, and the token ids of the two answers."""

    model: Any
    processor: Any
    yes_id: int
    no_id: int
    path: str

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer


def _answer_ids(tokenizer: Any, where: str) -> tuple[int, int]:
    ids = []
    for word in (YES_TOKEN, NO_TOKEN):
        enc = tokenizer.encode(word, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"{where}: tokenizer splits {word!r} into {len(enc)} tokens; the reward needs one"
            )
        ids.append(enc[0])
    return ids[0], ids[1]


def load(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attn_implementation: str | None = None,
) -> RewardVLM:
    """Load a reward VLM folder (tiny zoo, a trained reward model, or the real checkpoint).

    ``min_pixels`` / ``max_pixels`` override the image processor's resize bounds (Qwen2-VL's
    dynamic resolution). ``dtype`` defaults to float32 (the checkpoint's own dtype is bf16 for the
    published model; pass ``torch.bfloat16`` on GPU).
    """
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    folder = os.fspath(path)
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, **kwargs)
    processor = AutoProcessor.from_pretrained(folder)
    if min_pixels is not None or max_pixels is not None:
        # Dynamic-resolution bounds: only the images' (videos are never scored).
        ip = processor.image_processor
        size = {"shortest_edge": ip.size["shortest_edge"], "longest_edge": ip.size["longest_edge"]}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        if size["shortest_edge"] > size["longest_edge"]:
            raise ValueError(
                f"min_pixels {size['shortest_edge']} must not exceed max_pixels {size['longest_edge']}"
            )
        ip.size = type(ip.size)(**size)
    if device is not None:
        model = model.to(device)
    yes_id, no_id = _answer_ids(processor.tokenizer, f"{folder}: tokenizer")
    return RewardVLM(model=model, processor=processor, yes_id=yes_id, no_id=no_id, path=folder)


def published_config() -> dict[str, Any]:
    """The published Qwen2.5-VL-7B-Instruct ``config.json`` (``configs/qwen2_5_vl_7b.json``)."""
    text = resources.files("onereward.models").joinpath("configs/qwen2_5_vl_7b.json").read_text()
    data = json.loads(text)
    data.pop("_comment", None)
    return data


def real_shape_config(*, text_layers: int = 1, vision_depth: int = 1, tokenizer: Any = None) -> Any:
    """The 7B architecture with real widths but ``text_layers`` / ``vision_depth`` blocks.

    Keeps hidden 3584, 28 heads / 4 KV heads, intermediate 18944, rope sections [16, 24, 24],
    vision hidden 1280 / 16 heads / intermediate 3420, patch 14, merge 2, window 112 and the vision
    merger (5120 -> 3584). With ``tokenizer`` (e.g. the tiny one) the vocabulary is cut to that
    tokenizer's size (padded to 64) and the special-token ids follow it: the published 152064-row
    embedding and LM head alone would take 4.4 GB in float32, which a CPU test cannot afford.
    """
    from transformers import Qwen2_5_VLConfig

    data = published_config()
    data.pop("torch_dtype", None)  # random weights in the caller's default dtype (float32 on CPU)
    data["num_hidden_layers"] = text_layers
    data["max_window_layers"] = text_layers
    vision = dict(data["vision_config"])
    vision["depth"] = vision_depth
    vision["fullatt_block_indexes"] = [vision_depth - 1]
    data["vision_config"] = vision
    if tokenizer is not None:
        data["vocab_size"] = (len(tokenizer) + 63) // 64 * 64
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        data.update(
            bos_token_id=ids[ENDOFTEXT],
            eos_token_id=ids[IM_END],
            vision_start_token_id=ids[VISION_START],
            vision_end_token_id=ids[VISION_END],
            vision_token_id=ids[VISION_PAD],
            image_token_id=ids[IMAGE_PAD],
            video_token_id=ids[VIDEO_PAD],
        )
    return Qwen2_5_VLConfig(**data)
