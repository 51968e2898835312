"""The tiny model zoo: every model of the tiny profile built from configs.

``build_zoo(profile, out)`` calls each model's builder (``onereward.models.*``) into
``out/<name>`` and writes a ``zoo`` artifact; every model is then loaded back through the same
``from_pretrained(local_dir)`` code the full profile uses. CLIP gets seeded random weights
(``build_tiny``); the two generators get the weights trained on the synthetic world and the reward
VLM the weights pretrained on its degraded pairs, which ship with the package (``build_trained``,
:mod:`onereward.models.trained`) and which ``onereward zoo train`` reproduces
(:mod:`onereward.zoo.train`). For a profile whose models are
not ``zoo:`` references (``full``) the zoo artifact only records the resolved references.

``ensure_zoo(profile)`` builds the zoo once into a cache directory keyed by the profile's models
and the builder (:func:`code_sha`: the builders' code, packaged configs and shipped weights) and
reuses it afterwards. A zoo built by another builder is never reused: the cache rebuilds it, and
an explicit ``--zoo`` of another builder is refused (:func:`verify_zoo`).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import time
from pathlib import Path
from typing import Any

from onereward.artifacts import ArtifactError, ArtifactWriter, Manifest, read_artifact, write_json_atomic
from onereward.log import get_logger
from onereward.profile import Profile, load_profile

log = get_logger("zoo")

# zoo folder name -> (profile model key, module with the builder and load)
ZOO_MODELS: dict[str, tuple[str, str]] = {
    "clip": ("clip", "onereward.models.clip"),
    "flux_fill": ("generator", "onereward.models.flux_fill"),
    "sd_inpaint": ("generator_sd", "onereward.models.sd_inpaint"),
    "reward_vlm": ("reward_model", "onereward.models.reward_vlm"),
}
# The builder function of each zoo model (random weights, or the shipped trained ones).
BUILDERS: dict[str, str] = {
    "clip": "build_tiny",
    "flux_fill": "build_trained",
    "sd_inpaint": "build_trained",
    "reward_vlm": "build_trained",
}
# Version of the zoo's build rules (what each model gets); recorded in every zoo and part of
# :func:`code_sha`. 2: the generators are trained on the synthetic world (1: random weights);
# 3: the reward VLM is pretrained on the world's degraded pairs too.
BUILDER_VERSION = 3


def code_sha() -> str:
    """Hash of what builds the tiny models: the package version, :data:`BUILDER_VERSION`, the
    models' code and packaged configs and the shipped trained weights. Part of the zoo cache key
    and recorded in every zoo, so a zoo of another builder is never taken for this one's."""
    from onereward import __version__

    models_dir = Path(__file__).resolve().parents[1] / "models"
    h = hashlib.sha256(f"{__version__}/{BUILDER_VERSION}".encode())
    files = [*models_dir.glob("*.py"), *models_dir.glob("configs/*"), *models_dir.glob("weights/**/*")]
    for p in sorted(f for f in files if f.is_file()):
        h.update(str(p.relative_to(models_dir)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def builder_mismatch(manifest: Manifest) -> str | None:
    """Why ``manifest``'s zoo was built by another builder than this code (None when it was not,
    or when it records no builder: a hand-made zoo of tests)."""
    recorded = manifest.parameters.get("code_sha")
    if recorded is None or recorded == code_sha():
        return None
    return (
        f"field 'producer.parameters.code_sha' is {recorded} (builder version "
        f"{manifest.parameters.get('builder_version', 1)}), this code builds {code_sha()} "
        f"(builder version {BUILDER_VERSION})"
    )


def cache_root() -> Path:
    """Root of onereward's caches (``$ONEREWARD_CACHE`` or ``~/.cache/onereward``)."""
    return Path(os.environ.get("ONEREWARD_CACHE", Path.home() / ".cache" / "onereward"))


def build_zoo(profile: str | Profile, out: str | os.PathLike[str], *, seed: int = 0) -> Manifest:
    """Build (tiny) or record (full) every model of ``profile`` into the zoo artifact ``out``."""
    prof = load_profile(profile)
    params: dict[str, Any] = {
        "profile": prof.name,
        "profile_sha": prof.sha,
        "models_sha": prof.models_sha,
        "code_sha": code_sha(),
        "builder_version": BUILDER_VERSION,
        "seed": seed,
    }
    with ArtifactWriter(out, kind="zoo", stage="build_zoo", parameters=params) as art:
        models: dict[str, Any] = {}
        for folder, (key, module_name) in ZOO_MODELS.items():
            ref = prof.model_ref(key)
            if ref.ref.startswith("zoo:"):
                if ref.ref[4:] != folder:
                    raise ArtifactError(
                        f"{prof.source}: models.{key}.ref: expected 'zoo:{folder}', got {ref.ref!r}"
                    )
                module = importlib.import_module(module_name)
                t0 = time.perf_counter()
                built = getattr(module, BUILDERS[folder])(art.path / folder, seed=seed)
                secs = time.perf_counter() - t0
                art.timings[f"build_{folder}_s"] = round(secs, 3)
                n_bytes = sum(p.stat().st_size for p in (art.path / folder).rglob("*") if p.is_file())
                models[folder] = {
                    "profile_key": key,
                    "ref": ref.ref,
                    "built": True,
                    "bytes": n_bytes,
                    "weights": "trained" if BUILDERS[folder] == "build_trained" else f"random (seed {seed})",
                }
                if isinstance(built, dict):  # a trained model's weights index: what it was trained with
                    models[folder]["training"] = {
                        "files": built.get("files"),
                        "recipe": built.get("recipe"),
                        "summary": built.get("summary"),
                    }
                log.info("built %s in %.2fs (%.1f MB)", folder, secs, n_bytes / 1e6)
            else:
                models[folder] = {"profile_key": key, "ref": ref.ref, "built": False}
        write_json_atomic(art.path / "zoo.json", {"profile": prof.to_dict(), "models": models})
        art.counts["n_models_built"] = sum(1 for m in models.values() if m["built"])
        art.metrics.update(
            {
                "n_models_built": art.counts["n_models_built"],
                "build_seconds": round(sum(v for k, v in art.timings.items() if k.startswith("build_")), 3),
            }
        )
    assert art.manifest is not None
    return art.manifest


def ensure_zoo(profile: str | Profile, *, seed: int = 0) -> Path:
    """Path of the cached zoo for ``profile`` (built on first use, under a file lock)."""
    prof = load_profile(profile)
    root = cache_root() / "zoo"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prof.name}-{prof.models_sha}-{code_sha()}-seed{seed}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.exists():
                try:
                    cached = read_artifact(target, kind="zoo", what="zoo cache")
                    why = builder_mismatch(cached)
                    if why is None:
                        return target
                    log.warning("rebuilding the zoo cache %s: built by another builder (%s)", target, why)
                except ArtifactError as e:
                    log.warning("rebuilding the zoo cache: %s", e)
            log.info("building the %s zoo into %s (once; cached by profile hash)", prof.name, target)
            build_zoo(prof, target, seed=seed)
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_VERIFIED: dict[tuple[str, float], str] = {}


def verify_zoo(profile: str | Profile, zoo: str | os.PathLike[str]) -> Manifest:
    """Check that ``zoo`` is an intact zoo artifact built for this profile's models.

    Verifies kind, schema and content hash (once per process and manifest), that the zoo was built
    by this code's builder (recorded ``code_sha``) and that its recorded ``models_sha`` matches the
    profile's ``models`` section.
    """
    prof = load_profile(profile)
    mpath = Path(zoo) / "manifest.json"
    key = (str(Path(zoo).resolve()), mpath.stat().st_mtime if mpath.exists() else 0.0)
    manifest = read_artifact(zoo, kind="zoo", verify_hash=key not in _VERIFIED, what="--zoo")
    _VERIFIED[key] = manifest.content_hash
    why = builder_mismatch(manifest)
    if why is not None:
        raise ArtifactError(
            f"--zoo: {mpath} was built by another zoo builder: {why}; rebuild it with "
            f"`onereward zoo build --profile {prof.name} --out DIR`"
        )
    built_for = manifest.parameters.get("models_sha")
    if built_for is not None and built_for != prof.models_sha:
        raise ArtifactError(
            f"--zoo: {mpath} field 'producer.parameters.models_sha' is {built_for}, but profile "
            f"{prof.name!r} ({prof.source}) has models {prof.models_sha}: the zoo was built for another profile"
        )
    return manifest


def zoo_manifest(profile: str | Profile, zoo: str | os.PathLike[str] | None) -> Manifest:
    """The zoo a stage uses (explicit, or the cached one), verified: for the stage's ``inputs``."""
    prof = load_profile(profile)
    return verify_zoo(prof, zoo) if zoo else read_artifact(ensure_zoo(prof), kind="zoo", verify_hash=False)


def zoo_dir_for(profile: str | Profile, zoo: str | os.PathLike[str] | None) -> Path | None:
    """Validate an explicit zoo artifact dir (or return None to let profiles use the cache)."""
    if zoo is None or str(zoo) == "":
        return None
    verify_zoo(profile, zoo)
    return Path(zoo)
