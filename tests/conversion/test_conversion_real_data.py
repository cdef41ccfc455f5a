"""Real data through the converter: landmarks read back from the raw dataset land on the source pixels/voxels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conversion_helpers import JSRT_BITS, JSRT_BRIDGE

from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset
from dataset_conversion.landmark_sources import HamedanFile, LabelCentroids, LandmarkFolder, jsrt_pixel_centres
from dataset_conversion.masks import BitFlagMasks, LabelEncoding, LabelMapMasks
from dataset_conversion.validation import DatasetValidationError
from nnunet_babloss.core.landmarks.geometry import ImageGeometry
from nnunet_babloss.core.landmarks.io import ras_to_lps, read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec

JSRT_CASES = ("JPCLN001", "JPCLN002", "JPCLN003", "JPCLN004", "JPCNN001", "JPCNN002", "JPCNN003", "JPCNN004")


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _geometry(path: Path) -> ImageGeometry:
    return ImageGeometry.from_sitk(sitk.ReadImage(str(path)))


def _jsrt_pixels(path: Path) -> np.ndarray:
    """``(166, 2)`` source pixels (x = column, y = row) in group order, at the package's pixel centres."""
    groups = json.loads(path.read_text())["landmarks"]
    return jsrt_pixel_centres(np.concatenate([np.asarray(points, dtype=np.float64) for points in groups.values()]))


def _convert_jsrt(jsrt_fixture: Path, raw: Path, overlap: str, **inputs_kwargs: object):
    inputs = ConversionInputs(
        (jsrt_fixture / "images",),
        masks=BitFlagMasks(jsrt_fixture / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(jsrt_fixture / "landmarks", "jsrt"),
        **inputs_kwargs,  # type: ignore[arg-type]
    )
    settings = ConversionSettings(
        1, "JSRTFixture", raw_folder=raw, pixel_spacing_mm=(1.4,), overlap=overlap,  # type: ignore[arg-type]
        landmarks=LandmarkOptions(bridge=JSRT_BRIDGE), num_folds=2, progress=False,
    )
    return convert_dataset(inputs, settings)


def test_jsrt_fixture_round_trip_priority(jsrt_fixture: Path, tmp_path: Path) -> None:
    result = _convert_jsrt(jsrt_fixture, tmp_path, "priority")
    folder = result.dataset_folder
    assert result.annotations == {case: "both" for case in JSRT_CASES} and not result.report.issues
    spec = LandmarkSpec.from_dataset_json(folder / "dataset.json")
    assert spec.num_landmarks == 166 and spec.bridge_map()["LCLA_22"] == ("left_clavicle",)
    for case in JSRT_CASES:
        image_path = folder / "imagesTr" / f"{case}_0000.nii.gz"
        image = sitk.ReadImage(str(image_path))
        # Real spacing (NIfTI stores float32), identical pixels.
        np.testing.assert_allclose(image.GetSpacing(), (1.4, 1.4), rtol=1e-7)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), _array(jsrt_fixture / "images" / f"{case}.png"))
        # Later-wins painting in declaration order reproduces the dataset's own exclusive label maps.
        np.testing.assert_array_equal(_array(folder / "labelsTr" / f"{case}.nii.gz"),
                                      _array(jsrt_fixture / "labels" / f"{case}.png"))
        landmarks = read_landmarks(folder / "landmarksTr" / f"{case}.json", spec)
        index = ImageGeometry.from_sitk(image).world_to_index(landmarks.points_mm)
        np.testing.assert_allclose(index[:, ::-1], _jsrt_pixels(jsrt_fixture / "landmarks" / f"{case}.json"),
                                   atol=1e-6, rtol=0)
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 2 and sorted(splits[0]["val"] + splits[1]["val"]) == list(JSRT_CASES)
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["versions"]["nnunetv2"] and provenance["pixel_spacing"]["spacing_mm"] == [1.4]


def test_jsrt_fixture_regions_keep_the_overlap(jsrt_fixture: Path, tmp_path: Path) -> None:
    result = _convert_jsrt(jsrt_fixture, tmp_path, "regions")
    dataset_json = result.dataset_json
    assert dataset_json["regions_class_order"] == [1, 2, 4, 8, 16]
    encoding = LabelEncoding(tuple(JSRT_BITS), "regions")
    for case in JSRT_CASES:
        written = _array(result.dataset_folder / "labelsTr" / f"{case}.nii.gz")
        source = _array(jsrt_fixture / "labels_bits" / f"{case}.png")
        # The region code of a pixel is its set of structures: the dataset's bit flags, losslessly.
        np.testing.assert_array_equal(written, source)
        decoded = encoding.decode_structures(written)
        assert np.array_equal(decoded["right_lung"], (source & 1) > 0)


def test_jsrt_fixture_heterogeneous_withholds_into_reference(jsrt_fixture: Path, shared_data: Path,
                                                              tmp_path: Path) -> None:
    groups = json.loads((shared_data / "jsrt_512" / "splits.json").read_text())["partial_label_groups"]
    kinds = {case: groups[case] for case in JSRT_CASES}
    result = _convert_jsrt(jsrt_fixture, tmp_path, "priority", annotation_kinds=kinds)
    folder = result.dataset_folder
    assert result.annotations == kinds
    labels = result.dataset_json["labels"]
    assert labels["ignore"] == 6 and list(labels)[-1] == "ignore"
    for case, kind in kinds.items():
        label = _array(folder / "labelsTr" / f"{case}.nii.gz")
        has_landmark_file = (folder / "landmarksTr" / f"{case}.json").is_file()
        assert has_landmark_file == (kind != "mask_only")
        if kind == "landmark_only":
            assert (label == 6).all()
            np.testing.assert_array_equal(_array(folder / "referenceTr" / "labels" / f"{case}.nii.gz"),
                                          _array(jsrt_fixture / "labels" / f"{case}.png"))
        else:
            assert not (folder / "referenceTr" / "labels" / f"{case}.nii.gz").exists()
        assert (folder / "referenceTr" / "landmarks" / f"{case}.json").is_file() == (kind == "mask_only")
    # Every fold validates every kind (4 mask-only, 2 landmark-only, 2 both over 2 folds).
    for fold in json.loads((folder / "splits_final.json").read_text()):
        assert {kinds[case] for case in fold["val"]} == {"mask_only", "landmark_only", "both"}


def test_jsrt_test_cases_go_to_the_test_folders(jsrt_fixture: Path, tmp_path: Path) -> None:
    result = _convert_jsrt(jsrt_fixture, tmp_path, "priority", test_cases=frozenset({"JPCNN004"}))
    folder = result.dataset_folder
    assert result.test_cases == ("JPCNN004",) and "JPCNN004" not in result.annotations
    assert result.dataset_json["numTraining"] == 7
    for sub, name in (("imagesTs", "JPCNN004_0000.nii.gz"), ("labelsTs", "JPCNN004.nii.gz"),
                      ("landmarksTs", "JPCNN004.json")):
        assert (folder / sub / name).is_file()
    assert not (folder / "imagesTr" / "JPCNN004_0000.nii.gz").exists()


def _jsrt_512_case_with_edge_point(shared_data: Path, folder: Path, case: str, x_px: float) -> Path:
    """A copy of a real ``jsrt_512`` case (image + landmarks) whose last left-clavicle point is moved to ``x_px``."""
    source = shared_data / "jsrt_512"
    for sub in ("images", "landmarks"):
        (folder / sub).mkdir(parents=True)
    (folder / "images" / f"{case}.png").write_bytes((source / "images" / f"{case}.png").read_bytes())
    content = json.loads((source / "landmarks" / f"{case}.json").read_text())
    content["landmarks"]["LCLA"][-1][0] = x_px
    (folder / "landmarks" / f"{case}.json").write_text(json.dumps(content))
    return folder


def _convert_jsrt_512(folder: Path, raw: Path):
    inputs = ConversionInputs((folder / "images",), landmarks=LandmarkFolder(folder / "landmarks", "jsrt"))
    settings = ConversionSettings(2, "JSRTEdge", raw_folder=raw, pixel_spacing_mm=(0.7,), progress=False)
    return convert_dataset(inputs, settings)


def test_jsrt_point_on_the_far_image_edge_converts_onto_the_last_pixel(shared_data: Path, tmp_path: Path) -> None:
    """JPCLN089 (not among the 195 shared cases) has a point at x = 512.0: the far edge of its 512-px image in the
    files' pixel-edge frame. It must convert with the default ``outside="error"``; on the last column, just inside.
    A point beyond the edge is still an error. (Before the edge convention, x = 512.0 was read as the centre of a
    513th column and refused.)"""
    folder = _jsrt_512_case_with_edge_point(shared_data, tmp_path / "edge", "JPCLN088", 512.0)
    result = _convert_jsrt_512(folder, tmp_path / "raw")  # conversion errors raise
    assert not [issue for issue in result.report.issues if "outside" in issue.problem]
    dataset = result.dataset_folder
    image = sitk.ReadImage(str(dataset / "imagesTr" / "JPCLN088_0000.nii.gz"))
    landmarks = read_landmarks(dataset / "landmarksTr" / "JPCLN088.json")
    column, row = ImageGeometry.from_sitk(image).world_to_index(landmarks.points_mm)[-1][::-1]
    assert 511.5 - 1e-5 < column < 511.5 and int(np.floor(column + 0.5)) == 511  # inside: nearest column 511
    source = json.loads((folder / "landmarks" / "JPCLN088.json").read_text())["landmarks"]["LCLA"][-1]
    assert row == pytest.approx(source[1] - 0.5, abs=1e-6)

    beyond = _jsrt_512_case_with_edge_point(shared_data, tmp_path / "beyond", "JPCLN088", 512.25)
    with pytest.raises(DatasetValidationError, match="outside the image"):
        _convert_jsrt_512(beyond, tmp_path / "raw_beyond")


def test_jsrt_case_jpcln089_converts_without_dropping(shared_data: Path, tmp_path: Path) -> None:
    """The case itself, where the shared data holds it (the 195-case ``jsrt_512`` does not)."""
    source = shared_data / "jsrt_512"
    if not (source / "landmarks" / "JPCLN089.json").is_file():
        pytest.skip(f"JPCLN089 is not in {source} (195 of the 247 JSRT cases)")
    folder = tmp_path / "case"
    for sub, suffix in (("images", ".png"), ("landmarks", ".json")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / f"JPCLN089{suffix}").write_bytes((source / sub / f"JPCLN089{suffix}").read_bytes())
    result = _convert_jsrt_512(folder, tmp_path / "raw")  # conversion errors raise
    assert not [issue for issue in result.report.issues if "outside" in issue.problem]
    assert read_landmarks(result.dataset_folder / "landmarksTr" / "JPCLN089.json").present.all()


def test_hamedan_cases_round_trip_at_a_stated_spacing(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "hamedan_ceph"
    inputs = ConversionInputs((folder / "images",), landmarks=HamedanFile(folder / "landmarks.json"),
                              cases=("001", "002", "086"))
    settings = ConversionSettings(5, "Hamedan", raw_folder=tmp_path, pixel_spacing_mm=(0.1,),
                                  pixel_spacing_note="nominal, not documented", num_folds=2, progress=False)
    result = convert_dataset(inputs, settings)
    dataset = result.dataset_folder
    assert result.annotations == {"001": "landmark_only", "002": "landmark_only", "086": "landmark_only"}
    assert result.dataset_json["labels"] == {"background": 0, "ignore": 1}
    assert result.dataset_json["pixel_spacing"]["source"] == "nominal, not documented"
    source = json.loads((folder / "landmarks.json").read_text())["cases"]
    for case in ("001", "002", "086"):
        landmarks = read_landmarks(dataset / "landmarksTr" / f"{case}.json")
        index = _geometry(dataset / "imagesTr" / f"{case}_0000.nii.gz").world_to_index(landmarks.points_mm)
        expected = np.array([point if point is not None else [np.nan, np.nan] for point in source[case]["mean"]])
        np.testing.assert_allclose(index[:, ::-1], expected, atol=1e-6, rtol=0)
        # 0.1 mm/px: a landmark at column 1000 lies 100 mm from the origin.
        assert landmarks.points_mm[0, 0] == pytest.approx(source[case]["mean"][0][0] * 0.1, rel=1e-6)
    warned = {(issue.case, issue.file) for issue in result.report.warnings}
    assert ("086", str(folder / "landmarks.json")) in warned and ("002", str(folder / "landmarks.json")) in warned
    assert (dataset / "labelsTr" / "086.nii.gz").is_file() and (_array(dataset / "labelsTr" / "086.nii.gz") == 1).all()


def test_mni152_afids_fcsv_in_ras_land_on_the_same_voxels(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "mni152_afids"
    (tmp_path / "images").mkdir()
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "images" / "mni.nii.gz").symlink_to(folder / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    (tmp_path / "landmarks" / "mni.fcsv").symlink_to(folder / "tpl-MNI152NLin2009cSym_afids.fcsv")
    inputs = ConversionInputs((tmp_path / "images",),
                              landmarks=LandmarkFolder(tmp_path / "landmarks", "fcsv", name_field="description"))
    settings = ConversionSettings(7, "MNI", raw_folder=tmp_path / "raw", channel_names=("T1",), progress=False)
    result = convert_dataset(inputs, settings)
    written = read_landmarks(result.dataset_folder / "landmarksTr" / "mni.json")
    assert len(written.names) == 32 and written.names[:2] == ("AC", "PC")
    # The fcsv holds RAS; the dataset holds LPS: x and y negated.
    ras = np.array([[float(cell) for cell in line.split(",")[1:4]]
                    for line in (folder / "tpl-MNI152NLin2009cSym_afids.fcsv").read_text().splitlines()
                    if line and not line.startswith("#")])
    np.testing.assert_allclose(written.points_mm, ras_to_lps(ras), atol=1e-9)
    source_geometry = _geometry(folder / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    source_index = source_geometry.world_to_index(ras_to_lps(ras))
    written_index = _geometry(result.dataset_folder / "imagesTr" / "mni_0000.nii.gz").world_to_index(written.points_mm)
    np.testing.assert_allclose(written_index, source_index, atol=1e-6)
    # Anatomy: AC lies anterior to PC (smaller LPS y), both within 1 mm of the mid-sagittal plane x = 0.
    ac, pc = written.points_mm[0], written.points_mm[1]
    assert ac[1] < pc[1] and abs(ac[0]) < 1.0 and abs(pc[0]) < 1.0
    assert "splits_final.json not written" in result.report.warnings[0].problem


def test_totalseg_vertebra_centroids_as_landmarks(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "totalseg_ct"
    names = {int(value): name for value, name in json.loads((folder / "labels.json").read_text())["labels"].items()}
    for sub, source in (("images", "example_ct_sm.nii.gz"), ("masks", "example_seg.nii.gz")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "ct.nii.gz").symlink_to(folder / source)
    vertebrae = {name: value for value, name in names.items() if name in
                 ("vertebrae_T11", "vertebrae_T12", "vertebrae_L1", "vertebrae_L2")}
    inputs = ConversionInputs(
        (tmp_path / "images",),
        masks=LabelMapMasks(tmp_path / "masks", {name: value for value, name in sorted(names.items())}),
        landmarks=LabelCentroids(tmp_path / "masks", vertebrae),
    )
    settings = ConversionSettings(
        8, "TotalSegCT", raw_folder=tmp_path / "raw", channel_names=("CT",), progress=False,
        landmarks=LandmarkOptions(bridge={name: (name,) for name in vertebrae}),
    )
    result = convert_dataset(inputs, settings)
    dataset = result.dataset_folder
    labels = result.dataset_json["labels"]
    # 41 labels renumbered 1..41 in value order, no ignore label (the only case has a mask).
    assert list(labels.values()) == list(range(42)) and "ignore" not in labels
    label_path = dataset / "labelsTr" / "ct.nii.gz"
    label_image = sitk.ReadImage(str(label_path))
    source_image = sitk.ReadImage(str(folder / "example_seg.nii.gz"))
    np.testing.assert_allclose(label_image.GetDirection(), source_image.GetDirection(), atol=1e-6)
    spec = LandmarkSpec.from_dataset_json(dataset / "dataset.json")
    written = read_landmarks(dataset / "landmarksTr" / "ct.json", spec)
    index = ImageGeometry.from_sitk(label_image).world_to_index(written.points_mm)
    label_array = sitk.GetArrayFromImage(label_image)
    source_array = sitk.GetArrayFromImage(source_image)
    for row, name in enumerate(written.names):
        np.testing.assert_allclose(index[row], np.argwhere(label_array == labels[name]).mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(index[row], np.argwhere(source_array == vertebrae[name]).mean(axis=0), atol=1e-6)
    # The vertebrae stack along z: L2 is the lowest (smallest LPS z), T11 the highest.
    z = dict(zip(written.names, written.points_mm[:, 2]))
    assert z["vertebrae_L2"] < z["vertebrae_L1"] < z["vertebrae_T12"] < z["vertebrae_T11"]
