"""End to end: simulated gaze on a tiny synthetic dataset → gaze pseudo-label dataset → stock nnU-Net commands.

``nnUNetv2_plan_and_preprocess`` → ``nnUNetv2_train -tr GazeSupTrainer_BabDemo -device cpu`` → ``nnUNetv2_predict``,
all the unmodified nnU-Net entry points (our trainer is found through ``nnUNet_extTrainer``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment, run_nnunet_step, training_environment
from pseudo_labels.gaze.simulator import write_simulated_gaze_csv

DATASET_ID = 611
SIZE = 64
pytestmark = pytest.mark.e2e
CONFIGURATION = "2d_gaze_tiny"


def _add_tiny_configuration(preprocessed: Path) -> None:
    """A 3-stage, 16-64 feature U-Net on the 2d plan's preprocessed data (the default 5-stage, 32-512 feature plan
    is ~10x slower on a shared 2-core CPU and tests nothing more)."""
    plans_path = preprocessed / "nnUNetPlans.json"
    plans = json.loads(plans_path.read_text())
    arch_kwargs = dict(plans["configurations"]["2d"]["architecture"]["arch_kwargs"])
    arch_kwargs.update(
        n_stages=3, features_per_stage=[16, 32, 64], kernel_sizes=[[3, 3]] * 3, strides=[[1, 1], [2, 2], [2, 2]],
        n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[2, 2],
    )
    architecture = {**plans["configurations"]["2d"]["architecture"], "arch_kwargs": arch_kwargs}
    plans["configurations"][CONFIGURATION] = {"inherits_from": "2d", "batch_size": 2, "architecture": architecture}
    plans_path.write_text(json.dumps(plans, indent=2))


def _case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.ogrid[:SIZE, :SIZE]
    centre = rng.uniform(22, 42, size=2)
    radius = rng.uniform(9, 14)
    mask = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    image = np.where(mask, 150.0, 60.0) + rng.normal(0, 8, mask.shape)
    return image.astype(np.float32), mask


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0))
    sitk.WriteImage(image, str(path))


def test_gaze_pseudo_labels_train_and_predict_with_stock_nnunet(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images, test_images = tmp_path / "images", tmp_path / "imagesTs"
    images.mkdir()
    test_images.mkdir()
    masks = {}
    for index in range(8):
        image, mask = _case(rng)
        _write(image, images / f"disc_{index:02d}.nii.gz")
        masks[f"disc_{index:02d}"] = mask
    for index in range(2):
        image, _ = _case(rng)
        _write(image, test_images / f"test_{index:02d}_0000.nii.gz")
    gaze_csv = tmp_path / "gaze.csv"
    write_simulated_gaze_csv(masks, gaze_csv, seed=0, description={"structure": "disc", "dataset": "synthetic"})

    environment = nnunet_environment(tmp_path, os.environ)
    crf = [] if _has_crf() else ["--no-crf"]
    logs = tmp_path / "logs"
    logs.mkdir()
    run_nnunet_step(
        "gaze pseudo labels",
        [sys.executable, "-m", "pseudo_labels.gaze.cli", "-i", str(images), "--gaze", str(gaze_csv), "-d",
         str(DATASET_ID), "-n", "GazeDisc", "--structure", "disc", "--no-progress", *crf],
        environment, logs, print,
    )
    raw = Path(environment["nnUNet_raw"]) / f"Dataset{DATASET_ID}_GazeDisc"
    dataset_json = json.loads((raw / "dataset.json").read_text())
    assert dataset_json["gaze_levels"]["source"]["simulated"] is True
    assert dataset_json["labels"] == {"background": 0, "disc_level_1": [1, 2], "disc_level_2": [2]}
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / "disc_00.nii.gz")))
    assert set(np.unique(label)) <= {0, 1, 2} and (label == 2).any()

    dataset = str(DATASET_ID)
    run_nnunet_step(
        "plan and preprocess",
        [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", dataset, "-c", "2d", "-np", "1", "-npfp", "1"],
        environment, logs, print,
    )
    _add_tiny_configuration(Path(environment["nnUNet_preprocessed"]) / f"Dataset{DATASET_ID}_GazeDisc")
    run_nnunet_step(
        "train",
        [nnunet_command("nnUNetv2_train"), dataset, CONFIGURATION, "0", "-tr", "GazeSupTrainer_BabDemo", "-device",
         "cpu"],
        training_environment(environment), logs, print,
    )
    predictions = tmp_path / "predictions"
    run_nnunet_step(
        "predict",
        [nnunet_command("nnUNetv2_predict"), "-i", str(test_images), "-o", str(predictions), "-d", dataset, "-c",
         CONFIGURATION, "-f", "0", "-tr", "GazeSupTrainer_BabDemo", "-device", "cpu", "-npp", "1", "-nps", "1"],
        environment, logs, print,
    )
    for index in range(2):
        predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(predictions / f"test_{index:02d}.nii.gz")))
        assert predicted.shape == (SIZE, SIZE)
        # The mean-of-levels prediction is written in every region channel: values are 0 or L (= 2), never 1.
        assert set(np.unique(predicted)) <= {0, 2}
    results = (
        Path(environment["nnUNet_results"]) / f"Dataset{DATASET_ID}_GazeDisc"
        / f"GazeSupTrainer_BabDemo__nnUNetPlans__{CONFIGURATION}"
    )
    assert (results / "fold_0" / "checkpoint_final.pth").is_file()
    assert "gaze_levels" in json.loads((results / "dataset.json").read_text())


def _has_crf() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True
