"""Bad input: every problem is reported naming the file and the problem, and nothing is half-written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import write_labelme, write_png

from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset
from dataset_conversion.landmark_sources import LandmarkFolder
from dataset_conversion.masks import BinaryMaskFolders, BitFlagMasks, LabelMapMasks
from dataset_conversion.validation import DatasetValidationError
from nnunet_babloss.core.landmarks.io import read_landmarks

BITS = {"a": 1, "b": 2}


def _inputs(root: Path, **overrides: object) -> ConversionInputs:
    arguments: dict[str, object] = {
        "image_folders": (root / "images",),
        "masks": BitFlagMasks(root / "masks", BITS),
        "landmarks": LandmarkFolder(root / "landmarks", "labelme"),
    }
    arguments.update(overrides)
    return ConversionInputs(**arguments)  # type: ignore[arg-type]


def _settings(raw: Path, **overrides: object) -> ConversionSettings:
    arguments: dict[str, object] = {
        "dataset_id": 3, "dataset_name": "Tiny", "raw_folder": raw, "pixel_spacing_mm": (0.5,),
        "overlap": "priority", "num_folds": 2, "progress": False,
    }
    arguments.update(overrides)
    return ConversionSettings(**arguments)  # type: ignore[arg-type]


def _errors(inputs: ConversionInputs, settings: ConversionSettings) -> list[tuple[str, str]]:
    with pytest.raises(DatasetValidationError) as caught:
        convert_dataset(inputs, settings)
    message = str(caught.value)
    issues = [(issue.file, issue.problem) for issue in caught.value.issues]
    for file, problem in issues:  # the exception text lists every error with its file
        assert problem in message and file in message
    return issues


def _nothing_written(raw: Path) -> bool:
    return not raw.exists() or not any(raw.iterdir())


def test_missing_mask_is_an_error_naming_the_image(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    (root / "masks" / "c1.png").unlink()
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "images" / "c1.png") and "has no mask" in problem and "--partial" in problem
    assert _nothing_written(tmp_path / "raw")


def test_partial_allows_a_missing_mask_and_fills_the_ignore_label(png_dataset: Callable[..., Path],
                                                                    tmp_path: Path) -> None:
    root = png_dataset()
    (root / "masks" / "c1.png").unlink()
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw", partial=True))
    assert result.annotations == {"c0": "both", "c1": "landmark_only", "c2": "both"}
    ignore = result.dataset_json["labels"]["ignore"]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_folder / "labelsTr" / "c1.nii.gz")))
    assert ignore == 3 and (label == ignore).all()


def test_mask_without_an_image_is_an_error_naming_the_mask(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    write_png(root / "masks" / "c9.png", np.zeros((24, 32)))
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "masks" / "c9.png") and "has no image" in problem


def test_missing_landmark_file_and_missing_folder(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    (root / "landmarks" / "c2.json").unlink()
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "images" / "c2.png") and "no landmark file" in problem
    issues = _errors(_inputs(root, landmarks=LandmarkFolder(root / "nowhere")), _settings(tmp_path / "raw"))
    assert (str(root / "nowhere"), "landmark folder not found") in issues


def test_missing_image_file_for_a_requested_case(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    issues = _errors(_inputs(root, cases=("c0", "c7")), _settings(tmp_path / "raw"))
    assert (str(root / "images"), "case 'c7' was requested but has no image") in issues


def test_duplicate_labelme_labels_warn_by_default_and_fail_when_asked(png_dataset: Callable[..., Path],
                                                                      tmp_path: Path) -> None:
    root = png_dataset()
    path = write_labelme(root / "landmarks" / "c1.json", [("p", [4.0, 4.0]), ("q", [1.0, 1.0]), ("p", [6.0, 5.0])])
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw"))
    (warning,) = result.report.warnings
    assert warning.file == str(path) and "'p' appears 2 times" in warning.problem and "marked absent" in warning.problem
    assert not read_landmarks(result.dataset_folder / "landmarksTr" / "c1.json").present[0]
    strict = _inputs(root, landmarks=LandmarkFolder(root / "landmarks", "labelme", duplicates="error"))
    (file, problem), = _errors(strict, _settings(tmp_path / "raw2"))
    assert file == str(path) and "'p' appears 2 times" in problem


def test_duplicate_names_in_a_world_csv_are_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    folder = tmp_path / "csv"
    folder.mkdir()
    for case in ("c0", "c1", "c2"):
        (folder / f"{case}.csv").write_text("name,x,y\np,1,2\nq,3,4\n")
    (folder / "c1.csv").write_text("name,x,y\np,1,2\np,3,4\n")
    (file, problem), = _errors(_inputs(root, landmarks=LandmarkFolder(folder)), _settings(tmp_path / "raw"))
    assert file == str(folder / "c1.csv") and "duplicate" in problem and "'p'" in problem


def test_a_file_lacking_landmarks_is_warned_about(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    path = write_labelme(root / "landmarks" / "c2.json", {"p": [4.0, 4.0]})
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw"))
    (warning,) = result.report.warnings
    assert warning.file == str(path) and "lacks landmark(s) ['q']" in warning.problem
    assert read_landmarks(result.dataset_folder / "landmarksTr" / "c2.json").as_dict()["q"] is None


def test_unknown_landmark_name_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    path = write_labelme(root / "landmarks" / "c0.json", {"p": [4.0, 4.0], "typo": [1.0, 1.0]})
    settings = _settings(tmp_path / "raw", landmarks=LandmarkOptions(names=("p", "q")))
    (file, problem), = _errors(_inputs(root), settings)
    assert file == str(path) and "unknown landmark name(s) ['typo']" in problem


def test_landmark_outside_the_image_is_an_error_or_dropped(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    # The image is 32 columns wide: it covers x in [-0.5, 31.5); x = 31.5 is just outside.
    path = write_labelme(root / "landmarks" / "c0.json", {"p": [31.5, 3.0], "q": [19.5, 15.25]})
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(path) and "outside the image" in problem and "p at pixel" in problem
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw", landmarks=LandmarkOptions(outside="drop")))
    assert "marked absent" in result.report.warnings[0].problem
    assert read_landmarks(result.dataset_folder / "landmarksTr" / "c0.json").present.tolist() == [False, True]


def test_file_for_another_image_size_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    path = write_labelme(root / "landmarks" / "c0.json", {"p": [4.0, 4.0], "q": [1.0, 1.0]}, (64, 48))
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(path) and "size [64, 48]" in problem and "[32, 24]" in problem


def test_mask_image_geometry_mismatch_is_an_error(tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    image = sitk.Image(8, 6, 4, sitk.sitkInt16)
    image.SetSpacing((1.0, 1.0, 2.5))
    sitk.WriteImage(image, str(tmp_path / "images" / "v.nii.gz"))
    mask = sitk.Image(8, 6, 4, sitk.sitkUInt8)
    mask.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(mask, str(tmp_path / "masks" / "v.nii.gz"))
    inputs = ConversionInputs((tmp_path / "images",), masks=LabelMapMasks(tmp_path / "masks", {"organ": 1}))
    settings = _settings(tmp_path / "raw", pixel_spacing_mm=None, overlap="error")
    (file, problem), = _errors(inputs, settings)
    assert file == str(tmp_path / "masks" / "v.nii.gz")
    assert "geometry does not match" in problem and "spacing [1.0, 1.0, 3.0] != [1.0, 1.0, 2.5]" in problem


def test_png_mask_of_another_size_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    write_png(root / "masks" / "c1.png", np.zeros((24, 30)))
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "masks" / "c1.png") and "size [30, 24] != [32, 24]" in problem


def test_non_binary_mask_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    inputs = _inputs(root, masks=BinaryMaskFolders({"a": root / "masks"}))
    issues = _errors(inputs, _settings(tmp_path / "raw"))
    # Every mask of the fixture has values {0, 1, 2, 3} (two overlapping squares as bits).
    assert len(issues) == 3
    assert all(file.endswith(".png") and "not binary" in problem and "[0, 1, 2, 3]" in problem
               for file, problem in issues)


def test_overlapping_structures_need_a_choice(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=1)
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw", overlap="error"))
    # The squares overlap on rows 8..11, columns 10..13: 16 pixels.
    assert file == str(root / "masks" / "c0.png") and "a & b: 16 pixels" in problem
    assert "--overlap priority" in problem and "--overlap regions" in problem


def test_existing_output_needs_overwrite_and_a_failed_overwrite_keeps_it(png_dataset: Callable[..., Path],
                                                                         tmp_path: Path) -> None:
    root = png_dataset()
    raw = tmp_path / "raw"
    first = convert_dataset(_inputs(root), _settings(raw))
    (file, problem), = _errors(_inputs(root), _settings(raw))
    assert file == str(first.dataset_folder) and "exists already" in problem and "--overwrite" in problem
    before = sorted(path.relative_to(raw) for path in raw.rglob("*"))
    write_png(root / "masks" / "c2.png", np.full((24, 32), 4))  # bit 4 is no declared structure
    issues = _errors(_inputs(root), _settings(raw, overwrite=True))
    assert issues[0][0] == str(root / "masks" / "c2.png")
    # Nothing half-written: the old dataset is untouched and no temporary folder is left behind.
    assert sorted(path.relative_to(raw) for path in raw.rglob("*")) == before
    write_png(root / "masks" / "c2.png", np.zeros((24, 32)))
    again = convert_dataset(_inputs(root), _settings(raw, overwrite=True))
    assert again.written and [path.name for path in raw.iterdir()] == [first.dataset_folder.name]


def test_dry_run_checks_everything_and_writes_nothing(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    raw = tmp_path / "raw"
    result = convert_dataset(_inputs(root), _settings(raw, dry_run=True))
    assert not result.written and result.annotations == {"c0": "both", "c1": "both", "c2": "both"}
    assert not raw.exists()
    write_labelme(root / "landmarks" / "c1.json", {"p": [99.0, 3.0]})
    (file, problem), = _errors(_inputs(root), _settings(raw, dry_run=True))
    assert file == str(root / "landmarks" / "c1.json") and "outside" in problem


def test_png_without_pixel_spacing_is_refused(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=1)
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw", pixel_spacing_mm=None))
    assert file == str(root / "images" / "c0.png") and "--pixel-spacing" in problem


def test_pixel_spacing_for_images_with_their_own_geometry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(tmp_path / "images" / "a.nii.gz"))
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "landmarks" / "a.csv").write_text("name,x,y\np,1,1\n")
    inputs = ConversionInputs((tmp_path / "images",), landmarks=LandmarkFolder(tmp_path / "landmarks"))
    (file, problem), = _errors(inputs, _settings(tmp_path / "raw"))
    assert file == "" and "no PNG/JPEG/TIFF/BMP images" in problem


def test_colour_image_is_refused(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=1)
    colour = np.zeros((24, 32, 3), dtype=np.uint8)
    colour[..., 0] = 200
    sitk.WriteImage(sitk.GetImageFromArray(colour, isVector=True), str(root / "images" / "c0.png"))
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "images" / "c0.png") and "colour image" in problem


def test_greyscale_stored_as_rgb_is_accepted(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=2)
    grey = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "images" / "c0.png")))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([grey] * 3, axis=-1), isVector=True),
                    str(root / "images" / "c0.png"))
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw"))
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_folder / "imagesTr" / "c0_0000.nii.gz")))
    np.testing.assert_array_equal(written, grey)


def test_two_files_for_one_case_are_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    sitk.WriteImage(sitk.Image(32, 24, sitk.sitkUInt8), str(root / "images" / "c0.nii.gz"))
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(root / "images") and "two files for case 'c0'" in problem


def test_annotation_kind_without_the_annotation_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    (root / "masks" / "c0.png").unlink()
    kinds = {"c0": "mask_only", "c1": "landmark_only", "c2": "both"}
    (file, problem), = _errors(_inputs(root, annotation_kinds=kinds), _settings(tmp_path / "raw"))
    assert file == str(root / "images" / "c0.png") and "'mask_only' but has no mask" in problem


def test_dataset_id_taken_by_another_dataset(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    (tmp_path / "raw" / "Dataset003_Other").mkdir(parents=True)
    (file, problem), = _errors(_inputs(root), _settings(tmp_path / "raw"))
    assert file == str(tmp_path / "raw") and "dataset id 3 is taken by ['Dataset003_Other']" in problem


@pytest.mark.parametrize(
    ("bridge", "message"),
    [({"x*": ("a",)}, "bridge pattern 'x*' matches no landmark"), ({"p": ("liver",)}, "unknown label 'liver'")],
)
def test_bad_bridge_is_an_error(png_dataset: Callable[..., Path], tmp_path: Path, bridge: dict, message: str) -> None:
    root = png_dataset()
    issues = _errors(_inputs(root), _settings(tmp_path / "raw", landmarks=LandmarkOptions(bridge=bridge)))
    assert any(message in problem for _, problem in issues), issues


def test_jsrt_landmarks_of_the_512_image_on_the_256_image(jsrt_fixture: Path, shared_data: Path,
                                                          tmp_path: Path) -> None:
    (tmp_path / "landmarks").mkdir()
    big = shared_data / "jsrt_512" / "landmarks" / "JPCLN001.json"
    (tmp_path / "landmarks" / "JPCLN001.json").symlink_to(big)
    inputs = ConversionInputs((jsrt_fixture / "images",), landmarks=LandmarkFolder(tmp_path / "landmarks", "jsrt"),
                              cases=("JPCLN001",))
    issues = _errors(inputs, _settings(tmp_path / "raw", pixel_spacing_mm=(1.4,)))
    assert issues == [(str(tmp_path / "landmarks" / "JPCLN001.json"),
                       "the file is for an image of size [512, 512] but the image JPCLN001.png has size [256, 256]")]


def test_jsrt_declared_spacing_must_match_the_stated_one(jsrt_fixture: Path, tmp_path: Path) -> None:
    inputs = ConversionInputs((jsrt_fixture / "images",), landmarks=LandmarkFolder(jsrt_fixture / "landmarks", "jsrt"),
                              cases=("JPCLN001",))
    (file, problem), = _errors(inputs, _settings(tmp_path / "raw", pixel_spacing_mm=(0.7,)))
    assert file.endswith("JPCLN001.json") and "declares a pixel spacing of [1.4, 1.4] mm" in problem


def test_invalid_settings_raise_before_reading(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=1)
    with pytest.raises(ValueError, match="dataset id must be an integer in 1..999, got 1000"):
        convert_dataset(_inputs(root), _settings(tmp_path / "raw", dataset_id=1000))
    with pytest.raises(ValueError, match="dataset name must"):
        convert_dataset(_inputs(root), _settings(tmp_path / "raw", dataset_name="has space"))
    with pytest.raises(ValueError, match=r"annotation_kinds\['c0'\]: must be one of"):
        convert_dataset(_inputs(root, annotation_kinds={"c0": "everything"}), _settings(tmp_path / "raw"))
    assert _nothing_written(tmp_path / "raw")


def test_provenance_records_arguments_versions_and_warnings(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset()
    write_labelme(root / "landmarks" / "c2.json", {"p": [4.0, 4.0]})
    result = convert_dataset(_inputs(root), _settings(tmp_path / "raw"), arguments={"argv": ["-d", "3"]})
    provenance = json.loads((result.dataset_folder / "provenance.json").read_text())
    assert provenance["arguments"] == {"argv": ["-d", "3"]}
    assert {"python", "nnunetv2", "SimpleITK", "numpy"} <= set(provenance["versions"])
    assert provenance["sources"]["image_folders"] == [str(root / "images")]
    assert provenance["warnings"][0]["file"] == str(root / "landmarks" / "c2.json")
