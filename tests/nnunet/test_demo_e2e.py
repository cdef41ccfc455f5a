"""End to end: the README's demo drives the real nnU-Net commands with BaBLossTrainer and scores the predictions."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

pytestmark = pytest.mark.e2e

TRAINER_FOLDER = "BaBLossTrainer_BabDemo__nnUNetPlans__2d"


def test_every_step_ran_and_the_stratified_split_reached_nnunet(demo_run) -> None:
    result, messages = demo_run
    for step in ("plan and preprocess", "train", "predict"):
        assert any(message.startswith(f"[{step}] done") for message in messages), messages
    preprocessed = result.dataset_folder.parents[1] / "nnUNet_preprocessed" / result.dataset_folder.name
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    assert len(splits) == 2


def test_stock_predictor_segments_with_our_checkpoint(demo_run) -> None:
    result, _ = demo_run
    predictions = sorted(path.name for path in result.prediction_folder.glob("*.nii.gz"))
    assert predictions == [f"synth_test_{index:03d}.nii.gz" for index in range(4)]
    means = json.loads(result.summary_path.read_text())["segmentation"]["mean_per_label"]
    assert set(means) == {"disc", "bar"}
    # The disc is a bright ellipse on a dark background: even 30 iterations learn it well above chance.
    assert means["disc"]["dice"] > 0.5


def test_training_logged_landmarks_and_wrote_loadable_checkpoints(demo_run) -> None:
    result, _ = demo_run
    fold = result.results_folder / result.dataset_folder.name / TRAINER_FOLDER / "fold_0"
    log_text = "\n".join(path.read_text() for path in fold.glob("training_log_*.txt"))
    assert log_text.count("Landmarks: MRE") == 3  # one line per epoch
    assert (fold / "progress.png").is_file()
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "BaBLossTrainer_BabDemo"
    assert any(key.startswith("heatmap_head.") for key in checkpoint["network_weights"])
    assert len(checkpoint["logging"]["val_mre_mm"]) == 3
    pickle.dumps(checkpoint)
    plans = json.loads((fold.parent / "plans.json").read_text())
    assert plans["bab_landmarks"]["names"][0] == "disc_top"
