"""End to end: DenseSegTrainer_BabDemo trains through stock nnUNetv2_train on the demo dataset; our predictor reads
landmarks (and a landmark defined after training) out of its uv maps; the stock predictor still segments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment
from nnunet_babloss.core.evaluation import evaluate_folders
from nnunet_babloss.core.landmarks.io import read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec

pytestmark = pytest.mark.e2e

TRAINER = "DenseSegTrainer_BabDemo"


@pytest.fixture(scope="module")
def denseseg_model(train_on_demo_dataset) -> Path:
    """Train fold 0 on the demo's preprocessed dataset; returns the model folder."""
    return train_on_demo_dataset(TRAINER)


def test_training_stored_the_template_and_a_uv_head(denseseg_model: Path) -> None:
    plans = json.loads((denseseg_model / "plans.json").read_text())
    structures = plans["bab_denseseg"]["structures"]
    assert [(s["label_name"], s["label_value"]) for s in structures] == [("disc", 1), ("bar", 2)]
    for structure in structures:
        uv = np.asarray(structure["canonical_uv"])
        assert uv.min() >= -1e-9 and uv.max() <= 1 + 1e-9
    checkpoint = torch.load(denseseg_model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["network_weights"]["heatmap_head.3.weight"].shape[0] == 4  # (u, v) x 2 structures
    assert checkpoint["inference_allowed_mirroring_axes"] is None
    log = "\n".join(path.read_text() for path in (denseseg_model / "fold_0").glob("training_log_*.txt"))
    assert log.count("Landmarks: MRE") == 3 and "DenseSeg template from" in log
    # The end-of-training validation went through our predictor and scored the fold's landmarks.
    assert (denseseg_model / "fold_0" / "validation" / "landmark_evaluation" / "summary.json").is_file()


def test_our_predictor_writes_landmarks_and_queried_landmarks(demo_run, nnunet_paths: Path, denseseg_model: Path,
                                                             tmp_path: Path) -> None:
    result, _ = demo_run
    plans = json.loads((denseseg_model / "plans.json").read_text())
    bar = plans["bab_denseseg"]["structures"][1]
    queries = {"disc": {"disc_centre": [0.5, 0.5], "top_again": "disc_top"},
               "bar": {"bar_middle": np.mean(bar["canonical_uv"], axis=0).tolist()}}
    query_file = tmp_path / "queries.json"
    query_file.write_text(json.dumps(queries))
    output = tmp_path / "ours"
    command = [sys.executable, "-m", "nnunet_babloss.cli.predict", "-i", str(result.dataset_folder / "imagesTs"),
               "-o", str(output), "-d", "987", "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu",
               "-npp", "0", "-nps", "0", "--disable_progress_bar", "--query-uv", str(query_file)]
    completed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    spec = LandmarkSpec.from_dataset_json(result.dataset_folder / "dataset.json")
    cases = sorted(path.name.removesuffix(".nii.gz") for path in output.glob("*.nii.gz"))
    assert len(cases) == 4
    assert json.loads((output / "denseseg_template.json").read_text())["structures"][0]["label_name"] == "disc"
    for case in cases:
        landmarks = read_landmarks(output / f"{case}.json", spec)
        queried = json.loads((output / "queried_landmarks" / f"{case}.json").read_text())
        assert set(queried["landmarks"]) == {"disc_centre", "top_again", "bar_middle"}
        # A query naming a trained landmark is read out exactly like it.
        if landmarks.present[spec.index("disc_top")]:
            np.testing.assert_allclose(queried["landmarks"]["top_again"], landmarks.points_mm[spec.index("disc_top")], atol=1e-6)
        image = sitk.ReadImage(str(output / f"{case}.nii.gz"))
        for point in landmarks.points_mm[landmarks.present]:
            index = np.array(image.TransformPhysicalPointToContinuousIndex(point.tolist()))
            assert np.all(index >= -0.5) and np.all(index <= np.array(image.GetSize()) - 0.5)
    # nnUNetv2_bab_evaluate's library function scores the files unchanged.
    summary = evaluate_folders(
        output, json.loads((result.dataset_folder / "dataset.json").read_text()),
        reference_labels_folder=result.dataset_folder / "labelsTs",
        reference_landmarks_folder=result.dataset_folder / "landmarksTs", output_folder=tmp_path / "evaluation",
    ).summary
    landmark_summary = summary["landmarks"]
    # Every one of the 4 x 6 reference landmarks is evaluated or reported missed (the disc is always predicted).
    assert landmark_summary["n_evaluated"] + landmark_summary["n_missed"] == 24
    assert landmark_summary["n_evaluated"] >= 16 and np.isfinite(landmark_summary["mre_mm"])
    assert summary["segmentation"]["mean_per_label"]["disc"]["dice"] > 0.5


def test_stock_predictor_segments_with_the_denseseg_checkpoint(demo_run, nnunet_paths: Path, denseseg_model: Path,
                                                              tmp_path: Path) -> None:
    result, _ = demo_run
    output, inputs = tmp_path / "stock", tmp_path / "one_case"
    inputs.mkdir()  # one case is enough to show the stock predictor builds and runs the network
    image = sorted((result.dataset_folder / "imagesTs").glob("*_0000.nii.gz"))[0]
    (inputs / image.name).write_bytes(image.read_bytes())
    command = [nnunet_command("nnUNetv2_predict"), "-i", str(inputs), "-o", str(output),
               "-d", "987", "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1"]
    environment = nnunet_environment(nnunet_paths, os.environ)
    completed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600, env=environment)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert [path.name for path in output.glob("*.nii.gz")] == [image.name.replace("_0000", "")]
