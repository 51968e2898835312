"""Versioned artifacts: atomic writes, manifests, verification errors that name file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onereward.artifacts import (
    MANIFEST_NAME,
    SCHEMAS,
    ArtifactError,
    ArtifactWriter,
    content_hash,
    read_artifact,
)


def _write(out: Path, payload: str = "hello", **kw) -> None:
    with ArtifactWriter(
        out, kind="pool", stage="test_stage", parameters={"n": 3, "path": Path("/x")}, **kw
    ) as art:
        (art.path / "data.txt").write_text(payload)
        (art.path / "sub").mkdir()
        (art.path / "sub" / "b.bin").write_bytes(b"\x00\x01")
        art.counts["n_items"] = 2
        art.metrics["score"] = 0.5


def test_round_trip_has_all_manifest_fields(tmp_path: Path) -> None:
    out = tmp_path / "a"
    _write(out)
    m = read_artifact(out, kind="pool")
    assert m.kind == "pool" and m.schema_version == SCHEMAS["pool"]
    assert m.content_hash == content_hash(out) and m.content_hash.startswith("sha256:")
    assert m.producer["stage"] == "test_stage"
    assert m.producer["parameters"] == {"n": 3, "path": "/x"}
    assert m.producer["package_version"]
    assert "git_commit" in m.producer
    assert m.counts == {"n_items": 2}
    assert m.timings["total_s"] >= 0
    assert m.metrics() == {"score": 0.5}
    assert json.loads((out / "metrics.json").read_text()) == {"score": 0.5}
    # no staging leftovers beside the artifact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_inputs_reference_upstream_manifests(tmp_path: Path) -> None:
    _write(tmp_path / "up")
    up = read_artifact(tmp_path / "up")
    with ArtifactWriter(tmp_path / "down", kind="subset", stage="s", inputs=[up]) as art:
        (art.path / "x").write_text("1")
    down = read_artifact(tmp_path / "down", kind="subset")
    assert down.inputs == [
        {"kind": "pool", "schema_version": 1, "content_hash": up.content_hash, "stage": "test_stage"}
    ]


def test_same_content_same_hash(tmp_path: Path) -> None:
    _write(tmp_path / "a")
    _write(tmp_path / "b")
    assert read_artifact(tmp_path / "a").content_hash == read_artifact(tmp_path / "b").content_hash
    _write(tmp_path / "c", payload="other")
    assert read_artifact(tmp_path / "c").content_hash != read_artifact(tmp_path / "a").content_hash


def test_failure_leaves_previous_artifact_intact(tmp_path: Path) -> None:
    out = tmp_path / "a"
    _write(out, payload="first")
    with pytest.raises(RuntimeError), ArtifactWriter(out, kind="pool", stage="s") as art:
        (art.path / "data.txt").write_text("half")
        raise RuntimeError("boom")
    assert (out / "data.txt").read_text() == "first"
    read_artifact(out)  # still verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_failure_on_fresh_target_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(ValueError), ArtifactWriter(out, kind="pool", stage="s") as art:
        (art.path / "x").write_text("x")
        raise ValueError("bad")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_rerun_replaces_and_kfp_empty_dir_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "a"
    out.mkdir()  # KFP pre-creates output dirs
    _write(out, payload="one")
    _write(out, payload="two")
    assert (out / "data.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_resume_keeps_staging_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "a"
    with pytest.raises(RuntimeError), ArtifactWriter(out, kind="candidates", stage="s", resume=True) as art:
        (art.path / "done-1.png").write_text("1")
        raise RuntimeError("interrupted")
    staging = tmp_path / ".a.partial"
    assert (staging / "done-1.png").exists() and not out.exists()
    with ArtifactWriter(out, kind="candidates", stage="s", resume=True) as art:
        assert (art.path / "done-1.png").exists()  # earlier work is visible to the rerun
        (art.path / "done-2.png").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [
        "done-1.png",
        "done-2.png",
        "manifest.json",
        "metrics.json",
    ]
    assert not staging.exists()


def test_hash_mismatch_names_field(tmp_path: Path) -> None:
    out = tmp_path / "a"
    _write(out)
    (out / "data.txt").write_text("tampered")
    with pytest.raises(ArtifactError, match=r"manifest.json field 'content_hash'.*modified or is incomplete"):
        read_artifact(out)
    read_artifact(out, verify_hash=False)  # explicit opt-out still reads


def test_missing_file_changes_hash(tmp_path: Path) -> None:
    out = tmp_path / "a"
    _write(out)
    (out / "sub" / "b.bin").unlink()
    with pytest.raises(ArtifactError, match="content_hash"):
        read_artifact(out)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d.update(kind="weights"), r"field 'kind' is 'weights', which no stage of ours writes"),
        (lambda d: d.update(schema_version=99), r"field 'schema_version' is 99 for kind 'pool'"),
        (lambda d: d.pop("content_hash"), r"field 'content_hash' is missing"),
        (lambda d: d.update(schema_version="1"), r"field 'schema_version' must be int"),
    ],
)
def test_foreign_or_corrupt_manifest(tmp_path: Path, mutate, pattern: str) -> None:
    out = tmp_path / "a"
    _write(out)
    data = json.loads((out / MANIFEST_NAME).read_text())
    mutate(data)
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=pattern):
        read_artifact(out)


def test_wrong_kind_requested(tmp_path: Path) -> None:
    _write(tmp_path / "a")
    with pytest.raises(ArtifactError, match=r"--subset: .*field 'kind' is 'pool'; expected subset"):
        read_artifact(tmp_path / "a", kind="subset", what="--subset")


def test_not_json_and_missing_manifest(tmp_path: Path) -> None:
    out = tmp_path / "a"
    _write(out)
    (out / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        read_artifact(out)
    (out / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        read_artifact(out)
    with pytest.raises(ArtifactError, match="is not a directory"):
        read_artifact(tmp_path / "nope")


def test_unknown_kind_refused_on_write(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="unknown artifact kind 'blob'"):
        ArtifactWriter(tmp_path / "x", kind="blob", stage="s")


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(
        ArtifactError, match=r"--out: .*precious is a non-empty directory that is not an onereward artifact"
    ):
        _write(precious)
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no staging leftovers
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a directory"):
        _write(afile)
    assert afile.read_text() == "x"


@pytest.mark.parametrize("field", ["inputs", "counts", "timings"])
def test_manifest_field_types_are_checked(tmp_path: Path, field: str) -> None:
    out = tmp_path / "a"
    _write(out)
    data = json.loads((out / MANIFEST_NAME).read_text())
    data[field] = "oops"
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"field '{field}' must be"):
        read_artifact(out)
