"""The Qwen2.5-VL reward model family: tiny builder, offline tokenizer, loading, real shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from onereward.models import reward_vlm


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reward_vlm")
    reward_vlm.build_tiny(out, seed=0)
    return out


def test_tokenizer_answers_are_single_tokens_and_specials_exist():
    tok = reward_vlm.build_tokenizer()
    yes, no = tok.encode("Yes", add_special_tokens=False), tok.encode("No", add_special_tokens=False)
    assert len(yes) == 1 and len(no) == 1 and yes != no
    for special in reward_vlm.SPECIAL_TOKENS:
        ids = tok.encode(special, add_special_tokens=False)
        assert len(ids) == 1, special
    # byte-level: any text round-trips, including characters outside the merges
    text = "Prompt: a red circle (ünïcode) 123"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_build_tiny_writes_hf_folder_and_is_deterministic(tiny_dir, tmp_path):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    text = config["text_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == head_dim
    assert config["vision_config"]["out_hidden_size"] == text["hidden_size"]

    again = tmp_path / "again"
    reward_vlm.build_tiny(again, seed=0)
    other = tmp_path / "other"
    reward_vlm.build_tiny(other, seed=1)
    a, b, c = (reward_vlm.load(p).model.state_dict() for p in (tiny_dir, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_load_round_trip_forward_and_pixel_bounds(tiny_dir):
    vlm = reward_vlm.load(tiny_dir, min_pixels=112 * 112, max_pixels=112 * 112)
    assert vlm.tokenizer.convert_ids_to_tokens([vlm.yes_id, vlm.no_id]) == ["Yes", "No"]
    assert vlm.model.config.image_token_id == vlm.tokenizer.convert_tokens_to_ids(reward_vlm.IMAGE_PAD)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Is it?"}],
        }
    ]
    text = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    images = [np.full((64, 64, 3), v, dtype=np.uint8) for v in (10, 200)]
    enc = vlm.processor(text=[text], images=images, return_tensors="pt")
    # 64 px upscaled to 112 px (min_pixels): 8x8 patches of 14, merged 2x2 -> 16 tokens per image
    assert enc["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    assert int((enc["input_ids"] == vlm.model.config.image_token_id).sum()) == 32
    with torch.no_grad():
        logits = vlm.model(**enc, logits_to_keep=1).logits
    assert logits.shape == (1, 1, vlm.model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_published_config_matches_the_7b_architecture():
    data = reward_vlm.published_config()
    assert data["hidden_size"] == 3584 and data["num_hidden_layers"] == 28
    assert data["vision_config"]["hidden_size"] == 1280 and data["vision_config"]["depth"] == 32
    assert data["rope_scaling"]["mrope_section"] == [16, 24, 24]
    config = reward_vlm.real_shape_config(tokenizer=reward_vlm.build_tokenizer())
    assert config.text_config.hidden_size == 3584 and config.text_config.num_hidden_layers == 1
    assert config.vision_config.hidden_size == 1280 and config.vision_config.out_hidden_size == 3584
    assert config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]


def test_real_shape_7b_architecture_one_forward_through_scoring(tmp_path):
    """Real widths of Qwen2.5-VL-7B (one text block, one vision block, vocabulary cut to the tiny
    tokenizer's), random weights, one P(Yes) through the scoring code on CPU."""
    import resource

    from transformers import Qwen2_5_VLForConditionalGeneration

    from onereward.reward.scoring import RewardScorer
    from onereward.reward.template import default_template

    tokenizer = reward_vlm.build_tokenizer()
    config = reward_vlm.real_shape_config(tokenizer=tokenizer)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval().requires_grad_(False)
    assert model.model.visual.merger.mlp[0].in_features == 1280 * 4  # 2x2 merge of 1280-wide patches
    assert model.model.visual.merger.mlp[2].out_features == 3584
    assert model.model.language_model.layers[0].self_attn.k_proj.out_features == 4 * 128  # 4 KV heads of 128
    processor = reward_vlm.build_processor(tokenizer, min_pixels=56 * 56, max_pixels=56 * 56)
    yes, no = tokenizer.convert_tokens_to_ids([reward_vlm.YES_TOKEN, reward_vlm.NO_TOKEN])
    vlm = reward_vlm.RewardVLM(model=model, processor=processor, yes_id=yes, no_id=no, path="real-shape")
    scorer = RewardScorer(vlm, default_template())
    a = torch.rand(1, 3, 56, 56, requires_grad=True)
    p = scorer.p_yes(
        a, torch.rand(1, 3, 56, 56), ["image_fill"], ["text_alignment"], ["a red circle"], grad=True
    )
    p.sum().backward()
    assert p.shape == (1,) and 0.0 < float(p) < 1.0
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2 < 8  # GiB
