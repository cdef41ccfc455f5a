"""Merging partially labelled raw datasets: labels by name, landmark blocks united, sources recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import JSRT_BITS, JSRT_BRIDGE

from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset
from dataset_conversion.landmark_sources import LandmarkFolder
from dataset_conversion.masks import BitFlagMasks, LabelMapMasks, MaskSource
from dataset_conversion.merge import MergeSettings, merge_datasets
from dataset_conversion.validation import DatasetValidationError
from nnunet_babloss.core.landmarks.io import read_landmarks

MASK_CASES = ("JPCLN001", "JPCLN002", "JPCLN003", "JPCLN004")
LANDMARK_CASES = ("JPCNN001", "JPCNN002", "JPCNN003", "JPCNN004")


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _jsrt_part(jsrt_fixture: Path, raw: Path, dataset_id: int, cases: tuple[str, ...], kind: str) -> Path:
    inputs = ConversionInputs(
        (jsrt_fixture / "images",),
        masks=BitFlagMasks(jsrt_fixture / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(jsrt_fixture / "landmarks", "jsrt") if kind != "mask_only" else None,
        annotation_kinds={case: kind for case in cases},
        cases=cases,
    )
    settings = ConversionSettings(
        dataset_id, f"JSRT_{kind}", raw_folder=raw, pixel_spacing_mm=(1.4,), overlap="priority", num_folds=2,
        channel_names=("xray",), progress=False,
        landmarks=LandmarkOptions(bridge=JSRT_BRIDGE) if kind != "mask_only" else LandmarkOptions(),
    )
    return convert_dataset(inputs, settings).dataset_folder


def test_mask_only_and_landmark_only_jsrt_merge_into_one_heterogeneous_dataset(jsrt_fixture: Path,
                                                                                tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    masks = _jsrt_part(jsrt_fixture, raw, 11, MASK_CASES, "mask_only")
    landmarks = _jsrt_part(jsrt_fixture, raw, 12, LANDMARK_CASES, "landmark_only")
    result = merge_datasets([11, landmarks], MergeSettings(13, "JSRT_Merged", raw_folder=raw, num_folds=2,
                                                          progress=False))
    merged = result.dataset_folder
    dataset_json = json.loads((merged / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "right_lung": 1, "left_lung": 2, "heart": 3,
                                      "right_clavicle": 4, "left_clavicle": 5, "ignore": 6}
    assert dataset_json["annotations"] == {**{case: "mask_only" for case in MASK_CASES},
                                           **{case: "landmark_only" for case in LANDMARK_CASES}}
    assert dataset_json["sources"]["JPCLN001"] == {"dataset": masks.name, "case": "JPCLN001"}
    assert dataset_json["sources"]["JPCNN004"] == {"dataset": landmarks.name, "case": "JPCNN004"}
    assert len(dataset_json["landmarks"]["names"]) == 166 and dataset_json["numTraining"] == 8
    for case in MASK_CASES:
        np.testing.assert_array_equal(_array(merged / "labelsTr" / f"{case}.nii.gz"),
                                      _array(jsrt_fixture / "labels" / f"{case}.png"))
    for case in LANDMARK_CASES:
        assert (_array(merged / "labelsTr" / f"{case}.nii.gz") == 6).all()
        original = read_landmarks(landmarks / "landmarksTr" / f"{case}.json")
        np.testing.assert_array_equal(read_landmarks(merged / "landmarksTr" / f"{case}.json").points_mm,
                                      original.points_mm)
        # The landmark-only part withheld its masks into referenceTr; they travel along.
        np.testing.assert_array_equal(_array(merged / "referenceTr" / "labels" / f"{case}.nii.gz"),
                                      _array(jsrt_fixture / "labels" / f"{case}.png"))
    # Images are copied bit for bit.
    assert (merged / "imagesTr" / "JPCLN001_0000.nii.gz").read_bytes() == (
        masks / "imagesTr" / "JPCLN001_0000.nii.gz").read_bytes()
    # Stratified by kind and source: each fold validates both kinds.
    for fold in json.loads((merged / "splits_final.json").read_text()):
        assert {dataset_json["annotations"][case] for case in fold["val"]} == {"mask_only", "landmark_only"}


def _tiny(png_dataset: Callable[..., Path], raw: Path, dataset_id: int, name: str, masks: Callable[[Path], MaskSource],
          **settings: object) -> Path:
    root = png_dataset(name=name)
    inputs = ConversionInputs((root / "images",), masks=masks(root),
                              landmarks=LandmarkFolder(root / "landmarks", "labelme"))
    arguments: dict[str, object] = {"raw_folder": raw, "pixel_spacing_mm": (0.5,), "overlap": "priority",
                                    "num_folds": 2, "progress": False}
    arguments.update(settings)
    settings = ConversionSettings(dataset_id, name, **arguments)  # type: ignore[arg-type]
    return convert_dataset(inputs, settings).dataset_folder


def _both_labels(root: Path) -> MaskSource:
    return BitFlagMasks(root / "masks", {"a": 1, "b": 2})


def _only_a(root: Path) -> MaskSource:
    return LabelMapMasks(root / "masks", {"a": 1}, unlisted="background")


def test_a_dataset_lacking_a_label_needs_a_decision(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 21, "X", _both_labels)
    only_a = _tiny(png_dataset, raw, 22, "Y", _only_a)
    with pytest.raises(DatasetValidationError) as caught:
        merge_datasets([21, 22], MergeSettings(23, "XY", raw_folder=raw, prefix_case_ids=True, progress=False))
    (issue,) = caught.value.issues
    assert issue.file == str(only_a / "dataset.json") and "lacks label(s) ['b']" in issue.problem
    assert "--missing-labels" in issue.problem and not (raw / "Dataset023_XY").exists()

    ignored = merge_datasets([21, 22], MergeSettings(23, "XY", raw_folder=raw, prefix_case_ids=True,
                                                      missing_labels="ignore", num_folds=2, progress=False))
    labels = _array(ignored.dataset_folder / "labelsTr" / "Y_c0.nii.gz")
    # Y's background became "ignore" (3); its structure a stays 1; b (Y's value 2) was background in Y -> ignore.
    assert set(np.unique(labels).tolist()) == {1, 3} and ignored.dataset_json["labels"]["ignore"] == 3
    assert ignored.annotations["Y_c0"] == "both"

    trusted = merge_datasets([21, 22], MergeSettings(24, "XY2", raw_folder=raw, prefix_case_ids=True,
                                                      missing_labels="background", num_folds=2, progress=False))
    assert set(np.unique(_array(trusted.dataset_folder / "labelsTr" / "Y_c0.nii.gz")).tolist()) == {0, 1}
    assert "ignore" not in trusted.dataset_json["labels"]
    assert any("true background" in issue.problem for issue in trusted.report.warnings)


def test_label_aliases_match_differently_named_labels(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 31, "X", _both_labels)
    _tiny(png_dataset, raw, 32, "Y", lambda root: BitFlagMasks(root / "masks", {"A": 1, "B": 2}))
    result = merge_datasets([31, 32], MergeSettings(33, "XY", raw_folder=raw, prefix_case_ids=True, num_folds=2,
                                                    label_aliases={"A": "a", "B": "b"}, progress=False))
    assert result.dataset_json["labels"] == {"background": 0, "a": 1, "b": 2}
    np.testing.assert_array_equal(_array(result.dataset_folder / "labelsTr" / "X_c1.nii.gz"),
                                  _array(result.dataset_folder / "labelsTr" / "Y_c1.nii.gz"))


def test_colliding_case_ids_need_a_prefix(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 41, "X", _both_labels)
    _tiny(png_dataset, raw, 42, "Y", _both_labels)
    with pytest.raises(DatasetValidationError) as caught:
        merge_datasets([41, 42], MergeSettings(43, "XY", raw_folder=raw, progress=False))
    assert "case 'c0' also exists in Dataset041_X" in str(caught.value) and "--prefix-case-ids" in str(caught.value)
    assert caught.value.issues[0].file == str(raw / "Dataset042_Y" / "imagesTr")
    result = merge_datasets([41, 42], MergeSettings(43, "XY", raw_folder=raw, prefix_case_ids=True, num_folds=2,
                                                    progress=False))
    assert sorted(result.sources) == ["X_c0", "X_c1", "X_c2", "Y_c0", "Y_c1", "Y_c2"]


def test_channels_must_agree(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 51, "X", _both_labels, channel_names=("xray",))
    other = _tiny(png_dataset, raw, 52, "Y", _both_labels, channel_names=("CT",))
    with pytest.raises(DatasetValidationError) as caught:
        merge_datasets([51, 52], MergeSettings(53, "XY", raw_folder=raw, prefix_case_ids=True, progress=False))
    (issue,) = caught.value.issues
    assert issue.file == str(other / "dataset.json") and "channel names ['CT'] differ from ['xray']" in issue.problem
    result = merge_datasets([51, 52], MergeSettings(53, "XY", raw_folder=raw, prefix_case_ids=True, num_folds=2,
                                                    ignore_channel_names=True, progress=False))
    assert result.dataset_json["channel_names"] == {"0": "xray"} and result.report.warnings


def test_region_based_datasets_must_share_their_labels(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 61, "X", _both_labels, overlap="regions")
    _tiny(png_dataset, raw, 62, "Y", _both_labels, overlap="regions")
    _tiny(png_dataset, raw, 63, "Z", _both_labels, overlap="priority")
    same = merge_datasets([61, 62], MergeSettings(64, "XY", raw_folder=raw, prefix_case_ids=True, num_folds=2,
                                                  progress=False))
    assert same.dataset_json["regions_class_order"] == [1, 2]
    np.testing.assert_array_equal(_array(same.dataset_folder / "labelsTr" / "Y_c0.nii.gz"),
                                  _array(raw / "Dataset062_Y" / "labelsTr" / "c0.nii.gz"))
    with pytest.raises(DatasetValidationError, match="region-based labels can only be merged"):
        merge_datasets([61, 63], MergeSettings(65, "XZ", raw_folder=raw, prefix_case_ids=True, progress=False))


def test_dry_run_and_bad_inputs(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _tiny(png_dataset, raw, 71, "X", _both_labels)
    _tiny(png_dataset, raw, 72, "Y", _both_labels)
    result = merge_datasets(["Dataset071_X", raw / "Dataset072_Y"],
                            MergeSettings(73, "XY", raw_folder=raw, prefix_case_ids=True, dry_run=True, progress=False))
    assert not result.written and len(result.annotations) == 6 and not (raw / "Dataset073_XY").exists()
    with pytest.raises(FileNotFoundError, match="no dataset with id 9"):
        merge_datasets([71, 9], MergeSettings(73, "XY", raw_folder=raw))
    with pytest.raises(ValueError, match="at least two datasets"):
        merge_datasets([71], MergeSettings(73, "XY", raw_folder=raw))
    (raw / "Dataset072_Y" / "labelsTr" / "c1.nii.gz").unlink()
    with pytest.raises(DatasetValidationError) as caught:
        merge_datasets([71, 72], MergeSettings(73, "XY", raw_folder=raw, prefix_case_ids=True, progress=False))
    assert caught.value.issues[0].file == str(raw / "Dataset072_Y" / "labelsTr" / "c1.nii.gz")
    assert "label file not found" in caught.value.issues[0].problem
    assert sorted(path.name for path in raw.iterdir()) == ["Dataset071_X", "Dataset072_Y"]
