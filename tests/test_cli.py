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
    "generate-merge",
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


@pytest.mark.parametrize("command", sorted(set(subcommands(build_parser())) | EXPECTED))
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
    assert err.count("\n") == 1 and "bad.yaml: foo: unknown key" in err
    bad.write_text("name: [unclosed")
    assert main(["profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML at line" in err


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


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single error line on stderr (progress/log lines may precede it; no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_stage_commands_refuse_bad_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tampered, foreign or wrong-kind input artifacts: one line naming file and field, exit 2,
    nothing written."""
    from onereward.synth.stage import make_pool

    pool = tmp_path / "pool"
    make_pool(pool, 6, 0)
    out = tmp_path / "out"
    # wrong kind: a pool where preferences are expected
    assert main(["train-reward", "--preferences", str(pool), "--out", str(out)]) == 2
    assert "field 'kind' is 'pool'" in _one_line_error(capsys)
    # tampered data file: hash mismatch
    image = next((pool / "images").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert main(["select", "--pool", str(pool), "--out", str(out), "--size", "3"]) == 2
    assert "field 'content_hash'" in _one_line_error(capsys)
    # foreign manifest
    (pool / "manifest.json").write_text(
        '{"kind": "weights", "schema_version": 1, "content_hash": "x", "producer": {}}'
    )
    assert main(["select", "--pool", str(pool), "--out", str(out), "--size", "3"]) == 2
    assert "field 'kind' is 'weights'" in _one_line_error(capsys)
    assert not out.exists()


def test_pipeline_run_failed_task_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["pipeline", "run", "collect", "--local", "--out", str(tmp_path / "run")])
    assert rc == 2 and "--param pool_uri: pipeline 'collect' needs it" in _one_line_error(capsys)
    rc = main(["demo", "--out", str(tmp_path / "run"), "--param", "profile=/no/such.yaml"])
    assert rc == 2 and "is neither a built-in profile" in _one_line_error(capsys)


def test_library_imports_without_kfp() -> None:
    """The stage library never imports KFP (only the pipeline commands do, lazily)."""
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['kfp'] = None\n"
        "import onereward\n"
        "names = [m.name for m in pkgutil.walk_packages(onereward.__path__, 'onereward.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "from onereward.cli import build_parser; build_parser()\n"
        "print(len(names))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip()) > 30


def test_cli_env_names_match_the_client() -> None:
    from onereward.annotate import cli as annotate_cli
    from onereward.annotate import client

    assert (annotate_cli.TOKEN_ENV, annotate_cli.DOCUMENT_ROOT_ENV) == (
        client.TOKEN_ENV,
        client.DOCUMENT_ROOT_ENV,
    )
