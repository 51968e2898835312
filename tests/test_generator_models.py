"""Generator model families: offline tokenizers, tiny FLUX-Fill / SD-inpainting builds, our samplers
against the diffusers pipelines, and the FLUX.1-Fill-dev real-shape check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onereward.errors import InputError
from onereward.generate.flux_sampler import FluxFillSampler, predict_x0
from onereward.generate.sampler import CandidateSpec, ItemCondition
from onereward.generate.sd_sampler import SDInpaintSampler
from onereward.models import flux_fill, sd_inpaint, text_tokenizers


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flux") / "flux_fill"
    flux_fill.build_tiny(out, seed=0)
    return out


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sd") / "sd_inpaint"
    sd_inpaint.build_tiny(out, seed=0)
    return out


def _item(size: int = 64, seed: int = 0) -> ItemCondition:
    rng = np.random.default_rng(seed)
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 8 : size // 2] = True
    return ItemCondition("it", image, mask)


def test_clip_tokenizer_known_words_are_single_tokens_and_unknown_text_still_tokenizes(
    tmp_path: Path,
) -> None:
    tok = text_tokenizers.build_clip_tokenizer()
    assert tok.tokenize("remove the specified object") == [
        "remove</w>",
        "the</w>",
        "specified</w>",
        "object</w>",
    ]
    ids = tok("Zqx!").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) > 3
    assert tok.unk_token_id not in ids[1:-1]
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("a blurry red circle").input_ids == tok("a blurry red circle").input_ids
    assert text_tokenizers.build_clip_tokenizer().get_vocab() == tok.get_vocab()  # deterministic


def test_t5_tokenizer_has_no_unknowns_for_ascii_and_prefers_whole_words() -> None:
    tok = text_tokenizers.build_t5_tokenizer()
    assert tok.tokenize("low quality") == ["\u2581low", "\u2581quality"]
    ids = tok('the word "EXIT" in red letters, 42%').input_ids
    assert tok.unk_token_id not in ids and ids[-1] == tok.eos_token_id


def test_tiny_flux_build_is_seeded_and_has_fill_channel_arithmetic(flux_dir: Path) -> None:
    pipe = flux_fill.load(flux_dir)
    cfg = pipe.transformer.config
    c, f = pipe.vae.config.latent_channels, pipe.vae_scale_factor
    assert cfg.in_channels == flux_fill.fill_in_channels(c, f) == 8 * c + 4 * f * f == 288
    assert cfg.out_channels == 4 * c
    assert cfg.joint_attention_dim == pipe.text_encoder_2.config.d_model
    assert cfg.pooled_projection_dim == pipe.text_encoder.config.hidden_size
    assert sum(cfg.axes_dims_rope) == cfg.attention_head_dim
    assert list((flux_dir / "transformer").glob("*.safetensors"))
    same = flux_fill.tiny_components(seed=0)["transformer"].state_dict()
    other = flux_fill.tiny_components(seed=1)["transformer"].state_dict()
    loaded = pipe.transformer.state_dict()
    assert all(torch.equal(loaded[k], same[k]) for k in loaded)
    assert not all(torch.equal(loaded[k], other[k]) for k in loaded)


def test_flux_sampler_matches_diffusers_pipeline_without_cfg(flux_dir: Path) -> None:
    """With cfg 1 (no negative pass) our batched loop reproduces FluxFillPipeline per candidate."""
    pipe = flux_fill.load(flux_dir)
    item = _item()
    specs = [
        CandidateSpec("it", 0, "a red circle", "", 4, 1.0, 1.0, 11, 1.0),
        CandidateSpec("it", 1, "a red circle", "", 6, 1.0, 0.6, 12, 3.5),
        CandidateSpec("it", 2, "a blue square", "", 4, 1.0, 1.0, 13, 1.0),
    ]
    sampler = FluxFillSampler(pipe, max_sequence_length=32, batch_size=8)
    ours = sampler.sample({"it": item}, specs)
    assert sampler.text.n_encoded == 2  # two distinct prompts, each encoded once
    for spec, image in zip(specs, ours, strict=True):
        ref = pipe(
            prompt=spec.prompt,
            image=Image.fromarray(item.image),
            mask_image=Image.fromarray(item.mask.astype(np.uint8) * 255),
            height=64,
            width=64,
            num_inference_steps=spec.steps,
            strength=spec.strength,
            guidance_scale=spec.guidance,
            max_sequence_length=32,
            generator=torch.Generator().manual_seed(spec.seed),
        ).images[0]
        assert np.abs(np.asarray(ref).astype(int) - image.astype(int)).max() <= 2


def test_sd_sampler_matches_diffusers_pipeline_with_cfg_and_negatives(sd_dir: Path) -> None:
    pipe = sd_inpaint.load(sd_dir)
    item = _item(seed=1)
    specs = [
        CandidateSpec("it", 0, "a red circle", "blurry", 4, 3.0, 1.0, 5),
        CandidateSpec("it", 1, "a red circle", "", 8, 5.0, 0.5, 6),
        CandidateSpec("it", 2, "a red circle", "nsfw", 4, 1.0, 1.0, 7),
    ]
    ours = SDInpaintSampler(pipe, batch_size=8).sample({"it": item}, specs)
    for spec, image in zip(specs, ours, strict=True):
        ref = pipe(
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt or None,
            image=Image.fromarray(item.image),
            mask_image=Image.fromarray(item.mask.astype(np.uint8) * 255),
            height=64,
            width=64,
            num_inference_steps=spec.steps,
            strength=spec.strength,
            guidance_scale=spec.cfg_scale,
            generator=torch.Generator().manual_seed(spec.seed),
        ).images[0]
        assert np.abs(np.asarray(ref).astype(int) - image.astype(int)).max() <= 2


def test_flux_published_configs_have_real_channel_counts() -> None:
    t = flux_fill.published_config("transformer")
    vae = flux_fill.published_config("vae")
    assert vae["latent_channels"] == 16 and len(vae["block_out_channels"]) == 4
    assert t["in_channels"] == flux_fill.fill_in_channels(16, 8) == 384 and t["out_channels"] == 64
    assert t["joint_attention_dim"] == flux_fill.published_config("text_encoder_2")["d_model"] == 4096
    assert t["pooled_projection_dim"] == flux_fill.published_config("text_encoder")["hidden_size"] == 768
    assert sum(t["axes_dims_rope"]) == t["attention_head_dim"] == 128


def _reset_peak_rss() -> None:
    """Reset this process's peak-RSS mark (Linux clear_refs 5), so that the check below measures
    this test alone, whatever ran before it in the session."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise AssertionError("VmHWM missing from /proc/self/status")


def test_real_shape_flux_fill_runs_through_our_sampler() -> None:
    """FLUX.1-Fill-dev's published widths and channels (16 latent channels, 384 fill inputs, T5-XXL
    width 4096, CLIP-L width 768, the real VAE), depth cut to one double + one single block, one
    CLIP and one T5 layer; random bf16 weights. Only the T5 vocabulary is shrunk (32128 -> 1024
    rows, a plain embedding table of 0.13B parameters) to keep the build fast; every width is
    real. Runs prepare -> velocity (true CFG with a negative) -> Euler step -> x0 -> VAE decode.
    """
    _reset_peak_rss()
    comps = flux_fill.real_shape_components(dtype=torch.bfloat16, t5_vocab_size=1024)
    pipe = flux_fill.pipeline_from_components(comps)
    assert pipe.transformer.config.in_channels == 384 and pipe.vae.config.latent_channels == 16
    sampler = FluxFillSampler(pipe, max_sequence_length=16, batch_size=2)
    item = _item(size=32)
    specs = [
        CandidateSpec("it", 0, "a red circle", "blurry", 2, 4.0, 1.0, 1, 1.0),
        CandidateSpec("it", 1, "a red circle", "", 2, 1.0, 1.0, 2, 1.0),
    ]
    with torch.no_grad():
        batch = sampler.prepare({"it": item}, specs)
        assert batch.latents.shape == (2, 4, 64)  # 32 px -> 4x4 latents -> 2x2 packed tokens of 4*16
        assert batch.condition.shape == (2, 4, 384 - 64)
        v = sampler.velocity(batch, batch.latents, 0)
        assert v.shape == batch.latents.shape
        latents = sampler.euler_step(batch, batch.latents, v, 0)
        x0 = predict_x0(latents, sampler.velocity(batch, latents, 1), batch.sigmas[:, 1])
        image = sampler.decode(batch, x0)
    assert image.shape == (2, 3, 32, 32) and torch.isfinite(image.float()).all()
    assert _peak_rss_gib() < 8  # peak RSS of this test, in GiB


def test_candidates_sharing_size_and_step_count_run_as_one_batch_across_items(flux_dir: Path) -> None:
    sampler = FluxFillSampler(flux_fill.load(flux_dir), max_sequence_length=32, batch_size=8)
    items = {"a": _item(seed=1), "b": _item(seed=2)}
    items["b"].item_id = "b"
    specs = [
        CandidateSpec("a", 0, "a red circle", "blurry", 4, 3.0, 1.0, 1, 1.0),
        CandidateSpec("a", 1, "a red circle", "", 4, 1.0, 1.0, 2, 1.0),
        CandidateSpec("b", 0, "a blue square", "blurry", 4, 2.0, 1.0, 3, 1.0),
        CandidateSpec("b", 1, "a blue square", "", 8, 1.0, 0.5, 4, 1.0),  # 8 steps at 0.5 also runs 4
        CandidateSpec("b", 2, "a blue square", "", 3, 1.0, 1.0, 5, 1.0),  # 3 steps: its own batch
    ]
    sizes: list[int] = []
    pre = sampler.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: sizes.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        sampler.sample(items, specs)
    finally:
        pre.remove()
    # 4 steps x one call of 4 candidates + 2 negative rows (cfg > 1), then 3 steps x one call of 1
    assert sizes == [6] * 4 + [1] * 3
    assert sampler.text.n_encoded == 3  # two prompts + one negative prompt ("" is never needed here)
    assert sampler.n_vae_encodes == 2  # once per item, though item b spans both batches
    sampler.sample(items, specs[3:])
    assert sampler.n_vae_encodes == 2  # still cached for the same conditions ...
    sampler.release("b")
    sampler.sample(items, specs[3:])
    assert sampler.n_vae_encodes == 3  # ... until the item is released


def test_true_cfg_combines_separate_positive_and_negative_calls_per_row(flux_dir: Path) -> None:
    """v(cfg s) = v_neg + s (v_pos - v_neg), each from its own transformer call; cfg-1 rows stay v_pos."""
    sampler = FluxFillSampler(flux_fill.load(flux_dir), max_sequence_length=32, batch_size=8)
    specs = [
        CandidateSpec("it", 0, "a red circle", "blurry", 4, 3.0, 1.0, 1, 1.0),
        CandidateSpec("it", 1, "a red circle", "nsfw", 4, 1.0, 1.0, 2, 1.0),
        CandidateSpec("it", 2, "a blue square", "low quality", 4, 5.5, 1.0, 3, 1.0),
    ]
    with torch.no_grad():
        batch = sampler.prepare({"it": _item()}, specs)
        v = sampler.velocity(batch, batch.latents, 1)
        texts = sampler.text.get([s.prompt for s in specs] + [s.negative_prompt for s in specs])

        def single(row: int, text: str) -> torch.Tensor:
            embeds, pooled = texts[text]
            return sampler.transformer(
                hidden_states=torch.cat(
                    (batch.latents[row : row + 1], batch.condition[row : row + 1]), dim=2
                ),
                timestep=batch.timesteps[row : row + 1, 1] / 1000,
                guidance=batch.guidance[row : row + 1],
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=batch.txt_ids,
                img_ids=batch.img_ids,
                return_dict=False,
            )[0][0]

        for row, spec in enumerate(specs):
            v_pos = single(row, spec.prompt)
            expected = v_pos
            if spec.cfg_scale > 1:
                v_neg = single(row, spec.negative_prompt)
                expected = v_neg + spec.cfg_scale * (v_pos - v_neg)
                assert (v_pos - v_neg).abs().max() > 1e-3  # the negative pass really differs
            torch.testing.assert_close(v[row], expected, atol=1e-4, rtol=1e-4)


def test_distilled_guidance_reaches_the_transformer_per_row(flux_dir: Path) -> None:
    sampler = FluxFillSampler(flux_fill.load(flux_dir), max_sequence_length=32, batch_size=8)
    assert sampler.transformer.config.guidance_embeds
    specs = [
        CandidateSpec("it", 0, "a red circle", "blurry", 2, 3.0, 1.0, 1, 1.0),
        CandidateSpec("it", 1, "a red circle", "", 2, 1.0, 1.0, 1, 3.5),
    ]
    seen: list[torch.Tensor] = []
    hook = sampler.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["guidance"].clone()), with_kwargs=True
    )
    try:
        a, b = sampler.sample({"it": _item()}, specs)
    finally:
        hook.remove()
    # two positive rows, then the negative row of the cfg-3 candidate with its own guidance
    assert len(seen) == 2 and all(g.tolist() == [1.0, 3.5, 1.0] for g in seen)
    same_but_guidance = sampler.sample(
        {"it": _item()}, [CandidateSpec("it", 1, "a red circle", "", 2, 1.0, 1.0, 1, 1.0)]
    )[0]
    assert np.abs(same_but_guidance.astype(int) - b.astype(int)).max() > 0  # the input acts


def test_sd_sampler_rejects_scheduler_settings_it_does_not_implement(sd_dir: Path) -> None:
    from diffusers import DDIMScheduler

    pipe = sd_inpaint.load(sd_dir)
    for change, name in (
        ({"prediction_type": "v_prediction"}, "prediction_type"),
        ({"clip_sample": True}, "clip_sample"),
        ({"thresholding": True}, "thresholding"),
    ):
        pipe.scheduler = DDIMScheduler.from_config(dict(sd_inpaint.SD_SCHEDULER_CONFIG, **change))
        with pytest.raises(InputError, match=f"scheduler config {name}="):
            SDInpaintSampler(pipe)
    pipe.scheduler = DDIMScheduler.from_config(sd_inpaint.SD_SCHEDULER_CONFIG)
    SDInpaintSampler(pipe)  # the supported configuration loads


def test_refl_style_one_grad_step_reaches_the_transformer(flux_dir: Path) -> None:
    """The split loop supports: k steps without grad, one step with grad, x0 = x_t - sigma v, decode."""
    sampler = FluxFillSampler(flux_fill.load(flux_dir), max_sequence_length=32, batch_size=2)
    spec = CandidateSpec("it", 0, "a red circle", "blurry", 4, 3.0, 1.0, 1, 1.0)
    with torch.no_grad():
        batch = sampler.prepare({"it": _item()}, [spec])
        latents = sampler.denoise(batch, 0, 2)
    v = sampler.velocity(batch, latents, 2)
    image = sampler.decode(batch, predict_x0(latents, v, batch.sigmas[:, 2]))
    image.mean().backward()
    grads = [p.grad for p in sampler.transformer.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
