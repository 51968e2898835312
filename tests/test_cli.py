"""The ``onereward`` command line: every subcommand has --help; bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onereward.cli import build_parser, main, subcommands

EXPECTED = {
    "zoo",
    "zoo build",
    "synth",
    "synth-candidates",
    "select",
    "generate",
    "export",
    "simulate-annotations",
    "import",
    "train-reward",
    "pipeline",
    "pipeline compile",
    "pipeline run",
    "pipeline list",
    "demo",
    "profile",
}


def test_every_subcommand_is_registered() -> None:
    found = set(subcommands(build_parser()))
    assert found >= EXPECTED, f"missing subcommands: {sorted(EXPECTED - found)}"


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: onereward " + command)
    assert len(out.splitlines()) >= 3  # a description and options, not just a usage line


def test_console_script_entry_point() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "onereward.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0 and res.stdout.startswith("onereward ")
    exe = Path(sys.executable).with_name("onereward")
    assert exe.exists(), "the `onereward` console script is not installed next to the interpreter"


def test_profile_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "tiny"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "tiny" and data["models"]["reward_model"]["ref"] == "zoo:reward_vlm"


def test_bad_profile_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nimage_size: 64\nfoo: 1\n")
    assert main(["profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: foo: unknown key" in err and "Traceback" not in err


def test_zoo_build_bad_profile_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zoo"
    assert main(["zoo", "build", "--profile", "nope", "--out", str(out)]) == 2
    assert "neither a built-in profile" in capsys.readouterr().err
    assert not out.exists()


def test_pipeline_run_bad_param(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["pipeline", "run", "end_to_end", "--local", "--out", str(tmp_path), "--param", "synth_items=many"]
    )
    assert rc == 2
    assert "--param synth_items: expected int, got 'many'" in capsys.readouterr().err
    rc = main(["pipeline", "run", "end_to_end", "--local", "--out", str(tmp_path), "--param", "colour=red"])
    assert rc == 2
    assert "has no parameter 'colour'" in capsys.readouterr().err
    rc = main(["pipeline", "run", "nightly", "--local", "--out", str(tmp_path)])
    assert rc == 2
    assert "unknown pipeline 'nightly'" in capsys.readouterr().err
