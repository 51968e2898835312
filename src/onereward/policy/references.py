"""Reference rollouts: Algorithm 1's reference never changes, so its images can be made once.

The frozen reference is the base generator; its rollout for a condition and a noise seed is the
same at every iteration. :func:`run_references` makes them ahead of training as a *mode of
generate_candidates*: a candidates artifact whose sampling ranges are pinned to the policy's
rollout settings (``min_steps = max_steps = rollout_steps``, ``cfg_min = cfg_max = cfg_scale``,
strength 1, no negative prompt, the rollout's distilled guidance and prompt length) with
``num_candidates = reference_seeds``. generate_candidates draws each candidate's seed from
``(seed, item_id)`` only, so the seeds of the cache are known without reading it
(:func:`reference_seeds`), and train_policy without a cache rolls the very same noises out itself:
with and without the cache the reference images agree (up to float rounding of batched kernels).

:class:`ReferenceCache` opens such an artifact and refuses one made for other settings, another
base generator or another subset (one line naming the field).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from onereward.artifacts import Manifest, read_artifact
from onereward.errors import InputError
from onereward.imageio import load_rgb
from onereward.policy.config import PolicyConfig
from onereward.tables import read_table


def generate_overrides(cfg: PolicyConfig) -> dict[str, Any]:
    """The generate_candidates settings whose candidates are the policy's reference rollouts."""
    return {
        "family": "flux_fill",
        "num_candidates": max(1, cfg.reference_seeds),
        "min_steps": cfg.rollout_steps,
        "max_steps": cfg.rollout_steps,
        "cfg_min": cfg.cfg_scale,
        "cfg_max": cfg.cfg_scale,
        "strength_min": 1.0,
        "strength_max": 1.0,
        "negative_prompts": "none",
        "guidance": cfg.guidance,
        "max_sequence_length": cfg.max_sequence_length,
        "dtype": cfg.dtype,
        "seed": cfg.seed,
    }


def reference_generate_config(prof: Any, cfg: PolicyConfig) -> Any:
    from onereward.generate.config import GenerateConfig

    return GenerateConfig.resolve(prof.generate, generate_overrides(cfg))


def reference_seeds(prof: Any, cfg: PolicyConfig, item_id: str, prompt: str) -> tuple[int, ...]:
    """The noise seeds of an item's reference rollouts (generate_candidates' seeds for it)."""
    if cfg.reference_seeds == 0:
        return ()
    from onereward.generate.stage import sample_specs

    specs = sample_specs(item_id, prompt, reference_generate_config(prof, cfg))
    return tuple(s.seed for s in specs[: cfg.reference_seeds])


def run_references(
    subset: str, out: str, *, profile: str = "tiny", zoo: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Generate the reference rollouts of every item of ``subset`` into a candidates artifact.

    ``settings``: fields of :class:`PolicyConfig` (None = the profile's value); those that shape a
    rollout (rollout_steps, cfg_scale, guidance, max_sequence_length, dtype, seed,
    reference_seeds) decide the candidates.
    """
    from onereward.generate.stage import run as generate
    from onereward.profile import load_profile

    prof = load_profile(profile)
    # t1 / t2 (the policy's grad step) do not shape a reference rollout: pinned so that any
    # rollout_steps is valid here.
    cfg = PolicyConfig.resolve(prof.policy, {**settings, "t1": 0, "t2": 0})
    if cfg.reference_seeds < 1:
        raise InputError(
            "policy.reference_seeds (--reference-seeds): expected an integer >= 1 for cached reference "
            "rollouts (0 = fresh noise at every step cannot be cached), got 0"
        )
    return generate(subset, out, profile=profile, zoo=zoo, **generate_overrides(cfg))


class ReferenceCache:
    """Pasted-back reference images by (item_id, seed), read from a reference candidates artifact."""

    def __init__(
        self, root: Path, manifest: Manifest, paths: dict[tuple[str, int], str], max_images: int = 4096
    ):
        self.root = root
        self.manifest = manifest
        self.paths = paths
        self._images: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.max_images = max_images
        self.hits = 0

    @classmethod
    def open(
        cls, path: str, *, prof: Any, cfg: PolicyConfig, generator: str, subset: Manifest
    ) -> ReferenceCache:
        """Read and check the artifact against this run (settings, base generator, subset)."""
        what = "--references"
        manifest = read_artifact(path, kind="candidates", what=what)
        params = manifest.parameters
        gen = reference_generate_config(prof, cfg)
        want: dict[str, Any] = {
            "family": "flux_fill",
            "min_steps": cfg.rollout_steps,
            "max_steps": cfg.rollout_steps,
            "cfg_min": cfg.cfg_scale,
            "cfg_max": cfg.cfg_scale,
            "strength_min": 1.0,
            "strength_max": 1.0,
            "negative_prompts": [""],
            "guidance": cfg.guidance,
            "max_sequence_length": cfg.max_sequence_length,
            "dtype": cfg.dtype,
            "seed": cfg.seed,
            "feather": gen.feather,
            "generator": generator,
        }
        for key, value in want.items():
            if params.get(key) != value:
                raise InputError(
                    f"{what}: {path} manifest.json field 'producer.parameters.{key}' is {params.get(key)!r}, "
                    f"this run's reference rollouts need {value!r} (make them with `onereward policy-references` "
                    "and the same settings)"
                )
        if params.get("policy"):
            raise InputError(
                f"{what}: {path} manifest.json field 'producer.parameters.policy' is set: these are a trained "
                "policy's rollouts, not the frozen base's"
            )
        if int(params.get("num_candidates", 0)) < cfg.reference_seeds:
            raise InputError(
                f"{what}: {path} has {params.get('num_candidates')} rollouts per item; reference_seeds is "
                f"{cfg.reference_seeds}"
            )
        if subset.content_hash not in {i.get("content_hash") for i in manifest.inputs}:
            raise InputError(
                f"{what}: {path} was made from another subset (its inputs do not include {subset.content_hash})"
            )
        rows = read_table(Path(path) / "candidates.parquet", required=("item_id", "seed", "image"), what=what)
        paths = {(r["item_id"], int(r["seed"])): r["image"] for r in rows}
        return cls(Path(path), manifest, paths)

    def has(self, item_id: str, seeds: tuple[int, ...]) -> bool:
        return all((item_id, s) in self.paths for s in seeds)

    def get(self, item_id: str, seed: int) -> np.ndarray:
        """The pasted-back reference image (HxWx3 uint8) of ``item_id`` and noise ``seed``."""
        key = (item_id, int(seed))
        image = self._images.get(key)
        if image is None:
            if key not in self.paths:
                raise InputError(
                    f"--references: {self.root} has no rollout of item {item_id!r} with seed {seed}"
                )
            image = load_rgb(self.root / self.paths[key])
            self._images[key] = image
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(key)
        self.hits += 1
        return image
