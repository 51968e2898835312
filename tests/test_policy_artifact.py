"""The policy artifact contract: diffusers loads the LoRA as is, loaders put the policy's or the EMA's
weights on the right base (and refuse another), and generate samples with a policy (CLI and the
component's optional policy input, also through a real kfp.local run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from onereward.artifacts import ArtifactError, read_artifact
from onereward.cli import main
from onereward.errors import InputError
from onereward.models import flux_fill
from onereward.policy.artifact import POLICY_FILE, load_policy_pipeline, read_policy
from onereward.testing.policy import make_policy_artifact


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("policy-art") / "pool"
    assert main(["synth", "--out", str(out), "--items", "6", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def lora_policy(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("policy-art") / "lora"
    make_policy_artifact(out, zoo=tiny_zoo, finetune="lora", rank=4, seed=1, scale=0.2)
    return out


def _velocity(transformer, seed: int = 0) -> torch.Tensor:
    """One transformer call on fixed random inputs of the tiny model's shapes."""
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    n = 16
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, n, cfg.in_channels, generator=g),
            timestep=torch.tensor([0.5]),
            guidance=torch.tensor([1.0]),
            pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=g),
            encoder_hidden_states=torch.randn(1, 8, cfg.joint_attention_dim, generator=g),
            txt_ids=torch.zeros(8, 3),
            img_ids=torch.zeros(n, 3),
            return_dict=False,
        )[0]


def test_lora_policy_loads_in_diffusers_as_is_and_fused_equals_unfused(
    lora_policy: Path, tiny_zoo: Path
) -> None:
    manifest, info = read_policy(lora_policy)
    assert (
        manifest.kind == "policy"
        and info.finetune == "lora"
        and info.adapters == {"policy": "lora", "ema": "ema"}
    )
    assert info.base["generator"].startswith("zoo:flux_fill@sha256:")
    # diffusers, nothing of ours: FluxFillPipeline.load_lora_weights(<artifact>/lora)
    plain = flux_fill.load(tiny_zoo / "flux_fill")
    base_v = _velocity(plain.transformer)
    plain.load_lora_weights(str(lora_policy / "lora"))
    diffusers_v = _velocity(plain.transformer)
    assert (diffusers_v - base_v).abs().max() > 1e-3  # the adapter changes the model
    fused = load_policy_pipeline(lora_policy, zoo=tiny_zoo)
    unfused = load_policy_pipeline(lora_policy, zoo=tiny_zoo, fuse=False)
    assert torch.allclose(_velocity(fused.transformer), diffusers_v, atol=1e-5)
    assert torch.allclose(_velocity(unfused.transformer), diffusers_v, atol=1e-6)
    ema = load_policy_pipeline(lora_policy, zoo=tiny_zoo, weights="ema")
    ema_v = _velocity(ema.transformer)
    assert (ema_v - diffusers_v).abs().max() > 1e-4 and (ema_v - base_v).abs().max() > 1e-4
    meta = json.loads((lora_policy / POLICY_FILE).read_text())
    assert meta["lora"]["rank"] == 4 and "attn.to_q" in meta["lora"]["target_modules"]


def test_full_policy_round_trip(tiny_zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    make_policy_artifact(out, zoo=tiny_zoo, finetune="full", seed=2, scale=0.1)
    _, info = read_policy(out)
    assert info.adapters == {"policy": "transformer", "ema": "ema_transformer"} and info.lora is None
    from diffusers import FluxTransformer2DModel

    saved = FluxTransformer2DModel.from_pretrained(str(out / "transformer"))
    pipe = load_policy_pipeline(out, zoo=tiny_zoo)
    for (n, a), (_, b) in zip(saved.named_parameters(), pipe.transformer.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    base = flux_fill.load(tiny_zoo / "flux_fill")
    assert (_velocity(pipe.transformer) - _velocity(base.transformer)).abs().max() > 1e-3


def test_loaders_refuse_other_kinds_other_bases_and_bad_weights(
    lora_policy: Path, tiny_zoo: Path, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match=r"field 'kind' is 'zoo'; expected policy"):
        load_policy_pipeline(tiny_zoo, zoo=tiny_zoo)
    # a copy whose policy.json names another base (re-hashed, so only the base is wrong)
    import shutil

    from onereward.artifacts import ArtifactWriter

    other = tmp_path / "other"
    with ArtifactWriter(other, kind="policy", stage="test") as art:
        for name in ("lora", "ema"):
            shutil.copytree(lora_policy / name, art.path / name)
        meta = json.loads((lora_policy / POLICY_FILE).read_text())
        meta["base"]["generator"] = "zoo:flux_fill@sha256:0000"
        (art.path / POLICY_FILE).write_text(json.dumps(meta))
    with pytest.raises(
        InputError, match=r"field 'base.generator' is 'zoo:flux_fill@sha256:0000' but this run's base"
    ):
        load_policy_pipeline(other, zoo=tiny_zoo)
    with pytest.raises(InputError, match=r"weights: expected one of policy, ema, got 'best'"):
        load_policy_pipeline(lora_policy, zoo=tiny_zoo, weights="best")  # type: ignore[arg-type]


def test_generate_with_a_policy_changes_the_candidates_and_records_it(
    pool: Path, lora_policy: Path, tiny_zoo: Path, tmp_path: Path
) -> None:
    common = [
        "generate",
        "--subset",
        str(pool),
        "--zoo",
        str(tiny_zoo),
        "--num-candidates",
        "2",
        "--max-steps",
        "3",
    ]
    assert main([*common, "--out", str(tmp_path / "base")]) == 0
    assert main([*common, "--out", str(tmp_path / "pol"), "--policy", str(lora_policy)]) == 0
    assert (
        main(
            [*common, "--out", str(tmp_path / "ema"), "--policy", str(lora_policy), "--policy-weights", "ema"]
        )
        == 0
    )
    base, pol, ema = (read_artifact(tmp_path / n) for n in ("base", "pol", "ema"))
    policy_hash = read_artifact(lora_policy).content_hash
    assert "policy" not in base.parameters
    assert pol.parameters["policy"] == {"content_hash": policy_hash, "weights": "policy"}
    assert ema.parameters["policy"]["weights"] == "ema"
    assert policy_hash in {i["content_hash"] for i in pol.inputs}
    assert len({base.content_hash, pol.content_hash, ema.content_hash}) == 3  # different images
    # the same seeds and sampled parameters: only the weights differ
    from onereward.tables import read_table

    rows = [read_table(tmp_path / n / "candidates.parquet") for n in ("base", "pol")]
    assert [(r["seed"], r["steps"]) for r in rows[0]] == [(r["seed"], r["steps"]) for r in rows[1]]


def test_generate_component_takes_an_optional_policy(
    pool: Path, lora_policy: Path, tiny_zoo: Path, tmp_path: Path
) -> None:
    from kfp.dsl import HTML, Artifact, Metrics

    from onereward_kfp.components.generate_candidates import generate_candidates

    def out(name, cls=Artifact):
        return cls(name=name, uri=str(tmp_path / name))

    for name, policy in (("without", None), ("with", Artifact(name="policy", uri=str(lora_policy)))):
        generate_candidates.python_func(
            subset=Artifact(name="subset", uri=str(pool)), zoo=Artifact(name="zoo", uri=str(tiny_zoo)),
            candidates=out(name), report=out(f"{name}_r", HTML), metrics=out(f"{name}_m", Metrics),
            num_candidates=1, max_steps=2, policy=policy,
        )  # fmt: skip
    assert "policy" not in read_artifact(tmp_path / "without").parameters
    assert read_artifact(tmp_path / "with").parameters["policy"]["weights"] == "policy"
    spec = generate_candidates.component_spec.inputs["policy"]
    assert spec.optional is True


@pytest.mark.slow
def test_generate_component_reads_a_policy_in_a_local_kfp_run(
    pool: Path, lora_policy: Path, tiny_zoo: Path, tmp_path: Path
) -> None:
    """kfp.local: the optional Input[Artifact] arrives through dsl.importer (and may be left out)."""
    from kfp import dsl, local
    from kfp.dsl import Artifact

    from onereward_kfp.components.generate_candidates import generate_candidates

    @dsl.pipeline(name="generate-with-policy")
    def pipe():
        subset = dsl.importer(artifact_uri=str(pool), artifact_class=Artifact)
        zoo = dsl.importer(artifact_uri=str(tiny_zoo), artifact_class=Artifact)
        policy = dsl.importer(artifact_uri=str(lora_policy), artifact_class=Artifact)
        generate_candidates(
            subset=subset.output, zoo=zoo.output, policy=policy.output, num_candidates=1, max_steps=2
        )

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    pipe()
    (cand,) = list((tmp_path / "root").glob("*/generate-candidates/candidates"))
    assert read_artifact(cand).parameters["policy"]["content_hash"] == read_artifact(lora_policy).content_hash
