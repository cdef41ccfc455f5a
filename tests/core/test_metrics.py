"""Specification of nnunet_babloss.core.metrics: surface metrics against brute force, hand-derived examples, landmarks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from nnunet_babloss.core.metrics import (
    dice,
    hausdorff_distance_95,
    landmark_detection_summary,
    normalized_surface_dice,
    radial_errors_mm,
    segmentation_metrics,
    surface_distances_mm,
    surface_voxels,
)

JSRT_SPACING_MM = 1.4


# ----------------------------------------------------------------------------------------------------------------
# independent brute-force references
# ----------------------------------------------------------------------------------------------------------------
def brute_force_surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask, looking at each of the 2*ndim neighbours explicitly."""
    padded = np.pad(mask, 1, constant_values=False)
    centre = tuple(slice(1, -1) for _ in range(mask.ndim))
    surface = np.zeros(mask.shape, dtype=bool)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            neighbour = list(centre)
            neighbour[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            surface |= mask & ~padded[tuple(neighbour)]
    return surface


def brute_force_distances(a: np.ndarray, b: np.ndarray, spacing_mm: tuple[float, ...]) -> np.ndarray:
    """For each surface voxel of ``a`` (C order), the distance in mm to the nearest surface voxel of ``b``."""
    points_a = np.argwhere(brute_force_surface(a)) * np.asarray(spacing_mm)
    points_b = np.argwhere(brute_force_surface(b)) * np.asarray(spacing_mm)
    return cdist(points_a, points_b).min(axis=1)


def brute_force_hd95(a: np.ndarray, b: np.ndarray, spacing_mm: tuple[float, ...]) -> float:
    return max(
        float(np.percentile(brute_force_distances(a, b, spacing_mm), 95)),
        float(np.percentile(brute_force_distances(b, a, spacing_mm), 95)),
    )


def brute_force_nsd(a: np.ndarray, b: np.ndarray, spacing_mm: tuple[float, ...], tolerance_mm: float) -> float:
    # "<=" with the documented relative slack of 1e-6: cdist and the EDT may round the same distance apart by an
    # ulp (and float32 header spacings by more), and a distance equal to the tolerance must count either way.
    limit = tolerance_mm * (1 + 1e-6)
    a_to_b = brute_force_distances(a, b, spacing_mm)
    b_to_a = brute_force_distances(b, a, spacing_mm)
    return (np.sum(a_to_b <= limit) + np.sum(b_to_a <= limit)) / (a_to_b.size + b_to_a.size)


@st.composite
def blob_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Two non-empty random masks (2D or 3D, up to 9 voxels per axis) and an anisotropic spacing."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 9 if ndim == 2 else 7), min_size=ndim, max_size=ndim)))
    spacing = tuple(draw(st.lists(st.floats(0.25, 3.0), min_size=ndim, max_size=ndim)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density_a, density_b = draw(st.floats(0.1, 0.9)), draw(st.floats(0.1, 0.9))
    a = rng.random(shape) < density_a
    b = rng.random(shape) < density_b
    a.flat[rng.integers(a.size)] = True  # never empty: the empty cases have their own tests
    b.flat[rng.integers(b.size)] = True
    return a, b, spacing


# ----------------------------------------------------------------------------------------------------------------
# surface metrics against brute force
# ----------------------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(blob_pairs())
def test_surface_voxels_match_explicit_neighbour_check(pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]]) -> None:
    a, _, _ = pair
    np.testing.assert_array_equal(surface_voxels(a), brute_force_surface(a))


@settings(max_examples=60, deadline=None)
@given(blob_pairs())
def test_surface_distances_match_cdist(pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]]) -> None:
    a, b, spacing = pair
    a_to_b, b_to_a = surface_distances_mm(a, b, spacing)
    np.testing.assert_allclose(a_to_b, brute_force_distances(a, b, spacing), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b_to_a, brute_force_distances(b, a, spacing), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(blob_pairs(), st.floats(0.0, 6.0))
def test_hd95_and_nsd_match_brute_force(
    pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]], tolerance_mm: float
) -> None:
    a, b, spacing = pair
    assert hausdorff_distance_95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing), rel=1e-12)
    assert normalized_surface_dice(a, b, spacing, tolerance_mm) == pytest.approx(
        brute_force_nsd(a, b, spacing, tolerance_mm), abs=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(blob_pairs(), st.floats(0.0, 4.0))
def test_metrics_are_symmetric_and_perfect_on_identity(
    pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]], tolerance_mm: float
) -> None:
    a, b, spacing = pair
    assert dice(a, b) == dice(b, a)
    assert 0.0 <= dice(a, b) <= 1.0
    assert hausdorff_distance_95(a, b, spacing) == hausdorff_distance_95(b, a, spacing)
    assert normalized_surface_dice(a, b, spacing, tolerance_mm) == normalized_surface_dice(b, a, spacing, tolerance_mm)
    assert dice(a, a) == 1.0
    assert hausdorff_distance_95(a, a, spacing) == 0.0
    assert normalized_surface_dice(a, a, spacing, 0.0) == 1.0


@settings(max_examples=30, deadline=None)
@given(blob_pairs(), st.integers(1, 3))
def test_zero_padding_changes_nothing(pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]], pad: int) -> None:
    # Outside the array counts as background, so surrounding the masks with background is invisible.
    a, b, spacing = pair
    a_padded, b_padded = np.pad(a, pad), np.pad(b, pad)
    assert hausdorff_distance_95(a_padded, b_padded, spacing) == hausdorff_distance_95(a, b, spacing)
    assert normalized_surface_dice(a_padded, b_padded, spacing, 1.0) == normalized_surface_dice(a, b, spacing, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# hand-derived examples
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_boxes_offset_by_three_voxels(ndim: int) -> None:
    # A = box of side 6 voxels, B = A shifted by 3 voxels along x (last axis), spacing 0.5 mm along x and coarser
    # elsewhere. Every surface voxel p of A has p + 3 x-steps on B's surface (B is A shifted), so every distance is
    # <= 3 * 0.5 = 1.5 mm; A's face at x = 0 is >= 3 x-steps from all of B, so exactly 1.5 mm. That face holds
    # 6 of A's 20 surface voxels (2D: 36 - 16) or 36 of 152 (3D: 216 - 64), both > 5 %, so HD95 = 1.5 mm.
    shape = (12,) * ndim
    spacing = (2.0, 1.25, 0.5)[-ndim:]
    a = np.zeros(shape, dtype=bool)
    a[(slice(2, 8),) * ndim] = True
    b = np.roll(a, 3, axis=-1)
    assert hausdorff_distance_95(a, b, spacing) == pytest.approx(1.5)
    # Overlap: 3 of 6 columns along x -> |A ∩ B| = |A| / 2 -> Dice = 2 * (|A|/2) / (2 |A|) = 0.5.
    assert dice(a, b) == pytest.approx(0.5)
    # Inclusive tolerance: at 1.5 mm every surface voxel counts, just below it the x = 0 faces do not.
    assert normalized_surface_dice(a, b, spacing, 1.5) == 1.0
    assert normalized_surface_dice(a, b, spacing, 1.49) < 1.0


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("written_spacing_mm", [0.8, 0.3])
def test_float32_header_spacing_keeps_a_one_voxel_shift_within_a_one_voxel_tolerance(
    written_spacing_mm: float, ndim: int
) -> None:
    # An image header stores the spacing in float32: 0.8 becomes 0.800000011920929 and 0.3 becomes
    # 0.30000001192092896, both a little above the value the user types as the tolerance. Shifting a square (cube)
    # by one voxel along x puts every surface voxel at most one voxel from the other surface (the faces across
    # the shift at exactly one voxel), so at a tolerance of one voxel NSD is 1 (a 1e-9 slack gave 0.5 in 2D).
    header_spacing_mm = float(np.float32(written_spacing_mm))
    assert header_spacing_mm > written_spacing_mm
    a = np.zeros((8,) * ndim, dtype=bool)
    a[(slice(2, 6),) * ndim] = True
    b = np.roll(a, 1, axis=-1)
    spacing = (header_spacing_mm,) * ndim
    assert normalized_surface_dice(a, b, spacing, written_spacing_mm) == 1.0
    labels = a.astype(np.uint8), b.astype(np.uint8)
    assert segmentation_metrics(*labels, {"square": 1}, spacing, written_spacing_mm)["square"]["nsd"] == 1.0
    # The slack stays relative and small: a tolerance 0.01 % below one voxel leaves the shifted faces out.
    assert normalized_surface_dice(a, b, spacing, written_spacing_mm * (1 - 1e-4)) < 1.0


def test_float32_header_spacings_anisotropic_multi_voxel_shift() -> None:
    # Rows at float32(0.8), columns at float32(0.3); a 3-column shift is 3 * 0.30000001192092896 = 0.9000000358 mm,
    # which a 0.9 mm tolerance must include (no surface voxel is farther than the 3 columns from the other surface).
    spacing = (float(np.float32(0.8)), float(np.float32(0.3)))
    a = np.zeros((10, 16), dtype=bool)
    a[2:8, 3:10] = True
    b = np.roll(a, 3, axis=1)
    assert normalized_surface_dice(a, b, spacing, 0.9) == 1.0
    assert normalized_surface_dice(a, b, spacing, 0.9 * (1 - 1e-4)) < 1.0


def test_squares_offset_by_three_pixels_isotropic() -> None:
    # The classic case: two 10 x 10 squares, 3 pixels apart along x, 1.4 mm pixels -> HD95 = 3 * 1.4 = 4.2 mm,
    # Dice = 2 * 70 / 200 = 0.7.
    a = np.zeros((16, 16), dtype=bool)
    a[3:13, 1:11] = True
    b = np.zeros_like(a)
    b[3:13, 4:14] = True
    assert hausdorff_distance_95(a, b, JSRT_SPACING_MM) == pytest.approx(4.2)
    assert dice(a, b) == pytest.approx(0.7)


@pytest.mark.parametrize("spacing_mm", [1.0, 2.0])
def test_concentric_cubes(spacing_mm: float) -> None:
    # In the style of DeepMind's surface-distance tests. A = 3^3 cube, B = 5^3 cube, same centre.
    # S_A: 27 - 1 = 26 voxels, all 1 voxel from S_B (step outwards along the axis where |offset| = 1).
    # S_B: 125 - 27 = 98 voxels = 54 face voxels (distance 1), 36 edge voxels (sqrt 2), 8 corners (sqrt 3).
    # P95 of S_B -> S_A: sorted, index 0.95 * 97 = 92.15 lies among the corners (indices 90..97) -> sqrt 3.
    # HD95 = max(1, sqrt 3) * spacing.
    a = np.zeros((7, 7, 7), dtype=bool)
    a[2:5, 2:5, 2:5] = True
    b = np.zeros_like(a)
    b[1:6, 1:6, 1:6] = True
    assert hausdorff_distance_95(a, b, spacing_mm) == pytest.approx(math.sqrt(3) * spacing_mm)
    # NSD, tolerances inclusive: at 1 voxel 26 + 54 = 80 of 124 surface voxels; at sqrt 2: 80 + 36 = 116; at sqrt 3
    # all 124.
    assert normalized_surface_dice(a, b, spacing_mm, 1.0 * spacing_mm) == pytest.approx(80 / 124)
    assert normalized_surface_dice(a, b, spacing_mm, math.sqrt(2) * spacing_mm) == pytest.approx(116 / 124)
    assert normalized_surface_dice(a, b, spacing_mm, math.sqrt(3) * spacing_mm) == 1.0
    # Dice = 2 * 27 / (27 + 125) = 54 / 152.
    assert dice(a, b) == pytest.approx(54 / 152)


def test_single_voxels_with_anisotropic_spacing() -> None:
    # Offset (1, 2, 3) voxels at spacing (3, 2, 1) mm -> distance sqrt(3^2 + 4^2 + 3^2) = sqrt(34) ~ 5.83 mm.
    a = np.zeros((4, 5, 6), dtype=bool)
    b = np.zeros_like(a)
    a[1, 1, 1] = True
    b[2, 3, 4] = True
    spacing = (3.0, 2.0, 1.0)
    assert hausdorff_distance_95(a, b, spacing) == pytest.approx(math.sqrt(34))
    assert normalized_surface_dice(a, b, spacing, math.sqrt(34)) == 1.0
    assert normalized_surface_dice(a, b, spacing, 5.8) == 0.0
    assert dice(a, b) == 0.0


def test_hd95_is_max_of_directed_percentiles_not_pooled() -> None:
    # prediction = two voxels 20 mm apart, reference = the first one. Directed distances [0, 20] and [0]:
    # max(P95([0, 20]), P95([0])) = 0 + 0.95 * 20 = 19; the pooled convention (medpy) would give
    # P95([0, 0, 20]) = 0.9 * 20 = 18.
    prediction = np.zeros((1, 21), dtype=bool)
    prediction[0, [0, 20]] = True
    reference = np.zeros_like(prediction)
    reference[0, 0] = True
    assert hausdorff_distance_95(prediction, reference, 1.0) == pytest.approx(19.0)


def test_full_mask_has_its_surface_on_the_array_border() -> None:
    # A 4 x 5 all-True mask: its surface is the 4 * 5 - 2 * 3 = 14 border pixels.
    full = np.ones((4, 5), dtype=bool)
    assert int(surface_voxels(full).sum()) == 14
    assert not surface_voxels(full)[1:-1, 1:-1].any()


# ----------------------------------------------------------------------------------------------------------------
# empty masks and input validation
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_mask_conventions(ndim: int) -> None:
    empty = np.zeros((5,) * ndim, dtype=bool)
    blob = empty.copy()
    blob[(slice(1, 3),) * ndim] = True
    # Both empty: undefined.
    assert math.isnan(dice(empty, empty))
    assert math.isnan(hausdorff_distance_95(empty, empty, 1.0))
    assert math.isnan(normalized_surface_dice(empty, empty, 1.0, 1.0))
    # Exactly one empty: worst value, in both orders.
    for prediction, reference in ((empty, blob), (blob, empty)):
        assert dice(prediction, reference) == 0.0
        assert hausdorff_distance_95(prediction, reference, 1.0) == math.inf
        assert normalized_surface_dice(prediction, reference, 1.0, 100.0) == 0.0
    # The distances from the blob's 2^ndim surface voxels to nowhere are inf.
    blob_to_empty, empty_to_blob = surface_distances_mm(blob, empty, 1.0)
    assert blob_to_empty.shape == (2**ndim,) and np.all(np.isinf(blob_to_empty))
    assert empty_to_blob.shape == (0,)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        dice(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        hausdorff_distance_95(np.zeros((3, 4), bool), np.zeros((4, 3), bool), 1.0)


def test_invalid_inputs_are_rejected() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    with pytest.raises(ValueError, match="spacing_mm must have one value per array axis"):
        hausdorff_distance_95(mask, mask, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing_mm must be finite and > 0"):
        normalized_surface_dice(mask, mask, (1.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="tolerance_mm must be finite and >= 0"):
        normalized_surface_dice(mask, mask, 1.0, -1.0)
    with pytest.raises(ValueError, match="boolean mask"):
        dice(np.full((3, 4), 2), mask)
    # {0, 1} integer masks are accepted as masks.
    assert dice(np.ones((3, 4), dtype=np.uint8), np.ones((3, 4), dtype=bool)) == 1.0


# ----------------------------------------------------------------------------------------------------------------
# label maps: regions and ignore label
# ----------------------------------------------------------------------------------------------------------------
def random_label_maps(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=shape), rng.integers(0, 4, size=shape)


@pytest.mark.parametrize("shape", [(9, 11), (5, 6, 7)])
def test_segmentation_metrics_equal_the_per_mask_functions(shape: tuple[int, ...]) -> None:
    prediction, reference = random_label_maps(0, shape)
    spacing = (0.7, 1.3, 2.0)[-len(shape) :]
    results = segmentation_metrics(prediction, reference, {"one": 1, "two": [2], "one_or_three": (1, 3)}, spacing, 1.5)
    for name, values in (("one", (1,)), ("two", (2,)), ("one_or_three", (1, 3))):
        p, r = np.isin(prediction, values), np.isin(reference, values)
        assert results[name]["dice"] == dice(p, r)
        assert results[name]["hd95_mm"] == hausdorff_distance_95(p, r, spacing)
        assert results[name]["nsd"] == normalized_surface_dice(p, r, spacing, 1.5)
        assert results[name]["prediction_voxels"] == p.sum()
        assert results[name]["reference_voxels"] == r.sum()


def test_region_is_the_union_of_its_labels() -> None:
    # Left and right halves predicted with swapped labels: each label has Dice 0, the region {1, 2} Dice 1.
    reference = np.zeros((6, 8), dtype=np.int64)
    reference[1:5, 1:4], reference[1:5, 4:7] = 1, 2
    prediction = np.where(reference == 1, 2, np.where(reference == 2, 1, 0))
    results = segmentation_metrics(prediction, reference, {"right": 1, "left": 2, "lungs": (1, 2)}, 1.0, 1.0)
    assert results["right"]["dice"] == 0.0 and results["left"]["dice"] == 0.0
    assert results["lungs"]["dice"] == 1.0
    assert results["lungs"]["hd95_mm"] == 0.0
    assert results["lungs"]["nsd"] == 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_ignored_voxels_count_for_nothing(ndim: int) -> None:
    # Reference: a box of label 1, with its right part (x >= 5) unannotated (label 9). The prediction extends the
    # box far into the unannotated part: with ignore_label=9 it is perfect, without it is not.
    reference = np.zeros((10,) * ndim, dtype=np.int64)
    reference[(slice(2, 8),) * ndim] = 1
    reference[..., 5:] = 9
    prediction = np.zeros_like(reference)
    prediction[(slice(2, 8),) * (ndim - 1) + (slice(2, 10),)] = 1
    ignored = segmentation_metrics(prediction, reference, {"organ": 1}, 1.0, 0.0, ignore_label=9)["organ"]
    assert ignored == {"dice": 1.0, "hd95_mm": 0.0, "nsd": 1.0, "prediction_voxels": 3 * 6 ** (ndim - 1),
                       "reference_voxels": 3 * 6 ** (ndim - 1)}
    plain = segmentation_metrics(prediction, reference, {"organ": 1}, 1.0, 0.0)["organ"]
    assert plain["dice"] < 1.0 and plain["hd95_mm"] > 0.0


def test_reference_entirely_ignored_gives_nan() -> None:
    reference = np.full((4, 4), 255)
    prediction = np.ones((4, 4), dtype=np.int64)
    results = segmentation_metrics(prediction, reference, {"organ": 1}, 1.0, 1.0, ignore_label=255)
    assert all(math.isnan(results["organ"][key]) for key in ("dice", "hd95_mm", "nsd"))


def test_label_absent_from_both_maps_is_nan() -> None:
    zeros = np.zeros((4, 4), dtype=np.int64)
    results = segmentation_metrics(zeros, zeros, {"organ": 1}, 1.0, 1.0)["organ"]
    assert math.isnan(results["dice"]) and math.isnan(results["hd95_mm"]) and math.isnan(results["nsd"])


def test_invalid_label_specifications_are_rejected() -> None:
    labels = np.zeros((4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="ignore label 9"):
        segmentation_metrics(labels, labels, {"organ": (1, 9)}, 1.0, 1.0, ignore_label=9)
    with pytest.raises(ValueError, match="at least one label"):
        segmentation_metrics(labels, labels, {}, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"labels\['organ'\]"):
        segmentation_metrics(labels, labels, {"organ": ()}, 1.0, 1.0)
    with pytest.raises(ValueError, match="integer label map"):
        segmentation_metrics(labels.astype(float), labels, {"organ": 1}, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        segmentation_metrics(labels, np.zeros((4, 5), dtype=np.int64), {"organ": 1}, 1.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# landmarks
# ----------------------------------------------------------------------------------------------------------------
NAN2 = [math.nan, math.nan]


def test_radial_errors() -> None:
    # 3-4-5 triangle; rows 1 and 2 have an absent landmark on one side.
    predicted = np.array([[0.0, 0.0], NAN2, [1.0, 1.0]])
    reference = np.array([[3.0, 4.0], [1.0, 1.0], NAN2])
    errors = radial_errors_mm(predicted, reference)
    assert errors[0] == 5.0
    assert np.isnan(errors[1:]).all()


def test_radial_errors_reject_bad_shapes_and_rows() -> None:
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 3\)"):
        radial_errors_mm(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"partly-NaN row at index \(1,\)"):
        radial_errors_mm(np.array([[0.0, 0.0], [math.nan, 1.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="infinite"):
        radial_errors_mm(np.array([[0.0, math.inf]]), np.zeros((1, 2)))


def hand_example() -> tuple[np.ndarray, np.ndarray]:
    """2 cases x 3 landmarks, 2D.

    case 0: L0 error 2.0 | L1 error 5.0 (3-4-5) | L2 missed (reference only)
    case 1: L0 error 2.5 | L1 spurious (prediction only) | L2 absent in both
    """
    predicted = np.array([[[0.0, 0.0], [0.0, 0.0], NAN2], [[1.0, 1.0], [10.0, 10.0], NAN2]])
    reference = np.array([[[0.0, 2.0], [3.0, 4.0], [1.0, 1.0]], [[1.0, 3.5], NAN2, NAN2]])
    return predicted, reference


def test_landmark_summary_hand_example() -> None:
    predicted, reference = hand_example()
    summary = landmark_detection_summary(predicted, reference, thresholds_mm=(2.0, 2.5, 3.0, 4.0, 5.0))
    # Evaluated errors [2.0, 5.0, 2.5]: mean 9.5 / 3; median 2.5;
    # sample variance = (2^2 + 5^2 + 2.5^2 - 3 * (19/6)^2) / 2 = (35.25 - 361/12) / 2 = 31/12.
    assert summary["mre_mm"] == pytest.approx(9.5 / 3)
    assert summary["median_mm"] == pytest.approx(2.5)
    assert summary["sd_mm"] == pytest.approx(math.sqrt(31 / 12))
    # Inclusive thresholds: <= 2.0 -> {2.0}; <= 2.5 -> {2.0, 2.5}; <= 5.0 -> all three.
    assert summary["sdr"] == pytest.approx({"2.0": 1 / 3, "2.5": 2 / 3, "3.0": 2 / 3, "4.0": 2 / 3, "5.0": 1.0})
    assert (summary["n_evaluated"], summary["n_missed"], summary["n_spurious"]) == (3, 1, 1)
    assert summary["n_reference_absent_correct"] == 1
    first, second, third = summary["per_landmark"]
    # L0: errors [2.0, 2.5] -> mean 2.25, sd sqrt(2 * 0.25^2 / 1) = sqrt(0.125).
    assert (first["index"], first["mre_mm"], first["n_evaluated"]) == (0, pytest.approx(2.25), 2)
    assert first["sd_mm"] == pytest.approx(math.sqrt(0.125))
    # L1: one error, so no sample standard deviation; one spurious prediction.
    assert (second["mre_mm"], second["n_evaluated"], second["n_spurious"]) == (5.0, 1, 1)
    assert math.isnan(second["sd_mm"])
    # L2: never evaluated, missed once.
    assert math.isnan(third["mre_mm"]) and (third["n_evaluated"], third["n_missed"]) == (0, 1)


def test_missed_penalty_enters_the_statistics_but_not_the_counts() -> None:
    predicted, reference = hand_example()
    summary = landmark_detection_summary(predicted, reference, thresholds_mm=(4.0,), missed_penalty_mm=10.0)
    # Errors [2.0, 5.0, 2.5, 10.0]: mean 19.5 / 4; <= 4 mm: 2 of 4.
    assert summary["mre_mm"] == pytest.approx(19.5 / 4)
    assert summary["sdr"] == {"4.0": 0.5}
    assert (summary["n_evaluated"], summary["n_missed"]) == (3, 1)
    assert summary["per_landmark"][2]["mre_mm"] == 10.0


def test_sdr_threshold_is_inclusive_despite_rounding() -> None:
    # p + (0.3, 0.4) is 0.5 mm away from p, but floating point reports 0.5000000000000001.
    predicted = np.array([[[0.1, 0.2]]])
    reference = predicted + np.array([0.3, 0.4])
    assert radial_errors_mm(predicted[0], reference[0])[0] > 0.5
    assert landmark_detection_summary(predicted, reference, thresholds_mm=(0.5,))["sdr"] == {"0.5": 1.0}


def test_landmark_summary_accepts_a_list_of_cases() -> None:
    predicted, reference = hand_example()
    assert landmark_detection_summary(list(predicted), list(reference)) == landmark_detection_summary(
        predicted, reference
    )


def test_landmark_summary_rejects_bad_input() -> None:
    predicted, reference = hand_example()
    with pytest.raises(ValueError, match=r"\(2, 3, 2\).*\(2, 3, 3\)"):
        landmark_detection_summary(predicted, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"\(N, K, D\)"):
        landmark_detection_summary(predicted[0], reference[0])
    with pytest.raises(ValueError, match="distinct"):
        landmark_detection_summary(predicted, reference, thresholds_mm=(2, 2.0))
    with pytest.raises(ValueError, match="missed_penalty_mm"):
        landmark_detection_summary(predicted, reference, missed_penalty_mm=-1.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.sampled_from([2, 3]), st.integers(0, 2**32 - 1))
def test_landmark_summary_properties(n_cases: int, n_landmarks: int, dimension: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    predicted = rng.normal(scale=3.0, size=(n_cases, n_landmarks, dimension))
    reference = rng.normal(scale=3.0, size=(n_cases, n_landmarks, dimension))
    predicted[rng.random((n_cases, n_landmarks)) < 0.3] = math.nan
    reference[rng.random((n_cases, n_landmarks)) < 0.3] = math.nan
    summary = landmark_detection_summary(predicted, reference, thresholds_mm=(1.0, 2.0, 4.0, 8.0))
    # Every (case, landmark) pair is in exactly one class.
    total = (
        summary["n_evaluated"] + summary["n_missed"] + summary["n_spurious"] + summary["n_reference_absent_correct"]
    )
    assert total == n_cases * n_landmarks
    assert sum(entry["n_evaluated"] for entry in summary["per_landmark"]) == summary["n_evaluated"]
    errors = np.concatenate([radial_errors_mm(p, r) for p, r in zip(predicted, reference, strict=True)])
    if summary["n_evaluated"]:
        assert summary["mre_mm"] == pytest.approx(np.nanmean(errors))
        fractions = list(summary["sdr"].values())
        assert fractions == sorted(fractions)  # SDR never decreases with the threshold
    else:
        assert math.isnan(summary["mre_mm"]) and all(math.isnan(v) for v in summary["sdr"].values())


# ----------------------------------------------------------------------------------------------------------------
# real data: JSRT right lungs at 256 px, 1.4 mm
# ----------------------------------------------------------------------------------------------------------------
def read_right_lung(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) == 1  # exclusive label map: 1 = right lung


def test_jsrt_right_lungs(shared_data: Path) -> None:
    labels_dir = shared_data / "jsrt_fixture_256" / "labels"
    lung_a = read_right_lung(labels_dir / "JPCLN001.png")
    lung_b = read_right_lung(labels_dir / "JPCNN001.png")
    assert lung_a.any() and lung_b.any() and (lung_a != lung_b).any()

    expected_dice = 2 * np.logical_and(lung_a, lung_b).sum() / (lung_a.sum() + lung_b.sum())
    assert dice(lung_a, lung_b) == pytest.approx(expected_dice, rel=1e-12)
    spacing = (JSRT_SPACING_MM, JSRT_SPACING_MM)
    assert hausdorff_distance_95(lung_a, lung_b, spacing) == pytest.approx(
        brute_force_hd95(lung_a, lung_b, spacing), rel=1e-12
    )

    # A copy shifted by one pixel: each surface pixel has its shifted twin on the other surface, 1.4 mm away.
    assert not lung_a[:, -1].any()
    shifted = np.zeros_like(lung_a)
    shifted[:, 1:] = lung_a[:, :-1]
    assert normalized_surface_dice(lung_a, shifted, spacing, 1.4) == 1.0
    assert normalized_surface_dice(lung_a, shifted, spacing, 1.0) < 1.0
