"""Secrets and unsafe loading (issue 16).

- The Label Studio token, the S3 keys and the HF token never appear in compiled specs, artifact
  files, manifests or logs. Every stage run of this suite has sentinel values of all of them in its
  environment (rkit.SECRETS); here every file the suite wrote, every console output and freshly
  compiled specs are searched for them. A gated model import with the HF token runs here; the real
  Label Studio token and the S3 route are searched for in test_rel_service_faults.py.
- Checkpoints are safetensors only (test_rel_killed.py checks the checkpoints it kills); here: every
  ``torch.load`` in the code passes ``weights_only=True`` and nothing unpickles (read from the source).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rkit import LOG_TEXTS, SECRETS, WRITTEN, find_secrets, run_cli

from onereward.testing.local_hub import LocalHub

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "src", REPO / "components", REPO / "pipelines"]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_every_torch_load_is_weights_only_and_nothing_unpickles() -> None:
    bad: list[str] = []
    n_files = 0
    for root in SOURCES:
        for path in root.rglob("*.py"):
            n_files += 1
            tree = ast.parse(path.read_text(), str(path))
            for node, owner, name in _calls(tree):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                kw = {k.arg: k.value for k in node.keywords}
                if owner == "torch" and name == "load":
                    v = kw.get("weights_only")
                    if not (isinstance(v, ast.Constant) and v.value is True):
                        bad.append(f"{where}: torch.load without weights_only=True")
                if owner in ("pickle", "dill", "joblib", "cloudpickle") and name in ("load", "loads"):
                    bad.append(f"{where}: {owner}.{name} runs code from the file it reads")
                if owner in ("np", "numpy") and name == "load":
                    v = kw.get("allow_pickle")
                    if isinstance(v, ast.Constant) and v.value is True:
                        bad.append(f"{where}: np.load(allow_pickle=True)")
                if name == "register_for_checkpointing":  # accelerate unpickles those with weights_only=False
                    bad.append(f"{where}: accelerate custom checkpoint objects are loaded unsafely")
    assert n_files > 50
    assert not bad, bad


def test_compiled_specs_hold_no_secret(tmp_path: Path) -> None:
    """Specs compiled with every secret in the environment, and the committed ones."""
    res = run_cli(["pipeline", "compile", "--out", tmp_path / "compiled"])
    assert res.code == 0 and not res.traceback, res.error_line
    specs = sorted((tmp_path / "compiled").glob("*.yaml"))
    assert {p.name for p in specs} >= {"collect.yaml", "train.yaml", "end_to_end.yaml"}
    committed = sorted((REPO / "pipelines" / "compiled").glob("*.yaml"))
    assert not find_secrets(list(SECRETS.values()), [*specs, *committed], [res.stdout + res.stderr])


def test_a_gated_model_import_never_writes_or_prints_the_hf_token(tiny_zoo: Path, tmp_path: Path) -> None:
    """zoo import-models fetches a gated generator with HF_TOKEN from a local hub (the token is
    required and sent), then a stage loads it offline: the token is in no file and no output."""
    token = SECRETS["HF_TOKEN"]
    data = yaml.safe_load((REPO / "src/onereward/profiles/tiny.yaml").read_text())
    data["name"] = "tiny-gated"
    data["models"]["generator"]["ref"] = "black-forest-labs/FLUX.1-Fill-dev"
    profile = tmp_path / "tiny-gated.yaml"
    profile.write_text(yaml.safe_dump(data))
    hub = LocalHub({"black-forest-labs/FLUX.1-Fill-dev": tiny_zoo / "flux_fill"},
                   private={"black-forest-labs/FLUX.1-Fill-dev"}, token=token)  # fmt: skip
    with hub:
        env = {**os.environ, **SECRETS, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url,
               "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
        env.pop("HF_HUB_OFFLINE", None)
        run = subprocess.run(
            [sys.executable, "-m", "onereward.cli", "zoo", "import-models", "--profile", str(profile)],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        gated = [a for m, p, a in hub.requests if "/resolve/" in p]
        assert gated and all(a == f"Bearer {token}" for a in gated)  # the token was needed and sent
    LOG_TEXTS.append(run.stdout + run.stderr)
    assert not find_secrets([token], [tmp_path], [run.stdout + run.stderr])


def test_no_secret_in_any_artifact_manifest_or_log_the_suite_wrote() -> None:
    """Runs after the bad-input and killed-process modules (file order): every folder they wrote,
    the embedding and zoo caches and every console output, searched for every sentinel value."""
    roots = [p for p in dict.fromkeys(WRITTEN) if p.exists()]
    cache = os.environ.get("ONEREWARD_CACHE")
    if cache:
        roots.append(Path(cache))
    if not roots:
        pytest.skip("run with the rest of tests/reliability (nothing was written yet)")
    manifests = [p for r in roots for p in r.rglob("manifest.json")]
    assert manifests, "no artifact was written before this test"
    assert not find_secrets(list(SECRETS.values()), roots, LOG_TEXTS)
