"""The reward-model gate: policy training refuses an inaccurate reward model unless overridden."""

from __future__ import annotations

import pytest

from onereward.artifacts import ArtifactError, ArtifactWriter, write_json_atomic
from onereward.errors import InputError
from onereward.reward import gate


def _reward_model(tmp_path, accuracy, name="rm"):
    with ArtifactWriter(tmp_path / name, kind="reward_model", stage="test") as art:
        write_json_atomic(art.path / "query_template.json", {"version": "phi-v1"})
        art.metrics["accuracy"] = accuracy
    return tmp_path / name


ACC = {"image_fill": {"aesthetics": 0.8, "text_alignment": 0.55}, "object_removal": {"removal_quality": 0.9}}


def test_gate_refuses_a_cell_below_threshold_and_names_it(tmp_path):
    rm = _reward_model(tmp_path, ACC)
    with pytest.raises(gate.RewardGateError, match=r"image_fill/text_alignment=0\.550") as e:
        gate.check(rm, threshold=0.6)
    assert "aesthetics" not in str(e.value)
    assert isinstance(e.value, InputError)


def test_gate_passes_required_subset_and_lower_threshold(tmp_path):
    rm = _reward_model(tmp_path, ACC)
    ok = gate.check(
        rm, threshold=0.6, required=[("image_fill", "aesthetics"), ("object_removal", "removal_quality")]
    )
    assert ok.passed and not ok.failing and ok.accuracy[("image_fill", "aesthetics")] == 0.8
    assert gate.check(rm, threshold=0.5).passed


def test_gate_untested_required_cell_fails_and_override_lets_it_through(tmp_path):
    rm = _reward_model(tmp_path, ACC)
    with pytest.raises(gate.RewardGateError, match="image_extend/structure=untested"):
        gate.check(rm, required=[("image_extend", "structure")])
    result = gate.check(rm, threshold=0.6, override=True)
    assert not result.passed and result.overridden and result.failing == [("image_fill", "text_alignment")]


def test_gate_rejects_foreign_artifacts_and_bad_threshold(tmp_path):
    with ArtifactWriter(tmp_path / "prefs", kind="preferences", stage="test"):
        pass
    with pytest.raises(ArtifactError, match="field 'kind' is 'preferences'; expected reward_model"):
        gate.check(tmp_path / "prefs")
    rm = _reward_model(tmp_path, {})
    with pytest.raises(gate.RewardGateError, match="no accuracy"):
        gate.check(rm)
    with pytest.raises(InputError, match="threshold"):
        gate.check(rm, threshold=1.5)
