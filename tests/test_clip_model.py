"""onereward.models.clip: tiny build, the shared loader, and a real-shape ViT-L/14 forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from onereward.errors import InputError
from onereward.models import clip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "clip"
    clip.build_tiny(out, seed=0)
    return out


def _images(n: int, size: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def test_tiny_build_layout_and_seed_determinism(tiny_dir, tmp_path):
    cfg = json.loads((tiny_dir / clip.CONFIG_NAME).read_text())
    assert cfg["model_cfg"]["vision_cfg"] == {
        "image_size": 64,
        "layers": 2,
        "width": 64,
        "head_width": 32,
        "patch_size": 16,
    }
    assert cfg["model_cfg"]["text_cfg"]["layers"] == 2 and cfg["model_cfg"]["text_cfg"]["width"] == 64
    assert cfg["preprocess_cfg"]["size"] == 64
    a = load_file(str(tiny_dir / clip.WEIGHTS_NAME))
    clip.build_tiny(tmp_path / "same", seed=0)
    clip.build_tiny(tmp_path / "other", seed=1)
    b = load_file(str(tmp_path / "same" / clip.WEIGHTS_NAME))
    c = load_file(str(tmp_path / "other" / clip.WEIGHTS_NAME))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], c["visual.proj"])
    assert clip.model_fingerprint(tiny_dir) == clip.model_fingerprint(tmp_path / "same")
    assert clip.model_fingerprint(tiny_dir) != clip.model_fingerprint(tmp_path / "other")


def test_tiny_load_roundtrip_and_embeddings(tiny_dir):
    model, preprocess, tokenizer = clip.load(tiny_dir)
    saved = load_file(str(tiny_dir / clip.WEIGHTS_NAME))
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert not model.training
    assert clip.image_size(model) == 64
    pixels = torch.stack([preprocess(im) for im in _images(5, (96, 80))])
    assert pixels.shape == (5, 3, 64, 64)
    emb = clip.encode_images(model, pixels)
    assert emb.shape == (5, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Different images give different embeddings; the same batch twice gives the same ones.
    assert np.abs(emb[0] - emb[1]).max() > 1e-3
    np.testing.assert_allclose(clip.encode_images(model, pixels), emb, atol=1e-6)
    tokens = tokenizer(["a red circle on grass", "remove the specified object"])
    assert tokens.shape == (2, 77) and int(tokens[0, 0]) != 0
    text = clip.encode_texts(model, tokenizer, ["a red circle"])
    assert text.shape == (1, 64)


def test_load_weights_only_folder_needs_arch(tiny_dir, tmp_path):
    folder = tmp_path / "weights_only"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes((tiny_dir / clip.WEIGHTS_NAME).read_bytes())
    with pytest.raises(InputError, match="models.clip.arch"):
        clip.load(folder)
    model, preprocess, _ = clip.load(folder, arch=clip.TINY_ARCH)
    ref, _, _ = clip.load(tiny_dir)
    pixels = torch.stack([preprocess(im) for im in _images(2, (64, 64))])
    np.testing.assert_allclose(clip.encode_images(model, pixels), clip.encode_images(ref, pixels), atol=1e-6)


def test_load_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        clip.load(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="neither open_clip_config.json nor a weights file"):
        clip.load(empty)


def test_vit_l14_real_shape_forward(tmp_path):
    """Published ViT-L/14 widths, patch and resolution with depth cut to one block per tower."""
    config = clip.packaged_config("ViT-L-14")
    vision, text = config["model_cfg"]["vision_cfg"], config["model_cfg"]["text_cfg"]
    assert (vision["width"], vision["patch_size"], vision["image_size"], vision["layers"]) == (
        1024,
        14,
        224,
        24,
    )
    assert (text["width"], text["heads"], text["layers"], config["model_cfg"]["embed_dim"]) == (
        768,
        12,
        12,
        768,
    )
    vision["layers"] = 1
    text["layers"] = 1
    folder = clip.build_from_config(config, tmp_path / "vit_l14_1block", seed=0)
    model, preprocess, tokenizer = clip.load(folder, arch="ViT-L-14")
    assert clip.image_size(model) == 224
    assert model.visual.conv1.weight.shape == (1024, 3, 14, 14)
    assert model.visual.positional_embedding.shape == (16 * 16 + 1, 1024)
    assert len(model.visual.transformer.resblocks) == 1
    pixels = torch.stack([preprocess(im) for im in _images(1, (300, 260))])
    assert pixels.shape == (1, 3, 224, 224)
    emb = clip.encode_images(model, pixels)
    assert emb.shape == (1, 768)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert clip.encode_texts(model, tokenizer, ["a photo"]).shape == (1, 768)
