"""Landmark readers of pixel formats (LabelMe, ISBI text, JSRT groups, Hamedan) and their problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conversion_helpers import write_labelme

from dataset_conversion.landmark_sources import (
    JSRT_OUTER_EDGE_INSET_PX,
    HamedanFile,
    LandmarkFolder,
    NameMapping,
    PixelLandmarks,
    jsrt_pixel_centres,
    label_centroids,
    read_hamedan,
    read_isbi_text,
    read_jsrt_groups,
    read_labelme,
)
from dataset_conversion.validation import ValidationReport
from nnunet_babloss.core.landmarks.geometry import ImageGeometry, contains_index
from nnunet_babloss.core.landmarks.io import LandmarkSet


def test_labelme_points_keep_order_and_declared_size(tmp_path: Path) -> None:
    path = write_labelme(tmp_path / "a.json", {"l2": [3.5, 1.0], "l1": [0.0, 7.25]}, (40, 30))
    landmarks = read_labelme(path, ValidationReport())
    assert landmarks is not None
    assert landmarks.names == ("l2", "l1") and landmarks.points_px.tolist() == [[3.5, 1.0], [0.0, 7.25]]
    assert landmarks.image_size == (40, 30)


@pytest.mark.parametrize(
    ("policy", "expected_row", "severity"),
    [("drop", [np.nan, np.nan], "warning"), ("first", [1.0, 2.0], "warning"), ("error", None, "error")],
)
def test_labelme_duplicate_label_follows_the_policy_and_names_the_file(
    tmp_path: Path, policy: str, expected_row: list[float] | None, severity: str
) -> None:
    path = write_labelme(tmp_path / "086.json", [("l5", [1.0, 2.0]), ("l6", [5.0, 5.0]), ("l5", [9.0, 9.0])])
    report = ValidationReport()
    landmarks = read_labelme(path, report, duplicates=policy)  # type: ignore[arg-type]
    (issue,) = report.issues
    assert issue.severity == severity and issue.file == str(path)
    assert "'l5' appears 2 times" in issue.problem
    if expected_row is None:
        assert landmarks is None
    else:
        assert landmarks is not None and landmarks.names == ("l5", "l6")
        np.testing.assert_array_equal(landmarks.points_px[0], expected_row)


def test_labelme_skips_non_point_shapes_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"shapes": [
        {"label": "p", "points": [[1, 2]], "shape_type": "point"},
        {"label": "outline", "points": [[0, 0], [1, 1], [2, 0]], "shape_type": "polygon"},
    ]}))
    report = ValidationReport()
    landmarks = read_labelme(path, report)
    assert landmarks is not None and landmarks.names == ("p",)
    assert "polygon" in report.warnings[0].problem


def test_isbi_text_stops_at_the_classification_lines(tmp_path: Path) -> None:
    # ISBI 2015 files: 19 "x,y" lines, then single numbers (classification labels).
    path = tmp_path / "001.txt"
    path.write_text("835,996\n1473,1029\n1289,1279\n1\n3\n")
    landmarks = read_isbi_text(path, ValidationReport())
    assert landmarks is not None and landmarks.names == ("l1", "l2", "l3")
    assert landmarks.points_px[2].tolist() == [1289.0, 1279.0]


def test_isbi_text_with_too_few_lines_names_file_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "001.txt"
    path.write_text("1 2\n3 4\n")
    report = ValidationReport()
    assert read_isbi_text(path, report, names=("S", "N", "Or")) is None
    assert report.errors[0].file == str(path) and "2 coordinate lines" in report.errors[0].problem


def test_jsrt_groups_are_named_group_index(jsrt_fixture: Path) -> None:
    path = jsrt_fixture / "landmarks" / "JPCLN001.json"
    landmarks = read_jsrt_groups(path, ValidationReport())
    assert landmarks is not None
    # 44 + 50 + 26 + 23 + 23 = 166 landmarks, two-digit indices from 0.
    assert len(landmarks.names) == 166
    assert landmarks.names[:2] == ("RL_00", "RL_01") and "RL_43" in landmarks.names and "LL_49" in landmarks.names
    assert landmarks.image_size == (256, 256) and landmarks.pixel_spacing_mm == (1.4, 1.4)
    source = json.loads(path.read_text())["landmarks"]
    # The files count from pixel edges; the package from pixel centres (see jsrt_pixel_centres).
    assert landmarks.points_px[landmarks.names.index("H_03")].tolist() == [value - 0.5 for value in source["H"][3]]


def test_jsrt_pixel_edges_become_pixel_centres_and_the_far_edge_stays_inside() -> None:
    # A 4 x 3 image spans x in [0, 4], y in [0, 3] in the files' edge frame; in ours [-0.5, 3.5) x [-0.5, 2.5).
    points = np.array([[0.0, 0.0], [0.5, 1.5], [4.0, 3.0], [4.25, 1.0], [np.nan, np.nan]])
    centres = jsrt_pixel_centres(points, (4, 3))
    np.testing.assert_array_equal(centres[:2], [[-0.5, -0.5], [0.0, 1.0]])  # near edge; centre of pixel (0, 1)
    np.testing.assert_allclose(centres[2], [3.5 - JSRT_OUTER_EDGE_INSET_PX, 2.5 - JSRT_OUTER_EDGE_INSET_PX], rtol=0,
                               atol=1e-12)  # far corner: moved just inside, onto the last pixel
    assert contains_index(centres[:3, ::-1], (3, 4)).all()
    assert centres[3].tolist() == [3.75, 0.5] and not contains_index(centres[3:4, ::-1], (3, 4)).any()
    assert np.isnan(centres[4]).all()
    np.testing.assert_array_equal(jsrt_pixel_centres(points[2:3]), [[3.5, 2.5]])  # no size: nothing moved
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        jsrt_pixel_centres(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="image_size_wh"):
        jsrt_pixel_centres(points, (4, 0))


def test_hamedan_missing_points_are_warnings_naming_file_case_and_landmark(shared_data: Path) -> None:
    path = shared_data / "hamedan_ceph" / "landmarks.json"
    report = ValidationReport()
    cases = read_hamedan(path, report, annotator="mollabashi")
    assert len(cases) == 100 and not report.has_errors
    # The README: annotator mollabashi missed l16 in file 086 (index 15 of l1..l19).
    assert np.isnan(cases["086"].points_px[15]).all()
    problems = [(issue.file, issue.case, issue.problem) for issue in report.warnings]
    assert any(file == str(path) and case == "086" and "'l16' is missing" in problem
               for file, case, problem in problems), problems


def test_hamedan_mean_reports_who_missed_the_point(shared_data: Path) -> None:
    report = ValidationReport()
    read_hamedan(shared_data / "hamedan_ceph" / "landmarks.json", report, annotator="mean")
    messages = [issue.problem for issue in report.warnings if issue.case == "086"]
    assert any("'l16'" in message and "mollabashi" in message for message in messages), messages


def test_hamedan_annotators_differ_and_mean_lies_between(shared_data: Path) -> None:
    path = shared_data / "hamedan_ceph" / "landmarks.json"
    points = {name: read_hamedan(path, ValidationReport(), annotator=name)["001"].points_px
              for name in ("mollabashi", "farhadifar", "mean")}
    # The mean of two annotators is their midpoint (to the file's 3 decimals).
    np.testing.assert_allclose(points["mean"], (points["mollabashi"] + points["farhadifar"]) / 2, atol=2e-3)
    assert not np.allclose(points["mollabashi"], points["farhadifar"])


def test_hamedan_unknown_annotator_is_an_error_listing_the_choices(shared_data: Path) -> None:
    report = ValidationReport()
    source = HamedanFile(shared_data / "hamedan_ceph" / "landmarks.json", annotator="someone")
    assert source.case_files(report) == {}
    assert "'someone' not in the file" in report.errors[0].problem and "mollabashi" in report.errors[0].problem


def test_hamedan_wrong_point_count_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps({"landmark_order": ["l1", "l2"], "cases": {"007": {"mean": [[1, 2]]}}}))
    report = ValidationReport()
    assert read_hamedan(path, report) == {}
    assert report.errors[0].case == "007" and "must list 2 points" in report.errors[0].problem


def test_pixel_landmarks_map_through_any_geometry_and_back() -> None:
    # Anisotropic spacing, an offset origin and a 90-degree rotation: world_to_index must give back (row, col).
    geometry = ImageGeometry(spacing_mm=(0.5, 2.0), origin_mm=(10.0, -3.0), direction=(0.0, -1.0, 1.0, 0.0))
    pixels = PixelLandmarks(("a", "b", "c"), [[0.0, 0.0], [3.25, 7.5], [np.nan, np.nan]])
    world = pixels.to_world(geometry)
    back = geometry.world_to_index(world.points_mm)[:, ::-1]
    np.testing.assert_allclose(back[:2], pixels.points_px[:2], atol=1e-12)
    assert np.isnan(back[2]).all()
    # Column 3.25 at 0.5 mm along ITK axis x, which the direction turns to world +y: y = -3 + 1.625.
    assert world.points_mm[1, 1] == pytest.approx(-3.0 + 3.25 * 0.5)


def test_label_centroids_are_voxel_means_in_array_order() -> None:
    labels = np.zeros((3, 4, 5), dtype=np.uint8)
    labels[1, 1:3, 2] = 7  # voxels (1, 1, 2) and (1, 2, 2): centroid (1, 1.5, 2)
    index, missing = label_centroids(labels, {"v7": 7, "v9": 9})
    assert index[0].tolist() == [1.0, 1.5, 2.0] and np.isnan(index[1]).all() and missing == ["v9"]


def test_name_mapping_selects_groups_and_renames() -> None:
    landmarks = LandmarkSet(("RL_00", "RL_01", "H_00"), [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    mapped = NameMapping(select=("RL_*",), rename={"RL_01": "apex"}).apply(landmarks, ValidationReport(), "f", "c")
    assert mapped is not None and mapped.names == ("RL_00", "apex")


def test_name_mapping_clash_is_an_error() -> None:
    landmarks = LandmarkSet(("a", "b"), [[0.0, 0.0], [1.0, 1.0]])
    report = ValidationReport()
    assert NameMapping(rename={"a": "b"}).apply(landmarks, report, "case.json", "c") is None
    assert report.errors[0].file == "case.json" and "['b'] occur twice" in report.errors[0].problem


def test_auto_format_sniffs_json_content(tmp_path: Path) -> None:
    write_labelme(tmp_path / "x.json", {"p": [1.0, 2.0]})
    (tmp_path / "y.json").write_text(json.dumps({"something": 1}))
    source = LandmarkFolder(tmp_path)
    report = ValidationReport()
    assert sorted(source.case_files(report)) == ["x", "y"]
    assert isinstance(source.load("x", report), PixelLandmarks)
    assert source.load("y", report) is None
    assert report.errors[0].file.endswith("y.json") and "cannot tell the landmark format" in report.errors[0].problem
