"""End to end: the README's demo drives the real nnU-Net commands with BaBLossTrainer, predicts segmentations and
landmarks with nnUNetv2_bab_predict, and scores both next to the mean-training-shape baselines (plus two fast checks
of the demo's settings and report)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from nnunet_babloss.cli import demo as demo_cli
from nnunet_babloss.cli import predict as predict_cli
from nnunet_babloss.apps.demo import BASELINES, DemoResult, DemoSettings, format_report, nnunet_command, nnunet_environment
from nnunet_babloss.core.landmarks.io import read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec

TRAINER_FOLDER = "BaBLossTrainer_BabDemo__nnUNetPlans__2d"
TEST_CASES = [f"synth_test_{index:03d}" for index in range(4)]
NUM_LANDMARKS = 6


def test_the_demo_uses_the_predictors_default_threshold_and_rejects_a_wrong_one(tmp_path: Path) -> None:
    assert DemoSettings(tmp_path).landmark_threshold == demo_cli.DEFAULT_LANDMARK_THRESHOLD
    assert demo_cli.DEFAULT_LANDMARK_THRESHOLD == predict_cli.DEFAULT_LANDMARK_THRESHOLD
    assert demo_cli.build_parser().parse_args(["--landmark-threshold", "0.1"]).landmark_threshold == 0.1
    with pytest.raises(ValueError, match="landmark_threshold must be in"):
        DemoSettings(tmp_path, landmark_threshold=1.5)


def test_the_report_lists_segmentation_then_the_model_and_baseline_landmark_rows(tmp_path: Path) -> None:
    def landmarks(mre: float, found: int) -> dict:
        return {"num_cases": 4, "mre_mm": mre, "sd_mm": 0.5, "n_evaluated": found, "n_missed": 24 - found,
                "sdr": {"2.0": 0.5, "2.5": 0.6, "3.0": 0.7, "4.0": None}}

    summary = {"nsd_tolerance_mm": 1.0, "landmarks": landmarks(1.25, 22),
               "segmentation": {"num_cases": 4, "mean_per_label": {"disc": {"dice": 0.9, "hd95_mm": None, "nsd": 1.0}}}}
    result = DemoResult(tmp_path, tmp_path, tmp_path, tmp_path / "summary.json", summary, trainer="MyTrainer",
                        landmark_threshold=0.25, baseline_summaries={"mean training shape": landmarks(3.5, 24)})
    lines = format_report(result).splitlines()
    assert lines[0] == "Segmentation, mean over 4 test cases:"
    assert lines[2].split() == ["disc", "0.900", "n/a", "1.000"]
    assert "landmark threshold 0.25" in lines[4]
    assert lines[6].split() == ["MyTrainer", "22/24", "2", "1.25", "±", "0.50", "0.50", "/", "0.60", "/", "0.70", "/", "n/a"]
    assert lines[7].split()[:6] == ["mean", "training", "shape", "24/24", "0", "3.50"]


@pytest.mark.e2e
def test_every_step_ran_and_the_stratified_split_reached_nnunet(demo_run) -> None:
    result, messages = demo_run
    for step in ("plan and preprocess", "train", "predict", "evaluate"):
        assert any(message.startswith(f"[{step}] done") for message in messages), messages
    assert any(message.startswith("[predict] nnUNetv2_bab_predict ") for message in messages), messages
    assert set(result.step_seconds) == {"plan and preprocess", "train", "predict", "evaluate"}
    assert result.total_seconds >= sum(result.step_seconds.values())
    preprocessed = result.dataset_folder.parents[1] / "nnUNet_preprocessed" / result.dataset_folder.name
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    assert len(splits) == 2


@pytest.mark.e2e
def test_our_predictor_wrote_segmentations_and_landmark_files(demo_run) -> None:
    result, _ = demo_run
    spec = LandmarkSpec.from_dataset_json(result.dataset_folder / "dataset.json")
    assert sorted(path.name for path in result.prediction_folder.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in TEST_CASES]
    for case in TEST_CASES:
        landmarks = read_landmarks(result.prediction_folder / f"{case}.json", spec)
        assert landmarks.confidence is not None and landmarks.points_mm.shape == (NUM_LANDMARKS, 2)


@pytest.mark.e2e
def test_segmentations_are_byte_identical_to_the_stock_nnunet_predict(demo_run, tmp_path: Path) -> None:
    """The demo uses our predictor; nnU-Net's own nnUNetv2_predict still segments with our checkpoint, identically."""
    result, _ = demo_run
    environment = nnunet_environment(result.dataset_folder.parents[1], os.environ)
    stock = tmp_path / "stock"
    completed = subprocess.run(
        [nnunet_command("nnUNetv2_predict"), "-i", str(result.dataset_folder / "imagesTs"), "-o", str(stock), "-d",
         "987", "-c", "2d", "-f", "0", "-tr", "BaBLossTrainer_BabDemo", "-device", "cpu", "-npp", "1", "-nps", "1",
         "--disable_progress_bar"],
        env=environment, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    for case in TEST_CASES:
        expected, got = stock / f"{case}.nii.gz", result.prediction_folder / f"{case}.nii.gz"
        expected_image, got_image = sitk.ReadImage(str(expected)), sitk.ReadImage(str(got))
        assert np.array_equal(sitk.GetArrayFromImage(expected_image), sitk.GetArrayFromImage(got_image))
        for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection", "GetPixelIDValue"):
            assert getattr(expected_image, getter)() == getattr(got_image, getter)(), getter
        assert gzip.decompress(expected.read_bytes()) == gzip.decompress(got.read_bytes())


@pytest.mark.e2e
def test_segmentation_and_landmark_metrics_are_reported_next_to_the_baselines(demo_run) -> None:
    result, _ = demo_run
    summary = json.loads(result.summary_path.read_text())
    means = summary["segmentation"]["mean_per_label"]
    assert set(means) == {"disc", "bar"}
    # The disc is a bright ellipse on a dark background: 60 iterations learn it well above chance.
    assert means["disc"]["dice"] > 0.5
    landmarks = summary["landmarks"]
    assert landmarks["num_cases"] == len(TEST_CASES)
    assert landmarks["n_evaluated"] + landmarks["n_missed"] == len(TEST_CASES) * NUM_LANDMARKS
    assert set(landmarks["sdr"]) == {"2.0", "2.5", "3.0", "4.0"}
    assert set(result.baseline_summaries) == set(BASELINES)
    for name, baseline in result.baseline_summaries.items():
        # A mean shape places every landmark: nothing is missed, everything is scored.
        assert baseline["n_evaluated"] == len(TEST_CASES) * NUM_LANDMARKS and baseline["n_missed"] == 0, name
        assert (result.baseline_folders[name] / "evaluation" / "summary.json").is_file()
    report = format_report(result)
    assert f"landmark threshold {result.landmark_threshold:g}" in report
    for row in ("BaBLossTrainer_BabDemo", *BASELINES, "disc", "bar"):
        assert f"  {row} " in report, report


@pytest.mark.e2e
def test_the_demo_finds_its_landmarks_and_beats_the_mean_shape(demo_run) -> None:
    """Issue 15's target for the demo: >= 90 % of the test landmarks found, MRE <= 4 mm, at the default threshold.

    The seeded run (dataset seed 0, schedule seed 0, single-threaded augmentation) found all 24 with MRE 0.95 mm and
    every heatmap peak >= 0.84, far from the 0.3 threshold; with other schedule seeds the lowest of 96 peaks on 16
    test cases was 0.74-0.80 (nnunet_babloss/trainers.py), so the bound is not a coin flip.
    """
    result, _ = demo_run
    landmarks = result.summary["landmarks"]
    total = len(TEST_CASES) * NUM_LANDMARKS
    assert result.landmark_threshold == 0.3
    assert landmarks["n_evaluated"] >= 0.9 * total, landmarks
    assert landmarks["mre_mm"] <= 4.0, landmarks
    assert landmarks["mre_mm"] < result.baseline_summaries["mean training shape"]["mre_mm"]


@pytest.mark.e2e
def test_overlays_show_the_predicted_landmarks(demo_run) -> None:
    result, _ = demo_run
    assert result.overlay_folder == result.summary_path.parent / "overlays"
    assert sorted(path.name for path in result.overlay_folder.glob("*.png")) == [f"{case}.png" for case in TEST_CASES]
    for case in TEST_CASES:
        pixels = np.asarray(Image.open(result.overlay_folder / f"{case}.png").convert("RGB")).astype(int)
        # Predicted landmarks are drawn in #ff2020 (overlays.py), reference landmarks in #20ff40. The legend (which
        # shows both markers) sits in the lower right corner; the four disc landmarks lie in the upper half.
        red, green, blue = np.moveaxis(pixels[: pixels.shape[0] // 2], -1, 0)
        assert ((red > 180) & (green < 100) & (blue < 100)).sum() > 20, case  # predicted: about 80 pixels
        assert ((green > 180) & (red < 100) & (blue < 120)).sum() > 20, case  # reference: about 80 pixels


@pytest.mark.e2e
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
