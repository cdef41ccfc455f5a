"""The two definitions of HD95 and NSD, and the two SDR rules for missed landmarks, against values worked by hand.

Notation: masks are in array order; ``s0`` is the spacing along axis 0 (rows), ``s1`` along axis 1 (columns) and
``s2`` along axis 2. In the ``"surface"`` definition a voxel-corner point is written by its continuous index: the
corner between voxels ``i`` and ``i + 1`` of an axis sits at ``i + 0.5``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_babloss.cli.evaluate import build_parser
from nnunet_babloss.cli.evaluate import main as evaluate_main
from nnunet_babloss.core.evaluation import evaluate_folders
from nnunet_babloss.core.landmarks.io import LandmarkSet, write_landmarks
from nnunet_babloss.core.metrics import (
    SDR_MISSED_DEFINITIONS,
    SDR_MISSED_RULES,
    SURFACE_METRIC_DEFINITIONS,
    SURFACE_METRICS,
    SdrMissed,
    SurfaceMetric,
    hausdorff_distance_95,
    landmark_detection_summary,
    normalized_surface_dice,
    segmentation_metrics,
    weighted_surface_distances_mm,
)

METRICS: tuple[SurfaceMetric, ...] = ("voxel", "surface")
# Worked case A (2D, spacing (s0, s1) = (2, 1) mm): reference = pixel (1, 1), prediction = pixels (1, 1), (1, 2).
SPACING_2D_MM = (2.0, 1.0)
# Half the diagonal of a cell of voxel centres: the marching-squares segment that cuts off one corner.
CORNER_CUT_2D_MM = 0.5 * math.hypot(2.0, 1.0)  # sqrt(5) / 2


def case_a() -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros((3, 4), dtype=bool)
    reference[1, 1] = True
    prediction = reference.copy()
    prediction[1, 2] = True
    return prediction, reference


def test_worked_2d_case_voxel_definition() -> None:
    """Boundary voxels: S_R = {(1, 1)}, S_P = {(1, 1), (1, 2)} (a 1-pixel-thick mask is all boundary).

    R -> P: (1, 1) lies on S_P: [0].  P -> R: (1, 1) -> 0, (1, 2) -> one column = s1 = 1 mm: [0, 1].
    NSD at 0.5 mm = (1 + 1) / (1 + 2) = 2/3.
    HD95 = max(P95([0]), P95([0, 1])) = max(0, 0 + 0.95 * (1 - 0)) = 0.95 mm (linear interpolation).
    """
    prediction, reference = case_a()
    assert normalized_surface_dice(prediction, reference, SPACING_2D_MM, 0.5) == pytest.approx(2 / 3)
    assert hausdorff_distance_95(prediction, reference, SPACING_2D_MM) == pytest.approx(0.95)


def test_worked_2d_case_surface_definition() -> None:
    """Surface elements on the corner grid, each weighted by its marching-squares length.

    Reference (one pixel): its 4 corners (0.5 | 1.5, 0.5 | 1.5) each see one inside centre: a corner cut of
    length c = sqrt(s0^2 + s1^2) / 2 = sqrt(5)/2 mm each; total 4c.
    Prediction (pixels (1, 1) and (1, 2)): corners at column 0.5 and 2.5 see one inside centre (4 cuts of c);
    corners (0.5, 1.5) and (1.5, 1.5) see the two side-by-side centres: a straight segment across the cell along
    the columns, of length s1 = 1 mm (2 of them); total 4c + 2.
    Distances: every reference corner is also a prediction corner -> 0. Prediction corners at column 0.5 and 1.5
    are reference corners -> 0 (weights 2c + 2); those at column 2.5 are one column from the reference corners at
    1.5 -> s1 = 1 mm (weights 2c).
    NSD at 0.5 mm = (4c + 2c + 2) / (4c + 4c + 2) = (6c + 2) / (8c + 2) = 0.7957 (the voxel count says 0.667).
    HD95: R -> P is 0; P -> R: distance 0 holds (2c + 2) / (4c + 2) = 65 % of the length < 95 %, so the
    95th percentile is the next distance, 1 mm (the voxel definition interpolates to 0.95).
    """
    prediction, reference = case_a()
    c = CORNER_CUT_2D_MM
    distances = weighted_surface_distances_mm(prediction, reference, SPACING_2D_MM, "surface")
    assert sorted(distances.reference_weights) == pytest.approx([c] * 4)
    assert sorted(distances.prediction_weights) == pytest.approx([1.0, 1.0] + [c] * 4)
    assert np.all(distances.reference_to_prediction_mm == 0)
    assert sorted(zip(distances.prediction_to_reference_mm, distances.prediction_weights)) == pytest.approx(
        [(0.0, 1.0), (0.0, 1.0), (0.0, c), (0.0, c), (1.0, c), (1.0, c)]
    )
    nsd = normalized_surface_dice(prediction, reference, SPACING_2D_MM, 0.5, surface_metric="surface")
    assert nsd == pytest.approx((6 * c + 2) / (8 * c + 2))
    assert hausdorff_distance_95(prediction, reference, SPACING_2D_MM, surface_metric="surface") == 1.0


def test_touching_pixels_share_their_corner_grid_elements() -> None:
    """Reference = pixel (1, 1), prediction = pixel (1, 2), spacing (2, 1) mm: the two touch along one edge.

    Voxel: each mask is one boundary voxel, one column (1 mm) from the other: NSD at 0.5 mm = 0, HD95 = 1.
    Surface: each mask has 4 corner cuts of equal length; the 2 corners on the shared edge (column 1.5) belong to
    both (distance 0), the other 2 are one column away (1 mm): NSD at 0.5 mm = 4 / 8 = 0.5; HD95 = 1 (the lower
    half of the length is at 0, so the 95th percentile lies in the upper half).
    """
    reference = np.zeros((3, 4), dtype=bool)
    reference[1, 1] = True
    prediction = np.roll(reference, 1, axis=1)
    assert normalized_surface_dice(prediction, reference, SPACING_2D_MM, 0.5) == 0.0
    assert normalized_surface_dice(prediction, reference, SPACING_2D_MM, 0.5, surface_metric="surface") == 0.5
    for metric in METRICS:
        assert hausdorff_distance_95(prediction, reference, SPACING_2D_MM, surface_metric=metric) == 1.0


def test_worked_3d_case_with_a_thick_axis() -> None:
    """Spacing (s0, s1, s2) = (3, 1, 1) mm; reference = voxel (1, 1, 1), prediction = voxels (1, 1, 1), (2, 1, 1).

    Voxel: S_R = {v}, S_P = {v, v + e0}; R -> P: [0]; P -> R: [0, s0 = 3]. NSD at 1 mm = 2/3;
    HD95 = max(0, 0.95 * 3) = 2.85 mm.

    Surface: a corner seeing one inside centre carries the triangle through the midpoints of its three cell edges,
    (s0/2, 0, 0), (0, s1/2, 0), (0, 0, s2/2): area t = sqrt((s1 s2)^2 + (s0 s2)^2 + (s0 s1)^2) / 8 = sqrt(19)/8.
    A corner seeing two centres adjacent along axis 0 carries the rectangle through the midpoints of the four
    edges leaving them: s0 long and sqrt(s1^2 + s2^2)/2 wide, area q = 3 * sqrt(2)/2.
    Reference: 8 corners (axis-0 index 0.5 and 1.5), each t. Prediction: 4 corners at 0.5 and 4 at 2.5 (t each),
    4 at 1.5 (q each: they see both voxels).
    Distances: reference corners are prediction corners (0). Prediction corners at 0.5 (4t) and 1.5 (4q) are at 0;
    those at 2.5 (4t) are s0 = 3 mm from the reference corners at 1.5.
    NSD at 1 mm = (8t + 4t + 4q) / (8t + 8t + 4q) = (3t + q) / (4t + q) = 0.8733.
    HD95: P -> R has (4t + 4q) / (8t + 4q) = 83 % of its area at 0, so its 95th percentile is 3 mm.
    """
    spacing = (3.0, 1.0, 1.0)
    reference = np.zeros((4, 3, 3), dtype=bool)
    reference[1, 1, 1] = True
    prediction = reference.copy()
    prediction[2, 1, 1] = True
    assert normalized_surface_dice(prediction, reference, spacing, 1.0) == pytest.approx(2 / 3)
    assert hausdorff_distance_95(prediction, reference, spacing) == pytest.approx(2.85)

    t = math.sqrt(19) / 8
    q = 3 * math.sqrt(2) / 2
    distances = weighted_surface_distances_mm(prediction, reference, spacing, "surface")
    assert sorted(distances.reference_weights) == pytest.approx([t] * 8)
    assert sorted(distances.prediction_weights) == pytest.approx(sorted([t] * 8 + [q] * 4))
    assert normalized_surface_dice(prediction, reference, spacing, 1.0, surface_metric="surface") == pytest.approx(
        (3 * t + q) / (4 * t + q)
    )
    assert hausdorff_distance_95(prediction, reference, spacing, surface_metric="surface") == 3.0


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("metric", METRICS)
def test_both_definitions_share_the_empty_and_identical_mask_rules(ndim: int, metric: SurfaceMetric) -> None:
    mask = np.zeros((5,) * ndim, dtype=bool)
    mask[(slice(1, 4),) * ndim] = True
    empty = np.zeros_like(mask)
    spacing = (0.8,) * ndim
    assert hausdorff_distance_95(mask, mask, spacing, surface_metric=metric) == 0.0
    assert normalized_surface_dice(mask, mask, spacing, 0.0, surface_metric=metric) == 1.0
    assert math.isnan(hausdorff_distance_95(empty, empty, spacing, surface_metric=metric))
    assert math.isnan(normalized_surface_dice(empty, empty, spacing, 1.0, surface_metric=metric))
    for prediction, reference in ((mask, empty), (empty, mask)):
        assert hausdorff_distance_95(prediction, reference, spacing, surface_metric=metric) == math.inf
        assert normalized_surface_dice(prediction, reference, spacing, 9.0, surface_metric=metric) == 0.0


def test_surface_definition_is_symmetric_and_counts_the_array_border_as_background() -> None:
    rng = np.random.default_rng(3)
    a = rng.random((7, 9)) > 0.5
    b = rng.random((7, 9)) > 0.5
    spacing = (1.3, 0.7)
    assert hausdorff_distance_95(a, b, spacing, surface_metric="surface") == hausdorff_distance_95(
        b, a, spacing, surface_metric="surface"
    )
    assert normalized_surface_dice(a, b, spacing, 1.0, surface_metric="surface") == pytest.approx(
        normalized_surface_dice(b, a, spacing, 1.0, surface_metric="surface")
    )
    padded = [np.pad(mask, 3) for mask in (a, b)]
    assert normalized_surface_dice(*padded, spacing, 1.0, surface_metric="surface") == pytest.approx(
        normalized_surface_dice(a, b, spacing, 1.0, surface_metric="surface")
    )


def test_segmentation_metrics_use_the_chosen_definition() -> None:
    prediction, reference = (mask.astype(np.uint8) for mask in case_a())
    for metric in METRICS:
        result = segmentation_metrics(prediction, reference, {"organ": 1}, SPACING_2D_MM, 0.5, surface_metric=metric)
        assert result["organ"]["nsd"] == normalized_surface_dice(
            prediction.astype(bool), reference.astype(bool), SPACING_2D_MM, 0.5, surface_metric=metric
        )


def test_unknown_or_unsupported_definitions_are_errors() -> None:
    mask = np.ones((3, 3), dtype=bool)
    with pytest.raises(ValueError, match="surface_metric must be one of"):
        hausdorff_distance_95(mask, mask, 1.0, surface_metric="mesh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2D and 3D masks only, got 1 axes"):
        normalized_surface_dice(np.ones(4, bool), np.ones(4, bool), 1.0, 1.0, surface_metric="surface")
    with pytest.raises(ValueError, match="surface_metric"):
        labels = mask.astype(int)
        segmentation_metrics(labels, labels, {"a": 1}, 1.0, 1.0, surface_metric="voxels")  # type: ignore[arg-type]


def sdr_example() -> tuple[np.ndarray, np.ndarray]:
    """One case, six landmarks on the x axis (mm): errors 1, 3 and 5; one missed; one spurious; one absent in both."""
    reference = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]])
    predicted = np.array([[1.0, 0.0], [3.0, 0.0], [np.nan, np.nan], [5.0, 0.0], [7.0, 0.0], [np.nan, np.nan]])
    return predicted[None], reference[None]


def test_sdr_missed_rules_worked_values() -> None:
    """Evaluated errors [1, 3, 5] and one missed landmark.

    exclude: SDR@2.5 = |{1}| / 3 = 1/3, SDR@5 = 3/3 = 1.  fail: SDR@2.5 = 1 / (3 + 1) = 1/4, SDR@5 = 3/4.
    MRE is (1 + 3 + 5) / 3 = 3 mm under both rules; the spurious and the absent-in-both landmarks never count.
    """
    predicted, reference = sdr_example()
    excluded = landmark_detection_summary(predicted, reference, thresholds_mm=(2.5, 5.0))
    failed = landmark_detection_summary(predicted, reference, thresholds_mm=(2.5, 5.0), sdr_missed="fail")
    assert excluded["sdr"] == pytest.approx({"2.5": 1 / 3, "5.0": 1.0})
    assert failed["sdr"] == pytest.approx({"2.5": 1 / 4, "5.0": 3 / 4})
    for summary in (excluded, failed):
        assert summary["mre_mm"] == pytest.approx(3.0)
        assert (summary["n_evaluated"], summary["n_missed"], summary["n_spurious"]) == (3, 1, 1)
    # Only missed landmarks: nothing to average, but under "fail" the SDR is a defined 0.
    only_missed = landmark_detection_summary(predicted[:, 2:3], reference[:, 2:3], (2.0,), sdr_missed="fail")
    assert only_missed["sdr"] == {"2.0": 0.0} and math.isnan(only_missed["mre_mm"])
    with pytest.raises(ValueError, match="sdr_missed must be one of"):
        landmark_detection_summary(predicted, reference, sdr_missed="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give one of them"):
        landmark_detection_summary(predicted, reference, sdr_missed="fail", missed_penalty_mm=10.0)


def _write_case(folder, name: str, labels: np.ndarray) -> None:
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetSpacing(SPACING_2D_MM[::-1])  # ITK order (x = columns first)
    folder.mkdir(exist_ok=True)
    sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))


@pytest.fixture()
def worked_folders(tmp_path):
    prediction, reference = case_a()
    _write_case(tmp_path / "reference", "case", reference)
    _write_case(tmp_path / "prediction", "case", prediction)
    names = tuple(f"l{index}" for index in range(6))
    predicted_points, reference_points = sdr_example()
    (tmp_path / "reference_landmarks").mkdir()
    write_landmarks(tmp_path / "reference_landmarks" / "case.json", LandmarkSet(names, reference_points[0]))
    write_landmarks(tmp_path / "prediction" / "case.json", LandmarkSet(names, predicted_points[0]))
    dataset_json = {"labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset_json))
    return tmp_path, dataset_json


def test_summary_json_says_which_definition_each_number_uses(worked_folders) -> None:
    folder, dataset_json = worked_folders
    c = CORNER_CUT_2D_MM
    expected: dict[tuple[SurfaceMetric, SdrMissed], tuple[float, float, float]] = {
        ("voxel", "exclude"): (2 / 3, 0.95, 2 / 3),
        ("surface", "fail"): ((6 * c + 2) / (8 * c + 2), 1.0, 2 / 4),
    }
    for (metric, rule), (nsd, hd95, sdr_4mm) in expected.items():
        output = folder / f"out_{metric}_{rule}"
        summary = evaluate_folders(
            folder / "prediction", dataset_json, folder / "reference", folder / "reference_landmarks", output,
            nsd_tolerance_mm=0.5, surface_metric=metric, sdr_missed=rule,
        ).summary
        assert json.loads((output / "summary.json").read_text()) == summary
        assert (summary["surface_metric"], summary["sdr_missed"]) == (metric, rule)
        segmentation = summary["segmentation"]
        assert segmentation["mean_per_label"]["organ"]["nsd"] == pytest.approx(nsd)
        assert segmentation["mean_per_label"]["organ"]["hd95_mm"] == pytest.approx(hd95)
        definitions = segmentation["definitions"]
        assert definitions["surface_metric"] == metric
        assert SURFACE_METRIC_DEFINITIONS[metric]["nsd"] in definitions["nsd"] and "0.5 mm" in definitions["nsd"]
        assert SURFACE_METRIC_DEFINITIONS[metric]["hd95_mm"] in definitions["hd95_mm"]
        landmarks = summary["landmarks"]
        assert landmarks["sdr"]["4.0"] == pytest.approx(sdr_4mm)  # errors 1, 3 (5 fails); missed: 2/3 or 2/4
        assert landmarks["definitions"]["sdr_missed"] == rule
        assert SDR_MISSED_DEFINITIONS[rule] in landmarks["definitions"]["sdr"]
        assert landmarks["per_landmark"]["l2"]["sdr"]["4.0"] == (0.0 if rule == "fail" else None)


def test_cli_offers_both_definitions(worked_folders, capsys) -> None:
    folder, _ = worked_folders
    parser = build_parser()
    choices = {action.dest: action.choices for action in parser._actions}
    assert tuple(choices["surface_metric"]) == SURFACE_METRICS and tuple(choices["sdr_missed"]) == SDR_MISSED_RULES
    assert parser.parse_args(["--pred", "p", "-djfile", "d"]).surface_metric == "voxel"
    output = folder / "cli"
    assert evaluate_main([
        "--pred", str(folder / "prediction"), "-djfile", str(folder / "dataset.json"), "--ref-labels",
        str(folder / "reference"), "-o", str(output), "--nsd-tolerance-mm", "0.5", "--surface-metric", "surface",
    ]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["surface_metric"] == "surface"
    assert summary["segmentation"]["mean_per_label"]["organ"]["hd95_mm"] == 1.0
