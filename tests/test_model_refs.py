"""One model resolver for every model: zoo:, local folders and hub ids through the Hugging Face
cache. No model hub is reachable here, so hub ids are served by a local hub on 127.0.0.1
(onereward.testing.local_hub, the endpoints huggingface_hub's snapshot_download calls) from the
tiny zoo's folders; the stages then load them offline through the real from_pretrained paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onereward.errors import ProfileError
from onereward.model_refs import resolve_ref
from onereward.synth.stage import make_pool
from onereward.testing.local_hub import LocalHub

TOKEN = "hf_test_token_0123456789abcdef"
HUB_IDS = {
    "clip": "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    "generator": "black-forest-labs/FLUX.1-Fill-dev",
    "generator_sd": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "reward_model": "Qwen/Qwen2.5-VL-7B-Instruct",
}
ZOO_FOLDERS = {
    "clip": "clip",
    "generator": "flux_fill",
    "generator_sd": "sd_inpaint",
    "reward_model": "reward_vlm",
}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onereward.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def hub_world(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    """A profile = tiny with every model ref replaced by the full profile's hub id, served by a local hub
    (FLUX.1-Fill-dev gated behind a token, as on the real hub)."""
    root = tmp_path_factory.mktemp("hub")
    data = yaml.safe_load(
        Path(__file__).resolve().parents[1].joinpath("src/onereward/profiles/tiny.yaml").read_text()
    )
    data["name"] = "tiny-from-hub"
    for key, hub_id in HUB_IDS.items():
        data["models"][key]["ref"] = hub_id
    profile = root / "tiny-from-hub.yaml"
    profile.write_text(yaml.safe_dump(data))
    repos = {HUB_IDS[k]: tiny_zoo / ZOO_FOLDERS[k] for k in HUB_IDS}
    hub = LocalHub(repos, private={HUB_IDS["generator"]}, token=TOKEN)
    with hub:
        env = {
            **os.environ,
            "HF_HOME": str(root / "hf"),
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        env.pop("HF_TOKEN", None)
        env.pop("HF_HUB_OFFLINE", None)
        yield {"root": root, "profile": profile, "hub": hub, "env": env}


def test_local_and_malformed_refs_are_clear_errors(tmp_path: Path) -> None:
    assert resolve_ref(str(tmp_path), key="clip", where="p: models.clip.ref") == str(tmp_path)
    with pytest.raises(ProfileError, match=r"p: models.clip.ref: model folder .*/nope does not exist"):
        resolve_ref(str(tmp_path / "nope"), key="clip", where="p: models.clip.ref")
    with pytest.raises(ProfileError, match="is neither zoo:<name>, a local folder .* nor a hub id org/name"):
        resolve_ref("just-a-name", key="clip", where="p: models.clip.ref")


def test_hub_models_import_once_then_every_stage_loads_them_offline(hub_world, tmp_path: Path) -> None:
    env, hub, profile = hub_world["env"], hub_world["hub"], str(hub_world["profile"])
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    pool = tmp_path / "pool"
    make_pool(pool, 6, seed=2)

    # before the import, offline: a one-line error naming the model and every place tried
    run = _cli(
        ["select", "--pool", str(pool), "--out", str(tmp_path / "s0"), "--size", "3", "--profile", profile],
        offline,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (
        "models.clip.ref: model 'laion/CLIP-ViT-L-14-laion2B-s32B-b82K' was not found; tried the Hugging Face cache"
        in run.stderr
    )
    assert "not the hub (HF_HUB_OFFLINE is set)" in run.stderr

    # the gated generator needs the token: without it the import fails naming the model, and nothing leaks
    run = _cli(["zoo", "import-models", "--profile", profile], env)
    assert (
        run.returncode == 2
        and "models.generator.ref: model 'black-forest-labs/FLUX.1-Fill-dev' was not found" in run.stderr
    )
    run = _cli(["zoo", "import-models", "--profile", profile], {**env, "HF_TOKEN": TOKEN})
    assert run.returncode == 0, run.stderr
    assert TOKEN not in run.stdout + run.stderr
    imported = json.loads(run.stdout)
    assert {k for k, v in imported.items() if v["imported"]} == set(HUB_IDS)
    assert all(Path(v["path"]).is_dir() and v["bytes"] > 0 for v in imported.values())
    gated = [a for m, p, a in hub.requests if p.startswith("/black-forest-labs/FLUX.1-Fill-dev/resolve/")]
    assert gated and all(a == f"Bearer {TOKEN}" for a in gated)

    # a second import finds everything in the cache and fetches no file again
    n_files = sum(1 for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p)
    assert _cli(["zoo", "import-models", "--profile", profile], {**env, "HF_TOKEN": TOKEN}).returncode == 0
    assert sum(1 for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p) == n_files

    # offline, the stages load CLIP and the generator from the cache through from_pretrained
    n_requests = len(hub.requests)
    run = _cli(
        [
            "select",
            "--pool",
            str(pool),
            "--out",
            str(tmp_path / "subset"),
            "--size",
            "3",
            "--profile",
            profile,
        ],
        offline,
    )
    assert run.returncode == 0, run.stderr
    run = _cli(
        ["generate", "--subset", str(tmp_path / "subset"), "--out", str(tmp_path / "cand"), "--profile", profile,
         "--num-candidates", "1", "--min-steps", "1", "--max-steps", "2"],
        offline,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["n_candidates"] == 3
    code = (
        "from onereward.profile import load_profile; from onereward.models import reward_vlm; "
        f"m = reward_vlm.load(load_profile({profile!r}).resolve_model('reward_model')); print(type(m.model).__name__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=offline, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "Qwen2_5_VLForConditionalGeneration" in run.stdout, run.stderr
    assert len(hub.requests) == n_requests  # offline means offline
