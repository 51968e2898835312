"""The reliability suite (issue 16): the valid artifacts every case starts from, and the ledger of
what was tried, printed at the end of the run: bad inputs tried, faults injected, tracebacks seen
and data lost. The last two must be 0: each case asserts it, and the session fails otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from rkit import LEDGER, WRITTEN, run_cli

# Small enough for seconds per stage on one core.
TRAIN_POLICY_FAST = {
    "max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "rollout_steps": 3, "t1": 1, "t2": 2,
    "probe_items": 1, "probe_seeds": 1, "eval_every": 2, "report_items": 1, "threads": 1,
    "reference_seeds": 2, "nft_group_size": 2, "nft_rollout_steps": 2, "lora_rank": 2,
}  # fmt: skip


def flags(settings: dict) -> list[str]:
    """``{"max_steps": 2}`` -> ``["--max-steps", "2"]``."""
    out: list[str] = []
    for k, v in settings.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _ok(argv: list[str]) -> None:
    res = run_cli(argv)
    assert res.code == 0 and not res.traceback, f"{argv[0]}: {res.error_line}\n{res.traceback}"


@pytest.fixture(scope="session")
def rel_world(tmp_path_factory: pytest.TempPathFactory, tiny_zoo: Path) -> dict[str, Path]:
    """One valid artifact of every kind, made through the CLI: pool -> subset -> candidates ->
    project -> annotations -> preferences, plus a reward model and a policy (test helpers, no
    training). Cases copy them; nothing writes into them (the cases check that too)."""
    from onereward.testing.policy import make_policy_artifact, make_reward_model_artifact

    root = tmp_path_factory.mktemp("rel-world")
    WRITTEN.append(root)
    w = {
        name: root / name
        for name in ("pool", "subset", "candidates", "project", "annotations", "preferences")
    }
    w.update(root=root, zoo=tiny_zoo, reward_model=root / "reward_model", policy=root / "policy")
    w["cache"] = tmp_path_factory.mktemp("rel-embedding-cache")  # written by select runs: not in root
    WRITTEN.append(w["cache"])
    _ok(["synth", "--out", w["pool"], "--items", "16", "--seed", "3"])
    _ok(["select", "--pool", w["pool"], "--out", w["subset"], "--size", "8", "--zoo", tiny_zoo,
         "--cache-dir", w["cache"], "--no-progress"])  # fmt: skip
    _ok(["synth-candidates", "--items", w["subset"], "--out", w["candidates"], "--per-item", "3"])
    _ok(["export", "--candidates", w["candidates"], "--out", w["project"], "--offline"])
    _ok(["simulate-annotations", "--project", w["project"], "--out", w["annotations"], "--annotators", "2"])
    _ok(["import", "--project", w["annotations"], "--out", w["preferences"]])
    make_reward_model_artifact(w["reward_model"], zoo=tiny_zoo, accuracy=0.8)
    make_policy_artifact(w["policy"], zoo=tiny_zoo, rank=2)
    return w


@pytest.fixture(autouse=True)
def _remember_what_tests_write(request: pytest.FixtureRequest) -> None:
    """Every test folder of the suite is searched for the sentinel secrets (test_rel_secrets.py)."""
    if "tmp_path" in request.fixturenames:
        WRITTEN.append(request.getfixturevalue("tmp_path"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not LEDGER.used:
        return
    tr = terminalreporter
    tr.section("reliability summary (issue 16)")
    by = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items()))  # noqa: E731
    tr.write_line(f"bad inputs tried: {sum(LEDGER.bad_inputs.values())} ({by(LEDGER.bad_inputs)})")
    tr.write_line(f"faults injected: {sum(LEDGER.faults.values())} ({by(LEDGER.faults)})")
    tr.write_line(f"processes killed: {sum(LEDGER.killed.values())} ({by(LEDGER.killed)})")
    leaks = [x for x in LEDGER.lost if x.startswith("secrets:")]
    tr.write_line(f"secrets searched for in {LEDGER.secrets_checked} files and logs; found: {len(leaks)}")
    tr.write_line(f"tracebacks seen: {len(LEDGER.tracebacks)}")
    for t in LEDGER.tracebacks:
        tr.write_line(f"  {t}")
    tr.write_line(f"data lost: {len(LEDGER.lost)}")
    for x in LEDGER.lost:
        tr.write_line(f"  {x}")
    if LEDGER.known:
        tr.write_line(
            f"known defects outside this suite's files (strict xfail, reported): {len(LEDGER.known)}"
        )
        for x in LEDGER.known:
            tr.write_line(f"  {x}")


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ARG001
    """Tracebacks seen and data lost must be 0: the session fails otherwise (even if a case that
    saw one was marked as expected to fail)."""
    if LEDGER.used and (LEDGER.tracebacks or LEDGER.lost) and session.exitstatus == 0:
        session.exitstatus = 1
