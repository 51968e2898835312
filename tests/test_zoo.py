"""The tiny model zoo: builds every model from configs, deterministically, and reloads each
through the same from_pretrained(local_dir) path the full profile uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onereward.artifacts import read_artifact
from onereward.cli import main
from onereward.profile import load_profile
from onereward.zoo import ZOO_MODELS, build_zoo, ensure_zoo


def test_zoo_has_every_model_in_hf_format(tiny_zoo: Path) -> None:
    m = read_artifact(tiny_zoo, kind="zoo")
    assert m.counts["n_models_built"] == len(ZOO_MODELS)
    info = json.loads((tiny_zoo / "zoo.json").read_text())
    assert set(info["models"]) == set(ZOO_MODELS)
    for folder in ZOO_MODELS:
        files = [p for p in (tiny_zoo / folder).rglob("*") if p.is_file()]
        assert any(p.suffix == ".safetensors" for p in files), f"{folder}: no safetensors weights"
        assert not any(p.suffix in (".bin", ".pt", ".pkl", ".pth") for p in files), (
            f"{folder}: pickle weights"
        )
    prof = load_profile("tiny")
    for folder, (key, _) in ZOO_MODELS.items():
        assert prof.resolve_model(key, tiny_zoo) == str(tiny_zoo / folder)


def test_cache_is_reused(tiny_zoo: Path) -> None:
    before = read_artifact(tiny_zoo).created_at
    again = ensure_zoo("tiny")
    assert again == tiny_zoo and read_artifact(again).created_at == before


def test_same_seed_same_weights(tmp_path: Path, tiny_zoo: Path) -> None:
    # Built twice with the same seed, the models are byte-identical (only zoo.json may differ in nothing).
    a = build_zoo("tiny", tmp_path / "a", seed=0)
    assert a.content_hash == read_artifact(tiny_zoo).content_hash


def test_zoo_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "build", "--profile", "tiny", "--out", str(tmp_path / "z"), "--seed", "1"]) == 0
    assert "4 models built" in capsys.readouterr().out
    m = read_artifact(tmp_path / "z", kind="zoo")
    assert m.producer["parameters"]["seed"] == 1
    assert all(m.timings[f"build_{f}_s"] > 0 for f in ZOO_MODELS)


def test_full_profile_zoo_records_references(tmp_path: Path) -> None:
    m = build_zoo("full", tmp_path / "full")
    info = json.loads((tmp_path / "full" / "zoo.json").read_text())
    assert m.counts["n_models_built"] == 0
    assert info["models"]["flux_fill"]["ref"] == "black-forest-labs/FLUX.1-Fill-dev"


def test_each_model_loads_and_runs(tiny_zoo: Path) -> None:
    """One forward pass of each tiny model loaded back from the zoo folder (from_pretrained)."""
    import numpy as np
    import torch
    from PIL import Image

    from onereward.models import clip, flux_fill, reward_vlm, sd_inpaint

    model, preprocess, tokenizer = clip.load(str(tiny_zoo / "clip"), arch="onereward-tiny-vit")
    with torch.no_grad():
        image_emb = model.encode_image(torch.rand(2, 3, 64, 64))
        text_emb = model.encode_text(tokenizer(["a red circle"]))
    assert image_emb.shape[0] == 2 and image_emb.shape[1] == text_emb.shape[1]
    assert torch.isfinite(image_emb).all()

    source = Image.fromarray(np.full((64, 64, 3), 120, np.uint8))
    mask = Image.fromarray(np.pad(np.full((32, 32), 255, np.uint8), 16))
    for module, kwargs in ((flux_fill, {"max_sequence_length": 32}), (sd_inpaint, {})):
        pipe = module.load(str(tiny_zoo / module.__name__.rsplit(".", 1)[1]))
        out = pipe(
            prompt="a red circle",
            image=source,
            mask_image=mask,
            height=64,
            width=64,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            **kwargs,
        ).images
        assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all(), module.__name__

    vlm = reward_vlm.load(str(tiny_zoo / "reward_vlm"))
    assert vlm.yes_id != vlm.no_id
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "image"},
                {"type": "text", "text": "Is the first better?"},
            ],
        }
    ]
    text = vlm.processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = vlm.processor(text=[text], images=[source, source], return_tensors="pt")
    with torch.no_grad():
        logits = vlm.model(**batch).logits[0, -1]
    assert logits.shape[0] > max(vlm.yes_id, vlm.no_id) and torch.isfinite(logits).all()


def test_zoo_is_verified_before_use(tmp_path: Path, tiny_zoo: Path) -> None:
    """A tampered zoo or one built for other models is refused with an error naming the field."""
    import shutil

    import yaml

    from onereward.artifacts import ArtifactError

    prof = load_profile("tiny")
    assert prof.resolve_model("generator", tiny_zoo) == str(tiny_zoo / "flux_fill")
    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, copy)
    weights = next((copy / "flux_fill").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match=r"--zoo: .*field 'content_hash'"):
        prof.resolve_model("generator", copy)

    other = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "src/onereward/profiles/tiny.yaml").read_text()
    )
    other["models"]["clip"]["arch"] = "another-arch"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(ArtifactError, match=r"models_sha.*the zoo was built for another profile"):
        load_profile(tmp_path / "other.yaml").resolve_model("clip", tiny_zoo)


def test_cache_key_covers_the_builders(tiny_zoo: Path) -> None:
    from onereward.zoo import code_sha

    assert code_sha() in tiny_zoo.name and load_profile("tiny").models_sha in tiny_zoo.name
