"""Profiles: both built-ins load; unknown keys, wrong types and missing model folders name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from onereward.artifacts import ArtifactError
from onereward.profile import ProfileError, load_profile
from onereward.tasks import (
    DIMENSIONS,
    IMAGE_EXTEND,
    OBJECT_REMOVAL,
    TASKS,
    UnknownTaskError,
    dimensions_for,
    effective_prompt,
    task_dimension_pairs,
)

TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/onereward/profiles/tiny.yaml").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "custom.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_builtin_profiles_load() -> None:
    tiny = load_profile("tiny")
    full = load_profile("full")
    assert tiny.is_tiny and not full.is_tiny
    assert tiny.image_size == 64 and full.image_size == 1024
    assert full.models.generator.ref == "black-forest-labs/FLUX.1-Fill-dev"
    assert full.models.reward_model.ref == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert full.models.clip.arch == "ViT-L-14"
    assert tiny.sha != full.sha and len(tiny.sha) == 16
    assert load_profile("tiny").sha == tiny.sha  # stable


def test_custom_file_and_sha_changes(tmp_path: Path) -> None:
    data = {**TINY, "image_size": 128}
    prof = load_profile(_write(tmp_path, data))
    assert prof.image_size == 128 and prof.sha != load_profile("tiny").sha


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d.update(colour="red"), r"custom.yaml: colour: unknown key"),
        (lambda d: d["select"].update(batchsize=3), r"custom.yaml: select.batchsize: unknown key"),
        (lambda d: d["models"]["clip"].update(weights="x"), r"models.clip.weights: unknown key"),
        (lambda d: d.update(image_size="64"), r"custom.yaml: image_size: expected an integer, got '64'"),
        (lambda d: d["reward"].update(bf16="yes"), r"reward.bf16: expected true/false"),
        (
            lambda d: d["generate"].update(num_candidates=0),
            r"custom.yaml: generate.num_candidates: expected an integer >= 1, got 0",
        ),
        (lambda d: d.pop("models"), r"custom.yaml: models: required key is missing"),
        (lambda d: d["models"].pop("clip"), r"models.clip: required key is missing"),
        (
            lambda d: d["models"]["generator"].update(family="unet"),
            r"models.generator.family: expected 'flux_fill'",
        ),
        (lambda d: d.update(image_size=60), r"image_size: must be a multiple of 16"),
        (
            lambda d: d["reward"].update(finetune="qlora"),
            r"reward.finetune: expected one of full, lora, got 'qlora'",
        ),
        (
            lambda d: d["select"].update(num_workers=-3),
            r"select.num_workers: expected an integer >= 0, got -3",
        ),
        (
            lambda d: d["select"].update(dedup_threshold=7),
            r"select.dedup_threshold: expected a cosine similarity",
        ),
        (
            lambda d: d["reward"].update(min_pixels=10**7),
            r"reward.min_pixels: must not exceed max_pixels",
        ),
        (
            lambda d: d["generate"].update(max_sequence_length=0),
            r"generate.max_sequence_length: expected an integer >= 1, got 0",
        ),
        (lambda d: d.update(name="../../evil"), r"custom.yaml: name: expected letters"),
        (
            lambda d: d["models"]["reward_model"].update(family="flux_fill"),
            r"models.reward_model.family: expected ''",
        ),
        (
            lambda d: d["models"]["clip"].update(ref="zoo:reward_vlm"),
            r"models.clip.ref: the tiny zoo holds this model as 'zoo:clip'",
        ),
    ],
)
def test_invalid_profiles_name_the_key(tmp_path: Path, mutate, pattern: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    mutate(data)
    with pytest.raises(ProfileError, match=pattern):
        load_profile(_write(tmp_path, data))


def test_missing_model_folder(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["models"]["reward_model"] = {"ref": str(tmp_path / "no-such-model")}
    with pytest.raises(
        ProfileError, match=r"models.reward_model.ref: model folder .*no-such-model does not exist"
    ):
        load_profile(_write(tmp_path, data))


def test_resolve_zoo_ref_needs_a_zoo(tmp_path: Path) -> None:
    prof = load_profile("tiny")
    (tmp_path / "clip").mkdir()
    with pytest.raises(ArtifactError, match=r"--zoo: .*manifest.json is missing"):
        prof.resolve_model("clip", tmp_path)
    # hub ids resolve through the Hugging Face cache (tests run offline: HF_HUB_OFFLINE, conftest.py)
    with pytest.raises(
        ProfileError, match=r"models.reward_model.ref: model 'Qwen/Qwen2.5-VL-7B-Instruct' was not found"
    ):
        load_profile("full").resolve_model("reward_model")


def test_unknown_profile_name_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="neither a built-in profile"):
        load_profile("medium")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProfileError, match=r"bad.yaml: not valid YAML at line \d+, column \d+: ") as exc:
        load_profile(bad)
    assert "\n" not in str(exc.value)
    bad.write_text("- a\n- b\n")
    with pytest.raises(
        ProfileError, match=r"bad.yaml: expected a mapping of profile keys at the top level, got list"
    ):
        load_profile(bad)


def test_task_table_matches_the_paper() -> None:
    assert set(TASKS) == {"image_fill", "image_extend", "object_removal"}
    assert dimensions_for("image_fill", "a red circle") == (
        "text_alignment",
        "consistency",
        "structure",
        "aesthetics",
    )
    assert dimensions_for(IMAGE_EXTEND, None) == ("consistency", "structure", "aesthetics")
    assert dimensions_for(IMAGE_EXTEND, "a sky") == (
        "text_alignment",
        "consistency",
        "structure",
        "aesthetics",
    )
    assert dimensions_for(OBJECT_REMOVAL, "ignored") == ("removal_quality",)
    assert effective_prompt(OBJECT_REMOVAL, None) == "remove the specified object"
    assert effective_prompt(IMAGE_EXTEND, "  ") == "extend the image naturally"
    assert len(task_dimension_pairs()) == 9 and {d for _, d in task_dimension_pairs()} == set(DIMENSIONS)
    with pytest.raises(UnknownTaskError, match="unknown task 'inpaint'"):
        dimensions_for("inpaint")
    with pytest.raises(UnknownTaskError, match="prompt: task 'image_fill' needs a non-empty prompt"):
        effective_prompt("image_fill", "")


def test_a_profile_can_start_from_another(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text("base: tiny\nname: small\ngenerate:\n  num_candidates: 2\n")
    small = load_profile(tmp_path / "small.yaml")
    tiny = load_profile("tiny")
    assert small.name == "small" and small.generate.num_candidates == 2
    assert (
        small.generate.max_steps == tiny.generate.max_steps and small.models == tiny.models
    )  # merged key by key
    (tmp_path / "child.yaml").write_text(
        "base: small.yaml\nreward:\n  max_steps: 7\n"
    )  # relative to the file
    child = load_profile(tmp_path / "child.yaml")
    assert child.reward.max_steps == 7 and child.generate.num_candidates == 2
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\nname: loop\n")
    with pytest.raises(ProfileError, match="loop.yaml: base: 'loop.yaml' makes a cycle"):
        load_profile(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("base: tiny\ngenerate:\n  cfg_min: 0.5\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: generate.cfg_min: need 1 <= cfg_min <= cfg_max"):
        load_profile(tmp_path / "bad.yaml")


def test_full_samples_as_flux_fill_dev_is_published_and_onereward_is_the_named_alternative() -> None:
    import inspect

    from diffusers import FluxFillPipeline

    published = inspect.signature(FluxFillPipeline.__call__).parameters
    full = load_profile("full").generate
    assert full.guidance == published["guidance_scale"].default == 30.0
    assert full.cfg_min == full.cfg_max == 1.0  # FluxFillPipeline has no true CFG
    onereward = load_profile("full-onereward")
    assert (onereward.generate.guidance, onereward.generate.cfg_min, onereward.generate.cfg_max) == (
        1.0,
        3.0,
        5.0,
    )
    assert onereward.models == load_profile("full").models and onereward.name == "full-onereward"
