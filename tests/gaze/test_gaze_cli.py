"""``nnUNetv2_bab_gaze_pseudo_labels``: images + gaze CSV → raw dataset; bad input fails before writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pseudo_labels.gaze.cli import main
from pseudo_labels.gaze.gaze_csv import FixationSequence, write_gaze_csv


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        image = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 10, (40, 50)).astype(np.float32))
        image.SetSpacing((0.5, 0.5))
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))


def _gaze(path: Path, names: list[str]) -> None:
    write_gaze_csv(path, [
        FixationSequence(name, x=np.array([0.3, 0.35, 0.7]), y=np.array([0.5, 0.55, 0.5]),
                         duration_ms=np.array([400.0, 300.0, 60.0]))
        for name in names
    ])


def test_writes_a_recorded_gaze_dataset_with_nested_levels(tmp_path: Path) -> None:
    _images(tmp_path / "images", ["a", "b"])
    _gaze(tmp_path / "gaze.csv", ["a.png", "b"])  # IMAGE may carry a file suffix
    code = main(["-i", str(tmp_path / "images"), "--gaze", str(tmp_path / "gaze.csv"), "-d", "7", "-n", "G",
                 "--raw-folder", str(tmp_path / "raw"), "--no-crf", "--thresholds", "0.5", "0.2", "--save-maps",
                 "--no-progress"])
    assert code == 0
    dataset = tmp_path / "raw" / "Dataset007_G"
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    assert dataset_json["gaze_levels"]["thresholds"] == [0.2, 0.5]
    assert dataset_json["gaze_levels"]["source"]["simulated"] is False
    assert dataset_json["gaze_levels"]["source"]["crf"] is None
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "labelsTr" / "a.nii.gz")))
    heat = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / "gaze_maps" / "a_heatmap.nii.gz")))
    np.testing.assert_array_equal(label, (heat > 0.2).astype(int) + (heat > 0.5).astype(int))
    assert sitk.ReadImage(str(dataset / "imagesTr" / "a_0000.nii.gz")).GetSpacing() == (0.5, 0.5)
    assert (dataset / "provenance.json").is_file() and (dataset / "gaze_pseudo_labels_summary.csv").is_file()


def test_bad_input_exits_with_the_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _images(tmp_path / "images", ["a", "b"])
    _gaze(tmp_path / "gaze.csv", ["a", "ghost"])
    arguments = ["-i", str(tmp_path / "images"), "--gaze", str(tmp_path / "gaze.csv"), "-d", "7", "-n", "G",
                 "--raw-folder", str(tmp_path / "raw"), "--no-crf"]
    assert main(arguments) == 1  # bad input (2 is for bad arguments)
    assert "IMAGE 'ghost' is not among the images" in capsys.readouterr().err
    assert not (tmp_path / "raw" / "Dataset007_G").exists()
    _gaze(tmp_path / "gaze.csv", ["a"])  # image b has no gaze
    assert main(arguments) == 1
    assert "--skip-images-without-gaze" in capsys.readouterr().err
    assert main([*arguments, "--skip-images-without-gaze", "--no-progress"]) == 0


def test_colour_images_become_three_channels(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("polyp_1", "polyp_2"):
        rgb = rng.integers(0, 255, (30, 36, 3), dtype=np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(folder / f"{name}.png"))
    _gaze(tmp_path / "gaze.csv", ["polyp_1.jpg", "polyp_2.jpg"])  # IMAGE names may use another suffix
    crf = [] if _has_crf() else ["--no-crf"]
    assert main(["-i", str(folder), "--gaze", str(tmp_path / "gaze.csv"), "-d", "8", "-n", "C", "--raw-folder",
                 str(tmp_path / "raw"), "--pixel-spacing", "0.2", "--no-progress", *crf]) == 0
    dataset = tmp_path / "raw" / "Dataset008_C"
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    for index in range(3):
        channel = sitk.ReadImage(str(dataset / "imagesTr" / f"polyp_1_{index:04d}.nii.gz"))
        assert channel.GetSize() == (36, 30) and channel.GetSpacing() == pytest.approx((0.2, 0.2))
    label = sitk.ReadImage(str(dataset / "labelsTr" / "polyp_1.nii.gz"))
    assert label.GetSize() == (36, 30)


def _has_crf() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True
