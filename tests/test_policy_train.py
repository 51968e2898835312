"""train_policy: bad inputs are one line; ReFL's loss is Eq. 5 and only the adapters learn; gradient
accumulation and checkpointing keep the gradient; EMA, the frozen reference without a second copy,
float32 master weights; the reference cache equals fresh rollouts; NFT's pieces; the three
algorithms write a policy that loads; a run killed with SIGKILL resumes to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from onereward.artifacts import ArtifactError
from onereward.cli import main
from onereward.config import ConfigError
from onereward.errors import InputError
from onereward.policy.config import PolicyConfig
from onereward.reward.gate import RewardGateError
from onereward.testing.policy import make_reward_model_artifact

# Small enough for seconds per run on one core.
FAST = {
    "max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "rollout_steps": 3, "t1": 1, "t2": 2,
    "probe_items": 1, "probe_seeds": 1, "eval_every": 2, "report_items": 1, "threads": 1,
    "reference_seeds": 2, "nft_group_size": 2, "nft_rollout_steps": 2, "lora_rank": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_zoo: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("policy-train")
    assert main(["synth", "--out", str(root / "pool"), "--items", "12", "--seed", "5"]) == 0
    make_reward_model_artifact(root / "rm", zoo=tiny_zoo, accuracy=0.8)
    return {"root": root, "pool": root / "pool", "rm": root / "rm", "zoo": tiny_zoo}


def _run(world, out: Path, **settings):
    from onereward.policy.stage import run

    return run(str(world["pool"]), str(world["rm"]), str(out), zoo=str(world["zoo"]), **{**FAST, **settings})


# ---- settings and inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"algorithm": "ppo"},
            r"policy.algorithm \(--algorithm\): expected one of refl, refl_dynamic, nft, got 'ppo'",
        ),
        (
            {"reward_lambda": 0.0},
            r"policy.reward_lambda \(--reward-lambda\): expected lambda in \(0, 1\], got 0.0",
        ),
        ({"reward_lambda": 1.5}, r"expected lambda in \(0, 1\], got 1.5"),
        ({"t1": 5, "t2": 3}, r"policy.t1 \(--t1\): expected t1 <= t2 \(3\), got 5"),
        ({"t2": 8, "rollout_steps": 8}, r"policy.t2 \(--t2\): expected t2 < rollout_steps \(8\), got 8"),
        ({"family": "sd_inpaint"}, r"policy.family .*train_policy trains flux_fill generators"),
        (
            {"task_probabilities": "image_fill=x"},
            r"policy.task_probabilities .*expected a number for image_fill",
        ),
        (
            {"dimension_weights": "sharpness=2"},
            r"policy.dimension_weights .*expected 'dimension=w,...' with dimensions from text_alignment",
        ),
        ({"dimension_weights": "text_alignment=-1"}, r"expected one finite weight >= 0 per dimension"),
        (
            {"nft_constraint_rate": -1.0},
            r"policy.nft_constraint_rate .*expected a finite number >= 0, got -1.0",
        ),
        ({"refl_kl_weight": -0.5}, r"policy.refl_kl_weight .*expected a finite number >= 0, got -0.5"),
        (
            {"nft_constraint_rate": 1.0, "nft_reward": "score"},
            r"policy.nft_constraint_rate .*expected 0 with nft_reward 'score'",
        ),
    ],
)
def test_bad_settings_are_one_line_config_errors(settings, message) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        PolicyConfig.resolve(PolicyConfig(), settings)
    assert "\n" not in str(e.value)


def test_bad_settings_on_the_command_line_exit_2_with_one_line(world, tmp_path, capsys) -> None:
    argv = ["train-policy", "--subset", str(world["pool"]), "--reward-model", str(world["rm"])]
    assert main([*argv, "--out", str(tmp_path / "p"), "--reward-lambda", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "reward_lambda" in err and "(0, 1]" in err
    with pytest.raises(SystemExit):  # argparse: unknown algorithm
        main([*argv, "--out", str(tmp_path / "p"), "--algorithm", "ppo"])
    assert "invalid choice: 'ppo'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_bad_inputs_are_refused_before_training(world, tmp_path) -> None:
    with pytest.raises(
        ArtifactError, match=r"--reward-model: .* field 'kind' is 'pool'; expected reward_model"
    ) as e:
        _run({**world, "rm": world["pool"]}, tmp_path / "p")
    assert "\n" not in str(e.value)
    weak = make_reward_model_artifact(tmp_path / "weak", zoo=world["zoo"], accuracy=0.8)
    table = weak.metrics()["accuracy"]
    table["image_fill"]["text_alignment"] = 0.55
    make_reward_model_artifact(tmp_path / "weak", zoo=world["zoo"], accuracy=table)
    with pytest.raises(
        RewardGateError, match=r"test accuracy below 0.6 for image_fill/text_alignment=0.550"
    ) as e:
        _run({**world, "rm": tmp_path / "weak"}, tmp_path / "p")
    assert "\n" not in str(e.value)
    assert main(["synth", "--out", str(tmp_path / "nomask"), "--items", "6", "--no-masks"]) == 0
    with pytest.raises(InputError, match=r"item '.*': field 'mask' is null; train_policy needs a mask") as e:
        _run({**world, "pool": tmp_path / "nomask"}, tmp_path / "p")
    assert "\n" not in str(e.value) and not (tmp_path / "p").exists()


# ---- the pieces -------------------------------------------------------------------------------


def _pieces(world, **settings):
    """The stage's objects for unit tests: conditions, model, rollouts, reward, algorithm."""
    from accelerate import Accelerator

    from onereward.policy.conditions import read_conditions
    from onereward.policy.rewards import load_reward_model
    from onereward.policy.stage import _build, vae_grid
    from onereward.profile import load_profile

    prof = load_profile("tiny")
    cfg = PolicyConfig.resolve(prof.policy, {**FAST, **settings})
    model_dir = str(world["zoo"] / "flux_fill")
    conds = read_conditions(
        str(world["pool"]),
        probabilities=cfg.probabilities(),
        probe_items=1,
        seed=cfg.seed,
        grid=vae_grid(model_dir),
    )
    acc = Accelerator(cpu=True, mixed_precision=cfg.mixed_precision)
    scorer, _, _ = load_reward_model(
        str(world["rm"]), cells=conds.needed_cells(), threshold=0.6, override=False, device="cpu",
        dtype=torch.float32,
    )  # fmt: skip
    from onereward.policy.stage import _references

    _references(None, prof, cfg, "", conds)
    algorithm, model, monitor = _build(prof, cfg, model_dir, torch.device("cpu"), acc, conds, scorer, None)
    return cfg, conds, algorithm, model, monitor


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.transformer.named_parameters() if p.grad is not None}


def test_refl_loss_is_eq5_and_only_the_policy_adapter_gets_gradients(world) -> None:
    torch.set_num_threads(1)
    cfg, conds, refl, model, _ = _pieces(world, batch_size=3, micro_batch_size=3, reward_lambda=0.9)
    stats = refl.step(0)
    grads = _grads(model)
    assert grads and all(".lora_" in n and ".policy." in n for n in grads)
    assert any(g.abs().sum() > 0 for g in grads.values())
    # the same draws by hand: J = mean over samples of mean over dimensions of max(0, lambda - P)
    samples, ref_seeds, pol_seeds, t = refl.draws(0)
    with torch.no_grad():
        ref = refl.reference_images(samples, ref_seeds)
        pol = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps)
        p, comps = refl.reward.p_yes(pol.images, ref, samples, grad=False)
    per_sample = [
        np.mean([max(0.0, 0.9 - float(p[k])) for k in range(len(p)) if comps.index[k] == i]) for i in range(3)
    ]
    assert stats.loss == pytest.approx(float(np.mean(per_sample)), rel=1e-5)
    assert stats.n_comparisons == sum(len(c.dimensions) for c in samples)
    assert stats.above_lambda == pytest.approx(float((p >= 0.9).float().mean()))


def test_refl_kl_anchor_adds_the_policys_drift_from_the_base(world) -> None:
    """``refl_kl_weight`` w: each sample's loss is Eq. 5 plus w ||v_policy - v_base||^2 at the grad
    step. The drift is 0 while the adapters are 0 and grows when the policy moves; with full
    fine-tuning the base is a frozen copy."""
    torch.set_num_threads(1)
    cfg, conds, refl, model, _ = _pieces(world, batch_size=2, micro_batch_size=2, refl_kl_weight=2.0)
    first = refl.step(0)
    assert first.extra["kl"] == pytest.approx(0.0, abs=1e-12)  # LoRA B starts at 0: policy == base
    with torch.no_grad():
        for n, p in model.transformer.named_parameters():
            if ".policy." in n and "lora_B" in n:
                p.add_(0.05)
    model.transformer.zero_grad(set_to_none=True)
    stats = refl.step(0)
    samples, ref_seeds, pol_seeds, t = refl.draws(0)
    with torch.no_grad():
        ref = refl.reference_images(samples, ref_seeds)
        pol = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps, anchor=True)
        plain = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps)
        p, comps = refl.reward.p_yes(pol.images, ref, samples, grad=False)
    assert plain.anchor is None and torch.equal(plain.images, pol.images)
    eq5 = comps.per_condition_mean(torch.relu(cfg.reward_lambda - p.float()), len(samples)).mean()
    assert stats.extra["kl"] == pytest.approx(float(pol.anchor.mean()), rel=1e-5) and stats.extra["kl"] > 1e-6
    assert stats.loss == pytest.approx(float(eq5) + 2.0 * stats.extra["kl"], rel=1e-5)
    # The anchor's gradient alone, followed a small step, brings the policy back towards the base.
    model.transformer.zero_grad(set_to_none=True)
    drift = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps, anchor=True).anchor
    drift.mean().backward()
    grads = _grads(model)
    assert grads and all(".policy." in n for n in grads)
    with torch.no_grad():
        for n, p in model.transformer.named_parameters():
            if n in grads:
                p.sub_(10.0 * grads[n])
        after = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps, anchor=True).anchor
    assert float(after.mean()) < 0.9 * float(drift.mean())
    cfg_full, _, _, full, _ = _pieces(world, finetune="full", refl_kl_weight=1.0, algorithm="refl_dynamic")
    assert set(full.copies) >= {"base", "ema"}


def test_reward_in_both_orders_cancels_the_position_of_the_pair(world) -> None:
    """``reward_orders: both`` is (P(Yes | a, b) + 1 - P(Yes | b, a)) / 2 of the same reward model,
    so swapping a and b gives 1 - the reward; the paper's single order does not have that symmetry."""
    torch.set_num_threads(1)
    cfg, conds, refl, model, _ = _pieces(world, batch_size=2, micro_batch_size=2, reward_orders="both")
    assert refl.reward.orders == "both"
    samples, ref_seeds, pol_seeds, t = refl.draws(0)
    with torch.no_grad():
        ref = refl.reference_images(samples, ref_seeds)
        pol = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps)
        both, comps = refl.reward.p_yes(pol.images, ref, samples, grad=False)
        swapped, _ = refl.reward.p_yes(ref, pol.images, samples, grad=False)
        refl.reward.orders = "policy_first"
        ab, _ = refl.reward.p_yes(pol.images, ref, samples, grad=False)
        ba, _ = refl.reward.p_yes(ref, pol.images, samples, grad=False)
    assert len(both) == len(comps.index) == sum(len(c.dimensions) for c in samples)
    assert torch.allclose(both, 0.5 * (ab + 1.0 - ba), atol=1e-6)
    assert torch.allclose(both + swapped, torch.ones_like(both), atol=1e-6)
    assert not torch.allclose(ab + ba, torch.ones_like(ab), atol=1e-3)  # one order is position-biased
    from onereward.policy.rewards import PairwiseReward

    with pytest.raises(ValueError, match="reward orders: expected 'policy_first' or 'both', got 'first'"):
        PairwiseReward(refl.reward.scorer, orders="first")
    with pytest.raises(ConfigError, match="reward_orders"):
        PolicyConfig.resolve(PolicyConfig(), {"reward_orders": "first"})


def test_dimension_weights_weight_each_samples_mean_over_dimensions(world) -> None:
    torch.set_num_threads(1)
    weights = {"text_alignment": 3.0, "consistency": 0.0}
    cfg, conds, refl, model, _ = _pieces(
        world, batch_size=4, micro_batch_size=4, dimension_weights="text_alignment=3, consistency=0"
    )
    assert cfg.weights() == weights  # dimensions not named (aesthetics...) weigh 1 in the step below
    stats = refl.step(0)
    samples, ref_seeds, pol_seeds, t = refl.draws(0)
    with torch.no_grad():
        ref = refl.reference_images(samples, ref_seeds)
        pol = refl.rollouts.policy_x0(samples, pol_seeds, t, steps=cfg.rollout_steps)
        p, comps = refl.reward.p_yes(pol.images, ref, samples, grad=False)
    per_sample = []
    for i in range(len(samples)):
        ks = [k for k in range(len(p)) if comps.index[k] == i]
        w = [weights.get(comps.dimensions[k], 1.0) for k in ks]
        losses = [max(0.0, cfg.reward_lambda - float(p[k])) for k in ks]
        per_sample.append(float(np.dot(w, losses) / sum(w)) if sum(w) else 0.0)
    assert stats.loss == pytest.approx(float(np.mean(per_sample)), rel=1e-5)
    # a weight of 0 removes the dimension from the mean
    values = torch.tensor([0.2, 0.9, 0.5])
    only = type(comps)(
        [0, 0, 1], ["image_fill"] * 3, ["consistency", "aesthetics", "consistency"], [None] * 3
    )
    assert only.per_condition_mean(values, 2, weights).tolist() == pytest.approx([0.9, 0.0])
    assert only.per_condition_mean(values, 2).tolist() == pytest.approx([0.55, 0.5])


def test_frozen_reference_is_the_base_without_a_second_copy(world) -> None:
    from onereward.generate.flux_sampler import FluxFillSampler
    from onereward.models import flux_fill

    cfg, conds, refl, model, _ = _pieces(world)
    n_base = sum(1 for n, _ in model.transformer.named_parameters() if ".lora_" not in n)
    plain = flux_fill.load(world["zoo"] / "flux_fill")
    assert n_base == sum(1 for _ in plain.transformer.parameters()) and not model.copies
    with torch.no_grad():  # move the policy away from the base
        for n, p in model.transformer.named_parameters():
            if ".policy." in n and "lora_B" in n:
                p.add_(0.1)
    cond = conds.all_train()[0]
    ours = refl.rollouts.sample([cond], [7], "base", steps=3).images
    moved = refl.rollouts.sample([cond], [7], "policy", steps=3).images
    sampler = FluxFillSampler(plain, max_sequence_length=cfg.max_sequence_length)
    spec = refl.rollouts.specs([cond], [7], 3)
    with torch.no_grad():
        b = sampler.prepare({cond.item_id: cond.fitted}, spec)
        sampler.denoise(b)
        theirs, _ = refl.rollouts.paste(sampler.decode(b), [cond])
    assert torch.allclose(ours, theirs, atol=1e-5) and (moved - ours).abs().max() > 1e-3


def test_gradient_accumulation_and_checkpointing_keep_the_gradient(world) -> None:
    torch.set_num_threads(1)
    got = {}
    for name, settings in {
        "one pass": {"batch_size": 4, "micro_batch_size": 4},
        "accumulated": {"batch_size": 4, "micro_batch_size": 1},
        "checkpointed": {"batch_size": 4, "micro_batch_size": 2, "gradient_checkpointing": True},
    }.items():
        _, _, refl, model, _ = _pieces(world, **settings)
        refl.step(3)
        got[name] = _grads(model)
    for name in ("accumulated", "checkpointed"):
        assert got[name].keys() == got["one pass"].keys()
        for k, g in got["one pass"].items():  # equal up to float rounding of batched kernels
            assert (got[name][k] - g).norm() <= 2e-3 * g.norm() + 1e-9, (name, k)


def test_ema_moves_by_one_minus_tau_and_master_weights_stay_float32(world) -> None:
    from onereward.policy.model import PolicyModel

    _, _, _, model, _ = _pieces(world)
    policy = model.named_state("policy")
    ema_before = {k: v.clone() for k, v in model.named_state("ema").items()}
    with torch.no_grad():
        for v in policy.values():
            v.add_(0.5)
    model.ema_update("ema", 0.9)
    for k, v in model.named_state("ema").items():
        assert torch.allclose(v, 0.9 * ema_before[k] + 0.1 * policy[k], atol=1e-6)
    # a bf16 base: the adapters (trainable, EMA) stay float32, the base stays bf16
    from onereward.models import flux_fill

    pipe = flux_fill.load(world["zoo"] / "flux_fill", dtype="bfloat16")
    bf = PolicyModel(pipe.transformer, finetune="lora", lora_rank=2, lora_targets=["attn.to_q", "attn.to_v"])
    assert {p.dtype for p in bf.trainable_parameters()} == {torch.float32}
    assert all(p.dtype == torch.bfloat16 for n, p in pipe.transformer.named_parameters() if ".lora_" not in n)


def test_reference_cache_equals_fresh_rollouts(world, tmp_path) -> None:
    from onereward.policy.references import ReferenceCache, run_references
    from onereward.profile import load_profile

    run_references(str(world["pool"]), str(tmp_path / "refs"), zoo=str(world["zoo"]), **{
        k: FAST[k] for k in ("rollout_steps", "reference_seeds")
    })  # fmt: skip
    cfg, conds, refl, _, _ = _pieces(world)
    from onereward.generate.stage import generator_identity

    prof = load_profile("tiny")
    cache = ReferenceCache.open(
        str(tmp_path / "refs"), prof=prof, cfg=cfg, generator=generator_identity(prof, "generator", str(world["zoo"])),
        subset=conds.manifest,
    )  # fmt: skip
    cond = conds.all_train()[0]
    seeds = list(cond.reference_seeds)
    assert len(seeds) == 2 and cache.has(cond.item_id, cond.reference_seeds)
    fresh = refl.reference_images([cond] * 2, seeds)
    cached = torch.stack(
        [torch.from_numpy(cache.get(cond.item_id, s)).permute(2, 0, 1).float() / 255 for s in seeds]
    )
    assert (fresh - cached).abs().max().item() <= 2 / 255  # batched kernels may round one level apart
    other = cfg.to_dict() | {"rollout_steps": 4, "t2": 2}
    with pytest.raises(
        InputError, match=r"producer.parameters.min_steps' is 3, this run's reference rollouts need 4"
    ):
        ReferenceCache.open(
            str(tmp_path / "refs"), prof=prof, cfg=PolicyConfig(**other), generator="x", subset=conds.manifest
        )


# ---- NFT ----------------------------------------------------------------------------------------


def test_nft_optimality_and_low_std_group_filter() -> None:
    from onereward.policy.nft import keep_groups, optimality

    raw = torch.tensor([0.2, 0.4, 0.6, 0.96, 0.97, 0.98])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    r = optimality(raw, group, norm="global", global_std=0.2)
    assert torch.allclose(r[:3], torch.tensor([0.0, 0.5, 1.0]))  # (raw - 0.4) / 0.2 clipped, halved, + 1/2
    assert torch.allclose(r[3:], torch.tensor([0.475, 0.5, 0.525]))
    keep = keep_groups(raw, group, tau_mu=0.9, tau_sigma=0.05)
    assert keep.tolist() == [True, True, True, False, False, False]  # high mean and low std: noise
    assert keep_groups(raw, group, tau_mu=0.99, tau_sigma=0.05).all()


def test_nft_separate_dimension_norm() -> None:
    """Each dimension is centred in its group and divided by its own Z before the weighted mean, so
    a dimension whose reward varies little moves the optimality as much as one that varies a lot."""
    from onereward.policy.nft import optimality, separate_optimality

    # two dimensions: the first varies by 0.4 within the group, the second by 0.02, in opposite order
    raw = torch.tensor([[0.2, 0.52], [0.6, 0.50]])
    group = torch.tensor([0, 0])
    z = torch.tensor([0.2, 0.01])
    r = separate_optimality(raw, group, torch.tensor([1.0, 1.0]), norm="global", global_std=z)
    assert torch.allclose(r, torch.tensor([0.5, 0.5]))  # (-1 + 1) / 2 and (1 - 1) / 2: a tie
    pooled = optimality(raw.mean(1), group, norm="global", global_std=0.1)
    assert pooled[1] > 0.5 > pooled[0]  # the pooled mean follows the dimension that varies most
    r = separate_optimality(raw, group, torch.tensor([1.0, 3.0]), norm="global", global_std=z)
    assert torch.allclose(r, torch.tensor([0.75, 0.25]))  # 1/2 + 1/2 (-1 + 3) / 4
    r = separate_optimality(raw, group, torch.tensor([1.0, 0.0]), norm="group", global_std=z)
    # group std: centred / 0.2 = -+1 on dimension 1 only
    assert torch.allclose(r, torch.tensor([0.0, 1.0]), atol=1e-6)


def test_nft_step_normalises_each_dimension_separately_on_the_same_rollouts(world) -> None:
    """One real NFT step per setting from the same draws: the rollouts and their per-dimension
    rewards are the same, the optimality (and so the gradient) differs, and the per-cell rewards
    the step logs are each dimension's own P(Yes). (At the first step the policy is the old policy,
    so the loss value itself does not depend on the optimality; its gradient does.)"""
    torch.set_num_threads(1)
    steps, grads = {}, {}
    for norm in ("pooled", "separate"):
        cfg, conds, nft, model, _ = _pieces(
            world, algorithm="nft", batch_size=3, micro_batch_size=2, nft_dimension_norm=norm, nft_tau_mu=1.0
        )
        steps[norm] = nft.step(0)
        grads[norm] = _grads(model)
    pooled, separate = steps["pooled"], steps["separate"]
    assert pooled.cells.keys() == separate.cells.keys()
    for cell, values in pooled.cells.items():
        assert values == pytest.approx(separate.cells[cell], abs=1e-6), cell
    fill = {
        c: v for c, v in pooled.cells.items() if c.startswith("image_fill/") or c.startswith("image_extend/")
    }
    assert len({tuple(v) for v in fill.values()}) == len(fill) > 1  # each dimension its own reward
    assert separate.n_samples == pooled.n_samples > 0
    assert grads["pooled"].keys() == grads["separate"].keys() and grads["pooled"]
    assert any(not torch.allclose(g, grads["separate"][n], atol=1e-7) for n, g in grads["pooled"].items())


class _GaussianFlow:
    """x0 ~ N(m, s^2) per coordinate: the exact flow-matching velocity, so solvers can be checked."""

    def __init__(self, m: float, s: float) -> None:
        self.m, self.s = m, s

    def velocity(self, batch, x, i):
        t = batch.sigmas[:, i].view(-1, 1, 1).double()
        var = (1 - t) ** 2 * self.s**2 + t**2
        centred = x.double() - (1 - t) * self.m
        x0 = self.m + (1 - t) * self.s**2 / var * centred
        eps = t / var * centred
        return (eps - x0).float()


def test_multistep_solver_beats_euler_at_few_steps() -> None:
    from types import SimpleNamespace

    from onereward.policy.rollouts import multistep_2

    torch.manual_seed(0)
    z = torch.randn(1, 256, 4)
    exact = 0.3 + 0.5 * z  # the flow maps noise z to m + s z
    flow = _GaussianFlow(0.3, 0.5)
    sig = torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.0]])
    euler = z.clone()
    for i in range(4):
        h = (sig[:, i + 1] - sig[:, i]).view(-1, 1, 1)
        euler = euler + h * flow.velocity(SimpleNamespace(sigmas=sig), euler, i)
    fast = multistep_2(flow, SimpleNamespace(latents=z.clone(), sigmas=sig, n_steps=4))
    err_euler, err_fast = (euler - exact).abs().max().item(), (fast - exact).abs().max().item()
    assert err_fast < err_euler / 2, (err_fast, err_euler)


def test_logit_score_is_the_expected_digit(world) -> None:
    from onereward.policy.rewards import SCORE_TOKENS, LogitScore
    from onereward.reward.scoring import RewardScorer

    scorer = RewardScorer.load(world["rm"])
    score = LogitScore(scorer)
    assert len(set(score.digit_ids)) == len(SCORE_TOKENS)
    _, conds, _, _, _ = _pieces(world)
    cond = conds.all_train()[0]
    images = torch.rand(2, 3, *cond.size)
    values, comps = score.score(images, [cond, cond])
    assert values.shape == (2 * len(cond.dimensions),) and ((values >= 0) & (values <= 1)).all()


def test_oracle_reward_is_the_normalised_oracle_and_needs_targets(world) -> None:
    """nft_reward oracle: the target scores 1 on every dimension, the source left unchanged scores
    what the synthetic world's normalisation gives it, and a condition without a target is refused
    by name."""
    import dataclasses

    from onereward.errors import InputError
    from onereward.policy.rewards import OracleReward
    from onereward.synth.baselines import normalised_scores

    _, conds, _, _, _ = _pieces(world)
    cond = next(c for c in conds.all_train() if c.task == "image_fill")
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    reward = OracleReward()
    values, comps = reward.score(torch.cat([as_tensor(cond.target), as_tensor(cond.source)]), [cond, cond])
    d = len(cond.dimensions)
    assert comps.dimensions == list(cond.dimensions) * 2 and values.shape == (2 * d,)
    assert values[:d].tolist() == pytest.approx([1.0] * d, abs=1e-6)
    expected = normalised_scores(
        cond.task, cond.source, cond.mask, cond.prompt, cond.source, cond.target, item_id=cond.item_id
    )
    assert values[d:].tolist() == pytest.approx(
        [expected[k]["normalised"] for k in cond.dimensions], abs=1e-5
    )
    assert values[d + cond.dimensions.index("text_alignment")] < 0  # the object is missing
    bare = dataclasses.replace(cond, target=None)
    with pytest.raises(InputError, match=rf"nft_reward: 'oracle' needs .* \(first: '{cond.item_id}'\)") as e:
        OracleReward().score(as_tensor(cond.source), [bare])
    assert "\n" not in str(e.value)


def test_the_oracle_reward_is_refused_on_items_without_targets(world, tmp_path) -> None:
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from onereward.artifacts import content_hash

    # The synthetic pool as a user's own data would come: no targets (and a consistent manifest).
    pool = tmp_path / "pool"
    shutil.copytree(world["pool"], pool)
    shutil.rmtree(pool / "targets")
    table = pq.read_table(pool / "items.parquet")
    column = table.schema.get_field_index("target")
    table = table.set_column(column, "target", pa.nulls(len(table), pa.string()))
    pq.write_table(table, pool / "items.parquet")
    manifest = json.loads((pool / "manifest.json").read_text())
    manifest["content_hash"] = content_hash(pool)
    (pool / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"policy.nft_reward \(--nft-reward\): 'oracle' needs .* targe") as e:
        _run({**world, "pool": pool}, tmp_path / "p", algorithm="nft", nft_reward="oracle")
    assert "\n" not in str(e.value) and not (tmp_path / "p").exists()


def test_nft_with_the_oracle_reward_steps_on_oracle_values(world) -> None:
    """NFT with the oracle as the judge: the raw rewards of a group are its normalised oracle
    scores per dimension (the target's are 1), and a real step takes a gradient step."""
    torch.set_num_threads(1)
    cfg, conds, nft, model, _ = _pieces(
        world, algorithm="nft", batch_size=2, nft_reward="oracle", nft_tau_mu=1.0
    )
    cond = next(c for c in conds.all_train() if c.task == "image_fill")
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    images = torch.cat([as_tensor(cond.target), as_tensor(cond.source)])
    per_dim, pooled = nft.raw_rewards(cond, images, base_seed=0)
    assert per_dim.shape == (2, len(cond.dimensions))
    assert per_dim[0].tolist() == pytest.approx([1.0] * len(cond.dimensions), abs=1e-6)
    assert pooled.tolist() == pytest.approx(per_dim.mean(1).tolist(), abs=1e-6)
    assert pooled[1] < pooled[0]
    stats = nft.step(0)
    assert stats.n_samples > 0 and _grads(model)
    assert {c.split("/")[0] for c in stats.cells} <= set(conds.tasks) and stats.cells
    # The dual ascent's margin with the oracle: the group's mean score minus the base rollout's.
    nft.cfg = PolicyConfig.resolve(cfg, {"nft_constraint_rate": 1.0})
    base, _ = nft.score.score(nft.base_image(cond, 7), [cond])
    margin = nft.margins(cond, per_dim, base_seed=7)
    assert margin.tolist() == pytest.approx((per_dim.mean(0) - base).tolist(), abs=1e-6)


def test_nft_dual_ascent_raises_the_weight_of_a_dimension_that_loses_to_the_base(world) -> None:
    """nft_constraint_rate: after a real step, mu of each task x dimension is max(0, -eta (mean
    P(Yes) - 1/2)) over the step's rollouts (groups of equal size); the next step weighs each
    dimension w (1 + mu) in the mean; a later step that wins the dimension brings mu back to 0."""
    torch.set_num_threads(1)
    eta = 2.0
    cfg, conds, nft, model, _ = _pieces(
        world, algorithm="nft", batch_size=3, nft_constraint_rate=eta, nft_tau_mu=1.0
    )
    stats = nft.step(0)
    assert stats.cells
    for cell, values in stats.cells.items():
        expected = max(0.0, -eta * (float(np.mean(values)) - 0.5))
        assert nft.duals[cell] == pytest.approx(expected, abs=1e-5), cell
        assert stats.extra[f"dual/{cell}"] == nft.duals[cell]
    # The weights of the next step, and the pooled reward they give.
    nft.duals = {"image_fill/text_alignment": 3.0, "image_fill/consistency": 0.0}
    fill = next(c for c in conds.all_train() if c.task == "image_fill")
    weights = nft.weights_for("image_fill")
    assert weights["text_alignment"] == 4.0 and weights["consistency"] == 1.0
    assert nft.weights_for("image_extend")["text_alignment"] == 1.0
    values = torch.tensor([[0.9, 0.1, 0.5, 0.5]])  # one rollout, the fill dimensions in order
    w = torch.tensor([weights[d] for d in fill.dimensions])
    from onereward.policy.rewards import Comparisons

    pooled = Comparisons.of([fill]).per_condition_mean(values.flatten(), 1, weights)
    assert float(pooled) == pytest.approx(float((values[0] * w).sum() / w.sum()))
    # A step whose mean margin is +0.4 on a cell takes eta * 0.4 off its mu, down to 0.
    nft.update_duals([("image_fill/text_alignment", 0.4, 2), ("image_fill/consistency", -0.3, 1)])
    assert nft.duals["image_fill/text_alignment"] == pytest.approx(3.0 - eta * 0.2)
    assert nft.duals["image_fill/consistency"] == pytest.approx(eta * 0.3)
    nft.update_duals([("image_fill/consistency", 1.0, 1)])
    assert nft.duals["image_fill/consistency"] == 0.0
    # The state a checkpoint keeps.
    state = nft.state_dict()
    nft.load_state_dict({})
    assert nft.duals == {}
    nft.load_state_dict(state)
    assert nft.duals["image_fill/text_alignment"] == pytest.approx(2.6)


def test_nft_dual_variables_are_kept_in_each_checkpoint(world, tmp_path) -> None:
    import json

    ckpt = tmp_path / "ckpt"
    _run(
        world, tmp_path / "p", algorithm="nft", nft_constraint_rate=5.0, nft_tau_mu=1.0,
        checkpoint_every=1, keep_checkpoints=3, checkpoint_dir=str(ckpt), keep_checkpoint_dir=True,
        log_every=1,
    )  # fmt: skip
    states = sorted(ckpt.glob("step-*/state.json"))
    assert states
    state = json.loads(states[0].read_text())
    duals = state["algorithm"]["duals"]
    assert duals and all(v >= 0 for v in duals.values())
    logged = {k[len("dual/") :]: v for k, v in state["history"][0].items() if k.startswith("dual/")}
    assert logged == pytest.approx(duals)
    # metrics.json: the duals of the last logged step (curves.json's last entry)
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    tail = json.loads((tmp_path / "p" / "curves.json").read_text())["history"][-1]
    assert tail["step"] == 2
    assert metrics["duals_last"] == {k[len("dual/") :]: v for k, v in tail.items() if k.startswith("dual/")}
    assert metrics["duals_last"]


# ---- whole runs -----------------------------------------------------------------------------------


def _through_components(world, tmp_path: Path, **settings) -> tuple[Path, Path]:
    """policy_references then train_policy through their KFP components (python_func): the -1 / ""
    sentinels take the profile's values, the optional references input is an Artifact."""
    from kfp.dsl import HTML, Artifact, Metrics

    from onereward_kfp.components.policy_references import policy_references
    from onereward_kfp.components.train_policy import train_policy

    def art(name, cls=Artifact, uri=None):
        return cls(name=name, uri=str(uri or tmp_path / name))

    zoo, subset = art("zoo", uri=world["zoo"]), art("subset", uri=world["pool"])
    refs = art("references")
    policy_references.python_func(
        subset=subset, zoo=zoo, references=refs, report=art("r1", HTML), metrics=art("m1", Metrics),
        rollout_steps=FAST["rollout_steps"], reference_seeds=FAST["reference_seeds"], cfg_scale=-1.0, guidance=-1.0,
    )  # fmt: skip
    keys = set(train_policy.component_spec.inputs)
    train_policy.python_func(
        subset=subset, reward_model=art("rm", uri=world["rm"]), zoo=zoo, policy=art("policy"),
        report=art("r2", HTML), metrics=art("m2", Metrics), references=refs,
        **{k: v for k, v in {**FAST, **settings}.items() if k in keys}, finetune="", learning_rate=-1.0,
    )  # fmt: skip
    return tmp_path / "policy", tmp_path / "references"


@pytest.mark.parametrize("algorithm", ["refl", "refl_dynamic", "nft"])
def test_each_algorithm_writes_a_policy_that_loads(world, tmp_path, algorithm) -> None:
    from onereward.artifacts import read_artifact
    from onereward.policy.artifact import load_policy_pipeline, read_policy
    from onereward.profile import load_profile

    if algorithm == "refl":  # the pipeline's route: both components, the cache used
        out, refs = _through_components(world, tmp_path, algorithm=algorithm)
        assert (
            read_artifact(out).parameters["settings"]["learning_rate"]
            == load_profile("tiny").policy.learning_rate
        )
    else:  # refl_dynamic compares against the EMA policy: nothing to cache
        out, refs = tmp_path / "policy", None
        _run(world, out, algorithm=algorithm)
    metrics = read_artifact(out).metrics()
    manifest, info = read_policy(out)
    assert info.algorithm == algorithm and info.finetune == "lora"
    assert metrics["reference_cache"] == ("used" if refs else "none")
    for key in ("reward_first", "reward_last", "oracle_first", "oracle_last", "seconds_per_iteration",
                "samples_per_second", "oracle_win_rate", "outside_mask_change_last"):  # fmt: skip
        assert key in metrics, key
    assert 0.0 <= metrics["reward_first"] <= 1.0 and metrics["seconds_per_iteration"] > 0
    assert (
        metrics["oracle_win_rate"]["pooled"]["all"]["low"]
        <= metrics["oracle_win_rate"]["pooled"]["all"]["high"]
    )
    for name in ("report.html", "curves.json", "tensorboard", "probe"):
        assert (out / name).exists(), name
    assert {i["kind"] for i in manifest.inputs} >= {"pool", "reward_model", "zoo"}
    if refs:
        assert read_artifact(refs).content_hash in {i["content_hash"] for i in manifest.inputs}
    pipe = load_policy_pipeline(out, zoo=world["zoo"], weights="ema")
    assert pipe.transformer is not None
    assert not Path(str(out.parent / f".{out.name}.checkpoints")).exists()  # removed after success


@pytest.mark.parametrize("cached", [False, True])
def test_full_fine_tuning_writes_transformers(world, tmp_path, cached) -> None:
    """Full fine-tuning keeps a frozen base copy only when it must roll the base out (no cache)."""
    from onereward.policy.artifact import read_policy
    from onereward.policy.references import run_references

    refs = None
    if cached:
        refs = str(tmp_path / "refs")
        run_references(str(world["pool"]), refs, zoo=str(world["zoo"]), rollout_steps=3, reference_seeds=2)
    metrics = _run(world, tmp_path / "full", finetune="full", max_steps=1, eval_every=1, references=refs)
    _, info = read_policy(tmp_path / "full")
    assert info.finetune == "full" and (tmp_path / "full" / "ema_transformer" / "config.json").is_file()
    assert metrics["reference_cache"] == ("used" if cached else "none")
    # the probe's base was rolled out (by the untrained policy when no frozen copy was kept)
    assert metrics["oracle_first"] == pytest.approx(metrics["oracle_base"])


def _lora(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "lora" / "pytorch_lora_weights.safetensors"))


# Four steps of two samples, a checkpoint after step 2: the runs below are compared with this one.
LONGER = {**FAST, "max_steps": 4, "checkpoint_every": 2, "eval_every": 4}


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted single-process run of LONGER."""
    from onereward.policy.stage import run

    out = tmp_path_factory.mktemp("straight") / "policy"
    run(str(world["pool"]), str(world["rm"]), str(out), zoo=str(world["zoo"]), **LONGER)
    return out


def _cli(world, out: Path, launcher: list[str]) -> list[str]:
    argv = [*launcher, "train-policy", "--subset", str(world["pool"]), "--reward-model", str(world["rm"]),
            "--zoo", str(world["zoo"]), "--out", str(out)]  # fmt: skip
    for k, v in LONGER.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(world, straight, tmp_path) -> None:
    argv = _cli(world, tmp_path / "killed", [sys.executable, "-m", "onereward.cli"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ckpt = tmp_path / ".killed.checkpoints"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (ckpt / "step-00000002" / "state.json").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint at step 2"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "killed").exists()  # killed before writing its artifact
    from onereward.policy.stage import run

    # the same command again (here in-process: the resume is the stage's, not the process's)
    metrics = run(
        str(world["pool"]), str(world["rm"]), str(tmp_path / "killed"), zoo=str(world["zoo"]), **LONGER
    )
    assert metrics["resumed_from_step"] == 2 and metrics["iterations_run"] == 2
    a, b = _lora(tmp_path / "killed"), _lora(straight)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)  # it did learn something


def test_two_processes_match_one_and_only_rank_zero_writes(world, straight, tmp_path) -> None:
    """torchrun with two CPU processes (gloo): each takes one sample of the global batch of two, DDP
    averages the gradients; the weights equal the single process's up to float reduction order."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                "-m", "onereward.cli"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        _cli(world, tmp_path / "ddp", launcher), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _lora(tmp_path / "ddp"), _lora(straight)
    update = sum(float((b[k] ** 2).sum()) for k in b if "lora_B" in k) ** 0.5  # B starts at zero
    apart = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5
    assert update > 0 and apart / update < 0.02, (apart, update)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # one writer, nothing left
    import json

    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["n_processes"] == 2


def test_oracle_win_rates_count_differences_beyond_the_margin_as_verdicts() -> None:
    from onereward.policy.conditions import Condition
    from onereward.policy.monitors import Monitor, ProbeOutputs

    mask = np.zeros((8, 8), dtype=bool)
    cond = Condition("a", "object_removal", None, np.zeros((8, 8, 3), np.uint8), mask, fitted=None)
    monitor = Monitor.__new__(Monitor)
    monitor.samples, monitor.margin = [cond] * 5, 0.02
    base = [0.50, 0.50, 0.50, 0.50, 0.50]
    policy = [0.60, 0.515, 0.4999, 0.45, 0.30]  # win, tie, tie (a stray pixel), loss, loss
    dim = "removal_quality"

    def outputs(values):
        return ProbeOutputs(
            images=[], outside_change=np.zeros(5), oracle_raw={(k, dim): v for k, v in enumerate(values)}
        )

    monitor.base = outputs(base)
    cell = monitor.win_rates(outputs(policy))["cells"]["object_removal"][dim]
    assert (cell["wins"], cell["losses"], cell["ties"]) == (1, 2, 2) and cell["rate"] == pytest.approx(1 / 3)
    exact = monitor.win_rates(outputs(policy), margin=0.0)["cells"]["object_removal"][dim]
    assert (exact["wins"], exact["losses"], exact["ties"]) == (2, 3, 0)
    pooled = monitor.win_rates(outputs(policy))["pooled"]["all"]
    assert pooled["low"] < pooled["rate"] < pooled["high"]


def test_hacking_watch_flags_reward_up_with_the_oracle_falling_or_lost_beyond_chance() -> None:
    from onereward.policy.monitors import hacking_flags, losses

    def summary(step, p, delta, verdict):
        return {
            "step": step,
            "p_yes": {"image_fill": {"text_alignment": p}},
            "oracle_delta": {"image_fill": {"text_alignment": delta}},
            "oracle_verdicts": {"image_fill": {"text_alignment": verdict}},
        }

    steady = {"mean": -0.09, "half_width": 0.093, "noise": 0.21, "n": 32}  # not beyond noise
    lost = {"wins": 1, "losses": 10, "ties": 21, "rate": 1 / 11, "low": 0.016, "high": 0.377}
    even = {"wins": 6, "losses": 8, "ties": 18, "rate": 6 / 14, "low": 0.21, "high": 0.67}
    first = summary(0, 0.45, {"mean": 0.0, "half_width": 0.0, "noise": 0.2, "n": 32}, None)
    [flag] = hacking_flags(first, summary(60, 0.55, steady, lost))
    assert flag["reasons"] == ["oracle_losing"] and (flag["wins"], flag["losses"]) == (1, 10)
    assert hacking_flags(first, summary(60, 0.55, steady, even)) == []
    assert hacking_flags(first, summary(60, 0.46, steady, lost)) == []  # the reward did not rise
    fallen = {"mean": -0.3, "half_width": 0.1, "noise": 0.2, "n": 32}
    assert hacking_flags(first, summary(60, 0.55, fallen, even))[0]["reasons"] == ["oracle_fell"]
    assert [c["dimension"] for c in losses(summary(60, 0.55, steady, lost))] == ["text_alignment"]
    assert losses(summary(60, 0.55, steady, even)) == []

    # The task's reward rose through the other dimensions while text alignment's own P(Yes) fell
    # with its oracle (measured: a policy that stopped drawing the object, P(Yes) 0.485 -> 0.637).
    def task(step, ta, aes, delta, verdict):
        out = summary(step, ta, delta, verdict)
        out["p_yes"]["image_fill"]["aesthetics"] = aes
        return out

    start = task(0, 0.52, 0.49, {"mean": 0.0, "half_width": 0.0, "noise": 0.2, "n": 32}, None)
    [flag] = hacking_flags(start, task(60, 0.37, 0.81, fallen, lost))
    assert flag["dimension"] == "text_alignment"
    assert flag["reasons"] == ["oracle_fell", "oracle_losing", "task_reward_rose"]
    assert flag["task_p_yes_rise"] == pytest.approx(((0.37 + 0.81) - (0.52 + 0.49)) / 2)
    assert hacking_flags(start, task(60, 0.37, 0.50, fallen, lost)) == []  # the task's reward fell
