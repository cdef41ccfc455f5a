"""``evaluate_folders`` on real JSRT masks and landmarks, checked against an independent brute-force computation.

References: 4 cases of ``jsrt_fixture_256`` (256 x 256, 1.4 mm) written as NIfTI with a world origin. Predictions:
the reference label maps shifted by a few pixels (a different shift per case) with the heart eroded, and the
reference landmarks moved by random offsets with some removed (missed) or added (spurious). The independent
computation finds surfaces by comparing every pixel with its 4 neighbours and measures distances with a k-d tree,
instead of the erosion + Euclidean distance transform of :mod:`nnunet_babloss.core.metrics`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from dataset_conversion.landmark_sources import jsrt_pixel_centres
from nnunet_babloss.core.evaluation import SDR_THRESHOLDS_MM, evaluate_folders
from nnunet_babloss.core.landmarks.io import LandmarkSet, read_landmarks, write_landmarks
from nnunet_babloss.core.overlays import overlay_slices, write_case_overlays

CASES = ("JPCLN001", "JPCLN002", "JPCNN001", "JPCNN002")
SPACING_MM = 1.4
ORIGIN_MM = (-150.0, 20.0)
LABELS = {"background": 0, "right_lung": 1, "left_lung": 2, "heart": 3, "right_clavicle": 4, "left_clavicle": 5,
          "ignore": 6}
NSD_TOLERANCE_MM = 2.0
STORED_SPACING_MM = float(np.float32(SPACING_MM))  # NIfTI headers hold float32: 1.399999976 mm


def _write_label_map(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((SPACING_MM, SPACING_MM))
    image.SetOrigin(ORIGIN_MM)
    sitk.WriteImage(image, str(path))


def _reference_landmarks(root: Path, case: str) -> LandmarkSet:
    content = json.loads((root / "landmarks" / f"{case}.json").read_text())
    names, points = [], []
    for group, pixels in content["landmarks"].items():
        for number, (column, row) in enumerate(jsrt_pixel_centres(np.asarray(pixels, dtype=np.float64))):
            names.append(f"{group}_{number:02d}")
            points.append((ORIGIN_MM[0] + SPACING_MM * column, ORIGIN_MM[1] + SPACING_MM * row))
    return LandmarkSet(tuple(names), np.array(points))


@pytest.fixture(scope="module")
def jsrt(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = shared_data / "jsrt_fixture_256"
    work = tmp_path_factory.mktemp("jsrt_eval")
    folders = {name: work / name for name in ("ref_labels", "ref_landmarks", "pred", "images")}
    for folder in folders.values():
        folder.mkdir()
    rng = np.random.default_rng(0)
    truth: dict = {"labels": {}, "predicted_labels": {}, "landmarks": {}, "predicted_landmarks": {}}
    for number, case in enumerate(CASES):
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labels" / f"{case}.png")))
        prediction = np.roll(reference, shift=(number + 1, -number), axis=(0, 1))
        heart = prediction == 3
        prediction[heart & ~ndimage.binary_erosion(heart, iterations=2)] = 0
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "images" / f"{case}.png")))
        _write_label_map(reference, folders["ref_labels"] / f"{case}.nii.gz")
        _write_label_map(prediction, folders["pred"] / f"{case}.nii.gz")
        _write_label_map(image, folders["images"] / f"{case}_0000.nii.gz")
        truth["labels"][case], truth["predicted_labels"][case] = reference, prediction

        landmarks = _reference_landmarks(root, case)
        points = landmarks.points_mm + rng.normal(0.0, 2.0, landmarks.points_mm.shape)
        points[rng.random(len(points)) < 0.1] = np.nan  # ~10 % missed
        reference_points = landmarks.points_mm.copy()
        if number == 0:
            reference_points[:3] = np.nan  # reference absent, prediction present: spurious
        write_landmarks(folders["ref_landmarks"] / f"{case}.json", LandmarkSet(landmarks.names, reference_points))
        confidence = rng.uniform(0.3, 1.0, len(points))
        write_landmarks(folders["pred"] / f"{case}.json", LandmarkSet(landmarks.names, points, confidence))
        truth["landmarks"][case], truth["predicted_landmarks"][case] = reference_points, points
    # A mask-less case (reference all ignore): it must get no segmentation metrics.
    ignored = np.full_like(truth["labels"][CASES[0]], LABELS["ignore"])
    _write_label_map(ignored, folders["ref_labels"] / "unlabelled.nii.gz")
    _write_label_map(truth["predicted_labels"][CASES[0]], folders["pred"] / "unlabelled.nii.gz")
    dataset_json = {"labels": LABELS, "file_ending": ".nii.gz", "channel_names": {"0": "xray"}}
    result = evaluate_folders(
        folders["pred"], dataset_json, folders["ref_labels"], folders["ref_landmarks"], work / "out",
        nsd_tolerance_mm=NSD_TOLERANCE_MM,
    )
    return {"work": work, "folders": folders, "truth": truth, "result": result, "dataset_json": dataset_json}


def _surface_points_mm(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (outside the array counts as outside), in mm."""
    padded = np.pad(mask, 1, constant_values=False)
    centre = padded[1:-1, 1:-1]
    exposed = ~padded[:-2, 1:-1] | ~padded[2:, 1:-1] | ~padded[1:-1, :-2] | ~padded[1:-1, 2:]
    return np.argwhere(centre & exposed) * STORED_SPACING_MM


def _brute_force(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    dice = 2 * np.count_nonzero(prediction & reference) / (np.count_nonzero(prediction) + np.count_nonzero(reference))
    p, r = _surface_points_mm(prediction), _surface_points_mm(reference)
    p_to_r, _ = cKDTree(r).query(p)
    r_to_p, _ = cKDTree(p).query(r)
    hd95 = max(np.percentile(p_to_r, 95), np.percentile(r_to_p, 95))
    slack = NSD_TOLERANCE_MM * (1 + 1e-9)
    nsd = (np.count_nonzero(p_to_r <= slack) + np.count_nonzero(r_to_p <= slack)) / (len(p) + len(r))
    return {"dice": dice, "hd95_mm": hd95, "nsd": nsd}


def test_segmentation_metrics_agree_with_brute_force(jsrt: dict) -> None:
    with open(jsrt["work"] / "out" / "segmentation_per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["case"] for row in rows} == set(CASES)  # the all-ignore case is not scored
    assert len(rows) == len(CASES) * 5
    for row in rows:
        value = LABELS[row["label"]]
        expected = _brute_force(
            jsrt["truth"]["predicted_labels"][row["case"]] == value, jsrt["truth"]["labels"][row["case"]] == value
        )
        for metric, number in expected.items():
            assert float(row[metric]) == pytest.approx(number, rel=1e-9, abs=1e-12), (row["case"], row["label"], metric)
    segmentation = jsrt["result"].summary["segmentation"]
    assert segmentation["num_cases"] == len(CASES) and segmentation["num_cases_without_mask"] == 1
    heart_dice = [float(row["dice"]) for row in rows if row["label"] == "heart"]
    assert segmentation["mean_per_label"]["heart"]["dice"] == pytest.approx(np.mean(heart_dice))
    assert 0.5 < min(heart_dice) < 1.0  # a real, imperfect overlap: the comparison is not trivial


def test_landmark_metrics_agree_with_brute_force(jsrt: dict) -> None:
    predicted = np.stack([jsrt["truth"]["predicted_landmarks"][case] for case in CASES])
    reference = np.stack([jsrt["truth"]["landmarks"][case] for case in CASES])
    p_present, r_present = ~np.isnan(predicted[..., 0]), ~np.isnan(reference[..., 0])
    both = p_present & r_present
    errors = np.sqrt(((predicted - reference) ** 2).sum(-1))[both]
    summary = jsrt["result"].summary["landmarks"]
    assert summary["n_evaluated"] == both.sum() and summary["num_cases"] == len(CASES)
    assert summary["n_missed"] == np.count_nonzero(r_present & ~p_present) > 0
    assert summary["n_spurious"] == np.count_nonzero(p_present & ~r_present) > 0
    assert summary["mre_mm"] == pytest.approx(errors.mean()) and summary["sd_mm"] == pytest.approx(errors.std(ddof=1))
    for threshold in SDR_THRESHOLDS_MM:
        assert summary["sdr"][str(threshold)] == pytest.approx(np.mean(errors <= threshold))

    with open(jsrt["work"] / "out" / "landmarks_per_landmark.csv") as handle:
        per_landmark = {row["landmark"]: row for row in csv.DictReader(handle)}
    names = read_landmarks(jsrt["folders"]["ref_landmarks"] / f"{CASES[0]}.json").names
    assert list(per_landmark) == list(names) and len(names) == 166
    for index in (0, 50, 165):
        column = both[:, index]
        expected_errors = np.sqrt(((predicted[:, index] - reference[:, index]) ** 2).sum(-1))[column]
        row = per_landmark[names[index]]
        assert int(row["n_evaluated"]) == column.sum()
        if column.any():
            assert float(row["mre_mm"]) == pytest.approx(expected_errors.mean(), abs=1e-6)
            assert float(row["sdr_4mm"]) == pytest.approx(np.mean(expected_errors <= 4.0), abs=1e-6)

    with open(jsrt["work"] / "out" / "landmarks_per_case.csv") as handle:
        per_case = list(csv.DictReader(handle))
    assert len(per_case) == len(CASES) * 166
    assert sum(row["status"] == "missed" for row in per_case) == summary["n_missed"]
    assert all(0.3 <= float(row["confidence"]) <= 1.0 for row in per_case)


def test_mismatches_are_clear_errors(jsrt: dict, tmp_path: Path) -> None:
    folders, dataset_json = jsrt["folders"], jsrt["dataset_json"]
    partial = tmp_path / "partial"
    partial.mkdir()
    for case in CASES[:2]:
        (partial / f"{case}.nii.gz").write_bytes((folders["pred"] / f"{case}.nii.gz").read_bytes())
    with pytest.raises(ValueError, match=r"case name mismatch: 3 of 5 .*'JPCNN001', 'JPCNN002', 'unlabelled'"):
        evaluate_folders(partial, dataset_json, folders["ref_labels"], output_folder=tmp_path / "out")

    without_heart = {name: value for name, value in LABELS.items() if name != "heart"}
    with pytest.raises(ValueError, match=r"label set mismatch: reference .* label values \[3\]"):
        evaluate_folders(folders["pred"], {**dataset_json, "labels": without_heart}, folders["ref_labels"],
                         output_folder=tmp_path / "out", cases=[CASES[0]])
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    labels = jsrt["truth"]["predicted_labels"][CASES[0]].copy()
    labels[:2, :2] = LABELS["ignore"]  # the ignore label is never a valid prediction
    _write_label_map(labels, unknown / f"{CASES[0]}.nii.gz")
    with pytest.raises(ValueError, match=r"label set mismatch: prediction .* label values \[6\]"):
        evaluate_folders(unknown, dataset_json, folders["ref_labels"], output_folder=tmp_path / "out", cases=[CASES[0]])

    moved = tmp_path / "moved"
    moved.mkdir()
    image = sitk.ReadImage(str(folders["pred"] / f"{CASES[0]}.nii.gz"))
    image.SetOrigin((0.0, 0.0))
    sitk.WriteImage(image, str(moved / f"{CASES[0]}.nii.gz"))
    with pytest.raises(ValueError, match="geometry mismatch: .* has origin"):
        evaluate_folders(moved, dataset_json, folders["ref_labels"], output_folder=tmp_path / "out", cases=[CASES[0]])

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    landmarks = read_landmarks(folders["pred"] / f"{CASES[0]}.json")
    write_landmarks(renamed / f"{CASES[0]}.json", LandmarkSet(("other", *landmarks.names[1:]), landmarks.points_mm))
    with pytest.raises(ValueError, match=r"landmark name mismatch for case 'JPCLN001'.*\['other'\]"):
        evaluate_folders(renamed, dataset_json, None, folders["ref_landmarks"], tmp_path / "out", cases=[CASES[0]])

    with pytest.raises(ValueError, match="requested case"):
        evaluate_folders(folders["pred"], dataset_json, folders["ref_labels"], cases=["nonexistent"])
    with pytest.raises(ValueError, match="images_folder"):
        evaluate_folders(folders["pred"], dataset_json, folders["ref_labels"], write_overlays=True)


def test_overlays_are_written_for_2d_and_chosen_slices_for_3d(jsrt: dict, tmp_path: Path) -> None:
    folders = jsrt["folders"]
    result = evaluate_folders(
        folders["pred"], jsrt["dataset_json"], None, folders["ref_landmarks"], tmp_path / "out", cases=[CASES[1]],
        images_folder=folders["images"], write_overlays=True,
    )
    png = tmp_path / "out" / "overlays" / f"{CASES[1]}.png"
    assert result.summary["overlays"]["num_files"] == 1 and png.is_file()
    picture = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
    assert picture.ndim == 3 and picture.shape[0] > 256 and picture.std() > 10  # an RGB(A) drawing, not blank

    # 3D: 9 slices; landmarks at continuous slice indices 1.2 and 6.6 -> slices 1 and 7, plus the middle (4).
    assert overlay_slices(9, [1.2, 6.6, np.nan, 40.0]) == [1, 4, 7]
    volume = sitk.GetImageFromArray(np.random.default_rng(1).random((9, 20, 24)).astype(np.float32))
    volume.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(volume, str(tmp_path / "vol_0000.nii.gz"))
    labels = sitk.GetImageFromArray((np.indices((9, 20, 24))[1] > 10).astype(np.uint8))
    labels.CopyInformation(volume)
    sitk.WriteImage(labels, str(tmp_path / "vol.nii.gz"))
    points = np.array([[5.0, 4.0, 1.2 * 3.0], [10.0, 8.0, 6.6 * 3.0]])  # world = index * spacing (identity frame)
    write_landmarks(tmp_path / "vol.json", LandmarkSet(("p", "q"), points))
    written = write_case_overlays(
        "vol", image_path=tmp_path / "vol_0000.nii.gz", prediction_labels_path=tmp_path / "vol.nii.gz",
        predicted_landmarks_path=tmp_path / "vol.json", reference_landmarks_path=None,
        output_folder=tmp_path / "overlays3d",
    )
    assert [path.name for path in written] == ["vol_z001.png", "vol_z004.png", "vol_z007.png"]
