"""Scoring API: one forward pass at the answer position, differentiable and fast image paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onereward.errors import InputError
from onereward.models import reward_vlm
from onereward.reward.preprocess import VisionPreprocessSpec, preprocess_images
from onereward.reward.scoring import RewardScorer
from onereward.reward.template import default_template

TASKS = ["image_fill", "object_removal", "image_extend"]
DIMS = ["text_alignment", "removal_quality", "consistency"]
PROMPTS = ["a red circle", None, None]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rvlm")
    reward_vlm.build_tiny(out, seed=0)
    return out


def _images(seed, n=3, size=64):
    rng = np.random.default_rng(seed)
    # smooth blobs plus noise: like the synthetic world, with high frequencies
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(3)], -1) * 90 + 128
    return np.clip(base[None] + rng.normal(0, 25, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _to_tensor(a):
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize(
    ("size", "min_pixels", "tol"), [(56, 56 * 56, 1e-5), (64, 56 * 56, 0.035), (64, 112 * 112, 0.035)]
)
def test_torch_preprocessing_matches_the_processor(tiny_dir, size, min_pixels, tol):
    vlm = reward_vlm.load(tiny_dir, min_pixels=min_pixels, max_pixels=112 * 112)
    spec = VisionPreprocessSpec.from_processor(vlm.processor)
    images = _images(0, size=size)
    ref = vlm.processor.image_processor(images=list(images), return_tensors="pt")
    ours, grid = preprocess_images(_to_tensor(images), spec)
    assert torch.equal(grid, ref["image_grid_thw"])
    assert ours.shape == ref["pixel_values"].shape
    # tol: 2 grey levels of torchvision's fixed-point uint8 kernel, / 255 / CLIP std
    assert (ours - ref["pixel_values"]).abs().max().item() <= tol


def test_inputs_match_the_processor_call(tiny_dir):
    scorer = RewardScorer.load(tiny_dir, min_pixels=112 * 112, max_pixels=112 * 112)
    a, b = _images(1), _images(2)
    ours = scorer.prepare(list(a), list(b), TASKS, DIMS, PROMPTS)
    texts = [
        scorer.vlm.processor.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": q}],
                }
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in (scorer.template.render(*x) for x in zip(TASKS, DIMS, PROMPTS, strict=True))
    ]
    ref = scorer.vlm.processor(
        text=texts, images=[im for pair in zip(a, b, strict=True) for im in pair], return_tensors="pt", padding=True,
        padding_side="left",
    )  # fmt: skip
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert torch.equal(ours["attention_mask"], ref["attention_mask"])
    assert torch.equal(ours["mm_token_type_ids"], ref["mm_token_type_ids"].to(torch.int32))
    assert torch.allclose(ours["pixel_values"], ref["pixel_values"])
    # 16 image tokens per image at 112 px, left padding puts the answer position last in every row
    assert int(ours["mm_token_type_ids"].sum()) == 3 * 2 * 16
    assert bool(ours["attention_mask"][:, -1].all())


def test_differentiable_path_gives_pixel_gradients_and_agrees_with_fast_path(tiny_dir):
    scorer = RewardScorer.load(tiny_dir)
    assert not any(p.requires_grad for p in scorer.model.parameters())
    a, b = _images(3), _images(4)
    fast = scorer.p_yes(list(a), list(b), TASKS, DIMS, PROMPTS)
    x = _to_tensor(a).requires_grad_(True)
    p = scorer.p_yes(x, _to_tensor(b), TASKS, DIMS, PROMPTS, grad=True)
    assert p.shape == (3,) and p.requires_grad
    p.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(p.detach(), fast, atol=2e-3)
    # batched equals one-by-one (left padding does not change the answer)
    single = torch.cat([scorer.p_yes(list(a[i : i + 1]), list(b[i : i + 1]), TASKS[i : i + 1], DIMS[i : i + 1],
                                     PROMPTS[i : i + 1]) for i in range(3)])  # fmt: skip
    assert torch.allclose(single, fast, atol=1e-4)


def test_vocab_normalisation_and_context_images(tiny_dir):
    a, b = _images(5), _images(6)
    yes_no = RewardScorer.load(tiny_dir).p_yes(list(a), list(b), TASKS, DIMS, PROMPTS)
    vocab = RewardScorer.load(tiny_dir, answer_norm="vocab").p_yes(list(a), list(b), TASKS, DIMS, PROMPTS)
    assert (vocab < yes_no).all() and (vocab > 0).all()  # P(Yes) over ~800 tokens vs over {Yes, No}
    ctx = RewardScorer.load(tiny_dir, template=default_template(context_images=True))
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 16:48, 16:48] = True
    inputs = ctx.prepare(list(a), list(b), TASKS, DIMS, PROMPTS, sources=list(_images(7)), masks=list(masks))
    assert inputs["image_grid_thw"].shape[0] == 12  # source, mask, a, b per comparison
    with pytest.raises(InputError, match="sources/masks"):
        ctx.p_yes(list(a), list(b), TASKS, DIMS, PROMPTS)


def test_bad_inputs_are_clear_errors(tiny_dir):
    scorer = RewardScorer.load(tiny_dir)
    a, b = list(_images(8)), list(_images(9))
    with pytest.raises(InputError, match="dimensions: expected 3"):
        scorer.p_yes(a, b, TASKS, DIMS[:2], PROMPTS)
    with pytest.raises(InputError, match="unknown task 'inpaint'"):
        scorer.p_yes(a, b, ["inpaint"] * 3, DIMS, PROMPTS)
    with pytest.raises(InputError, match="not evaluated for task 'object_removal'"):
        scorer.p_yes(a, b, ["object_removal"] * 3, ["aesthetics"] * 3, [None] * 3)
    with pytest.raises(InputError, match=r"images_a\[0\]: expected an HxWx3 uint8"):
        scorer.p_yes([x.astype(np.float32) for x in a], b, TASKS, DIMS, PROMPTS)
    with pytest.raises(InputError, match="answer_norm"):
        RewardScorer.load(tiny_dir, answer_norm="softmax")
    with pytest.raises(InputError, match="neither"):
        RewardScorer.load(tiny_dir / "tokenizer.json")
