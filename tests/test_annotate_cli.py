"""``onereward export`` / ``simulate-annotations`` / ``import`` from the command line (offline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from annotate_helpers import synthetic_candidates

from onereward.cli import main


def test_cli_chain_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cands = synthetic_candidates(tmp_path, n_items=6, seed=2)
    assert main(["export", "--candidates", str(cands), "--out", str(tmp_path / "project"), "--offline"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["n_tasks"] == 6 and exported["online"] is False
    assert (
        main(
            [
                "simulate-annotations",
                "--project",
                str(tmp_path / "project"),
                "--annotators",
                "3",
                "--noise",
                "0.1",
            ]
        )
        == 0
    )
    simulated = json.loads(capsys.readouterr().out)
    assert simulated["n_annotations"] == 18
    answers = tmp_path / "project-annotations"  # default --out beside the project
    assert (answers / "export.json").is_file()
    assert main(["import", "--project", str(answers), "--out", str(tmp_path / "prefs")]) == 0
    imported = json.loads(capsys.readouterr().out)
    on_disk = json.loads((tmp_path / "prefs" / "metrics.json").read_text())
    assert imported == on_disk and imported["n_tasks"] == 6 and imported["n_pairs"] > 0


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--project", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--project" in err and "not a directory" in err


def test_setting_flags_come_from_the_configs_and_the_token_is_never_a_flag() -> None:
    from onereward.annotate.config import ExportConfig, ImportConfig, SimulateConfig
    from onereward.cli import build_parser
    from onereward.config import flag_name

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for command, config in (
        ("export", ExportConfig),
        ("simulate-annotations", SimulateConfig),
        ("import", ImportConfig),
    ):
        flags = {o for a in sub.choices[command]._actions for o in a.option_strings}
        assert {f"--{flag_name(f.name)}" for f in config.fields()} <= flags, command
        assert not [f for f in flags if "token" in f or "api-key" in f or "password" in f], command


def test_a_bad_setting_flag_is_one_line_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cands = synthetic_candidates(tmp_path, n_items=3, seed=1)
    capsys.readouterr()  # the fixture's log lines
    args = [
        "export",
        "--candidates",
        str(cands),
        "--out",
        str(tmp_path / "p"),
        "--offline",
        "--chunk-size",
        "0",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--chunk-size" in err and ">= 1" in err
    assert not (tmp_path / "p").exists()
