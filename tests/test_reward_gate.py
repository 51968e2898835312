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


def _counted(tmp_path, accuracy, pairs, name="counted"):
    with ArtifactWriter(tmp_path / name, kind="reward_model", stage="test") as art:
        write_json_atomic(art.path / "query_template.json", {"version": "phi-v1"})
        art.metrics["accuracy"] = accuracy
        art.metrics["n_test_pairs"] = pairs
    return tmp_path / name


def test_interval_rule_forgives_a_small_noisy_cell_but_not_a_weak_cell_or_a_weak_model(tmp_path):
    # 17 of 31 pairs (0.548): Wilson 95% [0.378, 0.708] -- not shown to be below 0.6
    acc = {"image_fill": {"aesthetics": 0.75, "text_alignment": 17 / 31}}
    pairs = {"image_fill": {"aesthetics": 100, "text_alignment": 31}}
    rm = _counted(tmp_path, acc, pairs)
    ok = gate.check(rm, threshold=0.6)
    assert ok.passed and ok.rule == "interval" and not ok.failing
    assert ok.pooled == pytest.approx((75 + 17) / 131)
    low, high = ok.intervals[("image_fill", "text_alignment")]
    assert low == pytest.approx(0.378, abs=1e-3) and high == pytest.approx(0.708, abs=1e-3)
    # the point rule reads the same figures as a failure
    with pytest.raises(gate.RewardGateError, match=r"image_fill/text_alignment=0\.548 \(31 pairs"):
        gate.check(rm, threshold=0.6, rule="point")
    # the same accuracy on 400 pairs is below 0.6 beyond its interval
    rm = _counted(tmp_path, acc, {"image_fill": {"aesthetics": 100, "text_alignment": 400}}, "big")
    with pytest.raises(
        gate.RewardGateError,
        match=r"below 0\.6 for image_fill/text_alignment=0\.548 \(400 pairs.*interval rule",
    ):
        gate.check(rm, threshold=0.6)
    # every cell near chance on small test sets: no cell is shown below 0.6, the pooled figure is
    chance = _counted(
        tmp_path,
        {"image_fill": {"aesthetics": 0.5, "text_alignment": 0.52}},
        {"image_fill": {"aesthetics": 30, "text_alignment": 25}},
        "chance",
    )
    with pytest.raises(gate.RewardGateError, match=r"pooled test accuracy 0\.509 over 55 pairs") as e:
        gate.check(chance, threshold=0.6)
    assert "for image_fill" not in str(e.value) and "\n" not in str(e.value)
    result = gate.check(chance, threshold=0.6, override=True)
    assert result.overridden and result.pooled_failed and not result.failing
    with pytest.raises(InputError, match="rule: expected one of interval, point"):
        gate.check(chance, rule="loose")
