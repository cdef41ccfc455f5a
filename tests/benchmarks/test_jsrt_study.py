"""The JSRT study script: its split and configuration logic (fast) and its --smoke mode end to end (slow)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import jsrt_study  # noqa: E402
import study_common  # noqa: E402


def test_split_is_stratified_disjoint_and_reproducible() -> None:
    groups = {f"c{i:03d}": kind for i, kind in enumerate(["mask_only"] * 40 + ["landmark_only"] * 40 + ["both"] * 20)}
    train, val = jsrt_study.split_cases(groups, 0.2, seed=3, max_train_per_group=None, max_val_per_group=None)
    assert not set(train) & set(val) and set(train) | set(val) == set(groups)
    assert sorted(val.values()).count("mask_only") == 8 and list(val.values()).count("both") == 4
    assert (train, val) == jsrt_study.split_cases(groups, 0.2, 3, None, None)
    assert val != jsrt_study.split_cases(groups, 0.2, 4, None, None)[1]


def test_study_configuration_halves_the_patch_down_to_about_four_pixels() -> None:
    plans = {"configurations": {"2d": {"architecture": {"network_class_name": "X", "arch_kwargs": {
        "n_stages": 8, "features_per_stage": [32, 64, 128, 256, 512, 512, 512, 512], "kernel_sizes": [[3, 3]] * 8,
        "strides": [[1, 1]] + [[2, 2]] * 7, "n_conv_per_stage": [2] * 8, "n_conv_per_stage_decoder": [2] * 7}}}}}
    configuration = study_common.study_configuration(plans, 1.4, (256, 256), 4)
    kwargs = configuration["architecture"]["arch_kwargs"]
    assert kwargs["n_stages"] == 7 and len(kwargs["strides"]) == 7 and 256 / 2 ** 6 == 4
    assert kwargs["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512]
    assert configuration["spacing"] == [1.4, 1.4] and configuration["batch_size"] == 4
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["n_stages"] == 8  # not modified


def test_landmark_groups_come_from_the_name_prefix() -> None:
    assert [study_common.landmark_group(n) for n in ("RL_03", "LCLA_22", "nasion", "l_1x")] == ["RL", "LCLA", "nasion", "l_1x"]


def test_generated_trainers_carry_schedule_seed_and_heatmap_settings(tmp_path) -> None:
    schedule = study_common.Schedule(3, 5, 1)
    args = argparse.Namespace(heatmap_loss="mse", sigma_vox=3.0, augmentation="nnunet")
    attributes = study_common.heatmap_attributes(args)
    folder = study_common.write_study_trainers(tmp_path, schedule, [0, 2], ["nnUNetTrainer", "BaBLossTrainer"], attributes)
    namespace: dict = {}
    exec(compile((folder / "study_trainers.py").read_text(), "study_trainers.py", "exec"), namespace)
    babloss = namespace["BaBLossTrainer_Study_s2"]
    assert babloss.heatmap_loss_kind == "mse" and babloss.schedule_seed == 2 and babloss.schedule_num_epochs == 3
    assert babloss.heatmap_min_sigma_vox == 3.0 and babloss.landmark_rotation_deg is None
    assert babloss.landmark_scaling is None and not babloss.image_centred_patches and not babloss.mirror_only_lateral
    assert "heatmap_loss_kind" not in vars(namespace["nnUNetTrainer_Study_s0"])
    # Without options the generated classes keep the trainer's defaults, and the report says what they are.
    defaults = argparse.Namespace(heatmap_loss=None, sigma_vox=None, augmentation="landmark")
    assert study_common.heatmap_attributes(defaults) == {}
    effective = study_common.effective_heatmap_settings({})
    assert effective["heatmap_loss_kind"] == "bce" and effective["heatmap_min_sigma_vox"] == 4.0
    assert effective["landmark_rotation_deg"] == 10.0 and effective["landmark_scaling"] == [0.9, 1.1]
    with pytest.raises(ValueError, match="heatmap_loss"):
        study_common.write_study_trainers(tmp_path, schedule, [0], ["HeatmapTrainer"], {"heatmap_loss_kind": "l2"})


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path, monkeypatch) -> None:
    environment = {"nnUNet_results": str(tmp_path / "results"), "nnUNet_raw": str(tmp_path / "raw")}
    (tmp_path / "raw" / "Dataset701_X").mkdir(parents=True)
    folder = study_common.model_folder(environment, 701, "HeatmapTrainer_Study_s0")
    folder.mkdir(parents=True)
    (folder / "checkpoint_final.pth").write_bytes(b"")
    settings = {"schedule": [3, 5, 1], "heatmap_loss": "bce"}
    (folder / "study_wall_time.json").write_text(json.dumps({"seconds": 12.5, "device": "cpu", "settings": settings}))
    monkeypatch.setattr(study_common, "run_logged", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert study_common.train(701, "HeatmapTrainer_Study_s0", environment, "cpu", tmp_path, settings) == 12.5
    with pytest.raises(RuntimeError, match="another --work-dir"):
        study_common.train(701, "HeatmapTrainer_Study_s0", environment, "cpu", tmp_path, {**settings, "heatmap_loss": "mse"})


def test_a_model_trained_with_other_defaults_is_flagged_from_its_debug_json(tmp_path, capsys) -> None:
    """The report states the checkout's defaults; a reused run or a code snapshot may have trained with others.
    nnU-Net's debug.json (every attribute as text) says what the model used; a difference must be a WARNING."""
    stated = study_common.effective_heatmap_settings({})
    recorded = {name: str(value) for name, value in stated.items()}
    recorded["landmark_scaling"] = str(tuple(stated["landmark_scaling"]))  # as nnU-Net writes a tuple
    (tmp_path / "debug.json").write_text(json.dumps({**recorded, "unrelated": "x"}))
    assert study_common.trained_heatmap_settings(tmp_path) == stated
    assert study_common.settings_warning("landmarks_only seed 0", stated, tmp_path) is None
    recorded["heatmap_min_sigma_vox"] = "5.0"
    (tmp_path / "debug.json").write_text(json.dumps(recorded))
    line = study_common.settings_warning("landmarks_only seed 0", stated, tmp_path)
    assert line is not None and line.startswith("WARNING: landmarks_only seed 0") and "'heatmap_min_sigma_vox': 5.0" in line
    assert line in capsys.readouterr().err
    assert study_common.settings_warning("no debug.json", stated, tmp_path / "missing") is None


@pytest.mark.e2e
def test_smoke_run_scores_validation_and_a_separate_test_folder(shared_data, tmp_path) -> None:
    """Two variants on one dataset (one planning), the 8-case fixture as the separate test folder."""
    results = tmp_path / "work" / "results"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "jsrt_study.py"), "--work-dir", str(tmp_path / "work"), "--smoke",
         "--variants", "mix_heatmap", "mix_babloss", "--data-root", str(shared_data),
         "--test-data", str(shared_data / "jsrt_fixture_256")],
        check=True, capture_output=True, text=True, encoding="utf-8", errors="replace",
    )
    report = json.loads((results / "jsrt_study.json").read_text())
    assert report["evaluation_sets"] == ["validation", "test"]
    assert report["train_counts"]["mix_babloss"] == {"mask_only": 3, "landmark_only": 3, "both": 3}
    for variant in ("mix_heatmap", "mix_babloss"):
        for split, cases in (("validation", 3), ("test", 8)):
            seed = report["table"][variant][split]["seeds"][0]
            assert seed["landmarks"]["all"]["n"] == 166 * cases  # threshold 0: every landmark is scored
            assert set(seed["segmentation"]) == set(jsrt_study.STRUCTURES)
    markdown = (results / "jsrt_study.md").read_text()
    assert "| mix_babloss |" in markdown and "## test" in markdown
    # The mean training shape of the 6 landmark-annotated training cases of 'mix', beside both models, both splits.
    (plain,) = [row for row in report["baselines"] if not row["aligned"]]
    assert plain["variants"] == ["mix_heatmap", "mix_babloss"] and plain["num_training_cases"] == 6
    assert len(report["baselines"]) == 2  # and its similarity-aligned variant
    for row in report["baselines"]:
        for split, cases in (("validation", 3), ("test", 8)):
            landmarks = row["scores"][split]["landmarks"]["all"]
            assert landmarks["n"] == 166 * cases and math.isfinite(landmarks["mre"]) and landmarks["mre"] > 0
        assert f"| {row['label']} (6 training cases of mix_heatmap, mix_babloss) |" in markdown
    # A loud warning exactly where a model is worse than its mean shape.
    for variant in ("mix_heatmap", "mix_babloss"):
        for split in ("validation", "test"):
            worse = (report["table"][variant][split]["seeds"][0]["landmarks"]["all"]["mre"]
                     > plain["scores"][split]["landmarks"]["all"]["mre"])
            warned = any(line.startswith(f"WARNING: {variant} ({split})") for line in markdown.splitlines())
            assert warned == worse and (f"WARNING: {variant} ({split})" in completed.stderr) == worse
    assert (results / "jsrt_study_learning_curves.png").stat().st_size > 0
