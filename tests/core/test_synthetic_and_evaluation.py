"""The synthetic dataset obeys the data model, and the evaluation scores it against itself and a corrupted copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.core.evaluation import evaluate_folders
from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.apps.synthetic import LABELS, SyntheticDatasetConfig, generate_synthetic_dataset

SMALL = SyntheticDatasetConfig(num_mask_only=2, num_landmark_only=2, num_both=2, num_test=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("raw"), 990, config=SMALL)


def test_layout_and_partial_annotations(dataset: Path) -> None:
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    spec = LandmarkSpec.from_dataset_json(dataset_json)
    kinds = dataset_json["annotations"]
    assert sorted(kinds.values()) == ["both"] * 2 + ["landmark_only"] * 2 + ["mask_only"] * 2
    for case, kind in kinds.items():
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "labelsTr" / f"{case}.nii.gz")))
        assert (np.all(labels == LABELS["ignore"])) == (kind == "landmark_only")
        assert (dataset / "landmarksTr" / f"{case}.json").is_file() == (kind != "mask_only")
    splits = json.loads((dataset / "splits_final.json").read_text())
    for fold in splits:
        assert {kinds[case] for case in fold["val"]} == {"both", "landmark_only", "mask_only"}
    assert spec.num_landmarks == 6 and spec.mirror_permutation() == (0, 1, 3, 2, 5, 4)


def test_landmarks_lie_on_the_boundary_of_their_organ(dataset: Path) -> None:
    """Map world landmarks to pixels with the image geometry; the mask's boundary map there is ~1."""
    spec = LandmarkSpec.from_dataset_json(dataset / "dataset.json")
    bridge = spec.bridge_map()
    for case_path in sorted((dataset / "labelsTs").glob("*.nii.gz")):
        image = sitk.ReadImage(str(case_path))
        labels = sitk.GetArrayFromImage(image)
        landmarks = read_landmarks(dataset / "landmarksTs" / case_path.name.replace(".nii.gz", ".json"), spec)
        index = ImageGeometry.from_sitk(image).world_to_index(landmarks.points_mm)
        spacing = image.GetSpacing()[::-1]
        for name, (row, col) in zip(spec.names, index):
            mask = labels == LABELS[bridge[name][0]]
            proximity = boundary_proximity_map(
                __import__("torch").from_numpy(mask)[None, None], 2.0, spacing
            )[0, 0].numpy()
            # The exact landmark is on the continuous boundary, so its nearest pixel is within ~1 pixel of the
            # pixel boundary: proximity >= 1 - 1.0 mm / 2 mm.
            assert proximity[int(round(row)), int(round(col))] >= 0.45, (case_path.name, name)


def test_existing_dataset_is_not_overwritten(dataset: Path) -> None:
    with pytest.raises(FileExistsError, match="exists already"):
        generate_synthetic_dataset(dataset.parent, 990, config=SMALL)


def test_evaluation_of_the_references_themselves_is_perfect(dataset: Path, tmp_path: Path) -> None:
    prediction = tmp_path / "prediction"
    shutil.copytree(dataset / "labelsTs", prediction)
    for path in (dataset / "landmarksTs").glob("*.json"):
        shutil.copy(path, prediction / path.name)
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    result = evaluate_folders(prediction, dataset_json, dataset / "labelsTs", dataset / "landmarksTs", tmp_path / "out")
    means = result.summary["segmentation"]["mean_per_label"]
    assert means["disc"]["dice"] == 1.0 and means["bar"]["hd95_mm"] == 0.0
    assert result.summary["landmarks"]["mre_mm"] == 0.0 and result.summary["landmarks"]["sdr"]["2.0"] == 1.0
    assert (tmp_path / "out" / "segmentation_per_case.csv").is_file()
    assert json.loads(result.summary_path.read_text()) == result.summary


def test_evaluation_counts_shifted_and_missed_landmarks(dataset: Path, tmp_path: Path) -> None:
    spec = LandmarkSpec.from_dataset_json(dataset / "dataset.json")
    prediction = tmp_path / "prediction"
    prediction.mkdir()
    for path in sorted((dataset / "landmarksTs").glob("*.json")):
        reference = read_landmarks(path, spec)
        points = reference.points_mm + np.array([3.0, 4.0])  # 5 mm error on every landmark
        points[0] = np.nan  # first landmark missed
        write_landmarks(prediction / path.name, LandmarkSet(reference.names, points))
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    summary = evaluate_folders(prediction, dataset_json, None, dataset / "landmarksTs").summary["landmarks"]
    assert summary["n_missed"] == 2 and summary["n_evaluated"] == 10
    assert summary["mre_mm"] == pytest.approx(5.0) and summary["sdr"]["4.0"] == 0.0
    rows = (prediction / "landmarks_per_case.csv").read_text().splitlines()
    assert sum(row.endswith(",missed") for row in rows) == 2


def test_evaluation_reports_missing_predictions_and_geometry_mismatch(dataset: Path, tmp_path: Path) -> None:
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_folders(empty, dataset_json, dataset / "labelsTs")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for path in (dataset / "labelsTs").glob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(image[:-1, :], str(wrong / path.name))
    with pytest.raises(ValueError, match="geometry mismatch"):
        evaluate_folders(wrong, dataset_json, dataset / "labelsTs")
    with pytest.raises(ValueError, match="reference"):
        evaluate_folders(wrong, dataset_json)
