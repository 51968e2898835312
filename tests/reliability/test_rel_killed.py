"""Killed processes (issue 16): training killed with SIGKILL in the middle of a run resumes from its
last checkpoint, loses at most one checkpoint interval and ends with the same weights as an
uninterrupted run; a stage killed while writing its artifact leaves nothing that reads as complete,
and the rerun writes the artifact whole.

Each trainer is one row of :data:`TRAINERS`, each writer one row of :data:`WRITERS`.

Tolerance: on CPU with fixed seeds and one thread the resumed run must equal the uninterrupted one
to ``WEIGHT_ATOL`` = 1e-6 (float32 weights; resuming is exact, so the measured difference is 0).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_POLICY_FAST, flags
from rkit import LEDGER, LOG_TEXTS, SECRETS, TRACEBACK_MARK, copy_artifact, run_cli, tree_hash

from onereward.artifacts import ArtifactError, read_artifact

W = dict[str, Path]
WEIGHT_ATOL = 1e-6


def _steps(desc: str, text: str) -> list[int]:
    """Steps shown by the tqdm bar called ``desc`` (e.g. "reward SFT:  33%|###  | 8/24 [...")."""
    return [
        int(m.group(1)) for m in re.finditer(re.escape(desc) + r"[^\r\n|]*\|[^|\r\n]*\| *(\d+)/\d+ \[", text)
    ]


@dataclass(frozen=True)
class Trainer:
    """A training stage: its command line, checkpoint interval and where its weights end up."""

    stage: str
    argv: Callable[[W, Path], list]
    interval: int
    weights: str  # safetensors file in the artifact
    kill_after: int  # SIGKILL once this step's checkpoint is complete (and the run has moved on)
    bar: str  # the description of its tqdm progress bar (the step reached is read from it)


TRAINERS = [
    Trainer("train-reward",
            lambda w, out: ["train-reward", "--preferences", w["preferences"], "--out", out, "--zoo", w["zoo"],
                            "--max-steps", "24", "--checkpoint-every", "8", "--batch-size", "4", "--log-every", "1",
                            "--warmup-steps", "2", "--seed", "1"],
            interval=8, weights="model/model.safetensors", kill_after=8, bar="reward SFT"),
    Trainer("train-policy",
            lambda w, out: ["train-policy", "--subset", w["subset"], "--reward-model", w["reward_model"], "--out", out,
                            "--zoo", w["zoo"], *flags({**TRAIN_POLICY_FAST, "max_steps": 4, "checkpoint_every": 2,
                                                       "eval_every": 4})],
            interval=2, weights="lora/pytorch_lora_weights.safetensors", kill_after=2, bar="train_policy (refl)"),
]  # fmt: skip


def _env() -> dict[str, str]:
    """CPU only, one thread, fixed seeds in the command lines: runs are bit-reproducible."""
    return {**os.environ, **SECRETS, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip


def _cli(argv: list) -> list[str]:
    return [sys.executable, "-m", "onereward.cli", *[str(a) for a in argv]]


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fails when it ends or times out first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, (
                f"{what}: the process ended (code {proc.returncode}) before the kill point"
            )
            assert time.monotonic() < deadline, f"{what}: no kill point within {timeout:.0f} s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        LEDGER.killed[what] += 1
        LEDGER.fault("SIGKILL")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("trainer", TRAINERS, ids=lambda t: t.stage)
def test_training_killed_with_sigkill_resumes_and_ends_with_the_same_weights(
    trainer: Trainer, rel_world: W, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    ckpt = tmp_path / f".{out.name}.checkpoints"
    argv = trainer.argv(rel_world, out)
    err_path = tmp_path / "killed.stderr"
    done_ckpt = ckpt / f"step-{trainer.kill_after:08d}" / "state.json"

    def progressed() -> bool:  # the checkpoint is complete and the run is training past it
        if not done_ckpt.is_file():
            return False
        steps = _steps(trainer.bar, err_path.read_text(errors="replace"))
        return bool(steps) and max(steps) > trainer.kill_after

    with open(err_path, "w") as err:
        proc = subprocess.Popen(_cli(argv), env=_env(), stdout=subprocess.DEVNULL, stderr=err)
        _kill_when(proc, progressed, trainer.stage)
    stderr = err_path.read_text(errors="replace")
    reached = max(_steps(trainer.bar, stderr))
    # Killed before its artifact was written: nothing at --out, nothing that reads as complete.
    assert not out.exists(), f"{trainer.stage}: {out} exists after a SIGKILL mid-training"
    complete = sorted(int(p.parent.name.split("-")[1]) for p in ckpt.glob("step-*/state.json"))
    last = complete[-1]
    _checkpoints_are_safe(ckpt)
    lost_steps = reached - last
    assert 0 <= lost_steps <= trainer.interval, (trainer.stage, reached, complete)
    # The same command again resumes from the last checkpoint and finishes.
    resumed = subprocess.run(_cli(argv), env=_env(), capture_output=True, text=True, timeout=600)
    LOG_TEXTS.extend([stderr, resumed.stdout + resumed.stderr])
    assert resumed.returncode == 0 and TRACEBACK_MARK not in resumed.stderr, resumed.stderr[-3000:]
    if TRACEBACK_MARK in stderr:  # the killed run printed a traceback before it died
        LEDGER.traceback(f"{trainer.stage} killed", stderr[stderr.index(TRACEBACK_MARK) :])
    metrics = read_artifact(out).metrics()
    assert metrics["resumed_from_step"] == last
    # An uninterrupted run with the same settings and environment.
    straight = subprocess.run(_cli(trainer.argv(rel_world, tmp_path / "straight")), env=_env(),
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    LOG_TEXTS.append(straight.stdout + straight.stderr)
    assert straight.returncode == 0 and TRACEBACK_MARK not in straight.stderr, straight.stderr[-3000:]
    a, b = _load(out / trainer.weights), _load(tmp_path / "straight" / trainer.weights)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= WEIGHT_ATOL, (
        f"{trainer.stage}: resumed weights differ from the uninterrupted run by {worst}"
    )
    assert not [
        p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")
    ]  # safetensors only
    print(f"{trainer.stage}: killed at step {reached}, resumed from {last} (lost {lost_steps} steps, "
          f"interval {trainer.interval}); max |resumed - uninterrupted| = {worst:.3g}")  # fmt: skip


def _checkpoints_are_safe(ckpt: Path) -> None:
    """Checkpoints hold their weights as safetensors only; the optimiser, scheduler and RNG states
    load with ``torch.load(weights_only=True)`` (the allow-list accelerate itself uses on resume), so
    resuming from a checkpoint can never run code; no pickled custom objects."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    files = [p for d in ckpt.glob("step-*") for p in d.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files), files
    for p in files:
        assert p.suffix not in (".pt", ".pth", ".ckpt") and not p.name.startswith(
            ("pytorch_model", "custom_checkpoint")
        ), p
        if p.suffix in (".bin", ".pkl"):
            with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
                torch.load(p, weights_only=True, map_location="cpu")
        else:
            assert p.suffix in (".safetensors", ".json"), p


# ---- killed while writing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """A stage whose artifact is written file by file: its command line, the artifact kind, and how
    many files its staging folder holds when it is killed."""

    stage: str
    kind: str
    argv: Callable[[W, Path], list]
    ready: Callable[[Path], bool]  # (staging folder) -> kill now
    staging: str = "*.tmp"  # the staging folder's name pattern beside --out (".<out>.<pattern>")


def _files(n: int) -> Callable[[Path], bool]:
    return lambda st: sum(1 for p in st.rglob("*") if p.is_file()) >= n


def _generated_items(n: int) -> Callable[[Path], bool]:
    """At least ``n`` items finished (their progress record written), the run still going."""
    return lambda st: sum(1 for p in st.glob("_progress/*.json") if p.name != "params.json") >= n


WRITERS = [
    Writer("synth", "pool", lambda w, out: ["synth", "--out", out, "--items", "400", "--seed", "9"], _files(60)),
    Writer("generate", "candidates",
           lambda w, out: ["generate", "--subset", w["subset"], "--out", out, "--zoo", w["zoo"], "--num-candidates", "2",
                           "--min-steps", "2", "--max-steps", "2", "--batch-size", "1"],
           _generated_items(2), staging="partial"),
]  # fmt: skip


def _staging(out: Path, pattern: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{pattern}"))


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.stage)
def test_a_stage_killed_while_writing_leaves_nothing_complete_and_the_rerun_is_whole(
    writer: Writer, rel_world: W, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    earlier = copy_artifact(rel_world["pool"], out)  # an earlier artifact at --out
    before = tree_hash(earlier)

    def writing() -> bool:
        return any(writer.ready(st) for st in _staging(out, writer.staging))

    proc = subprocess.Popen(_cli(writer.argv(rel_world, out)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    _kill_when(proc, writing, f"{writer.stage} writing")
    # The earlier artifact is intact; the half-written one never reads as complete.
    if tree_hash(out) != before:
        LEDGER.lose(f"{writer.stage} killed while writing", f"{out} changed")
    assert tree_hash(out) == before and read_artifact(out, kind="pool")
    staged = _staging(out, writer.staging)
    assert staged, "the kill point was inside the write"
    for st in staged:
        with pytest.raises(ArtifactError):
            read_artifact(st, kind=writer.kind)
    # The rerun writes the artifact whole (a resumable stage picks up what the killed run finished).
    res = run_cli(writer.argv(rel_world, out))
    assert res.code == 0 and not res.traceback, res.error_line
    manifest = read_artifact(out, kind=writer.kind)  # verifies the content hash
    assert manifest.counts and not _staging(out, "partial")
    if writer.stage == "generate":
        metrics = manifest.metrics()
        assert metrics["n_items_resumed"] >= 1 and metrics["n_candidates"] == 2 * metrics["n_items"]
