"""Quality control: plausible masks pass, implausible ones are flagged with a reason, Dice where a reference exists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pseudo_labels.prompts import fill_polygon
from pseudo_labels.quality import QualityThresholds, assess_mask, hull_size, landmark_surface_distances_mm

ANGLES = np.linspace(0, 2 * np.pi, 24, endpoint=False)
DISC_LANDMARKS = np.stack([32 + 20 * np.sin(ANGLES), 32 + 20 * np.cos(ANGLES)], axis=1)


def disc_mask() -> np.ndarray:
    return fill_polygon(DISC_LANDMARKS, (64, 64))


def test_a_mask_traced_by_its_landmarks_is_plausible() -> None:
    quality = assess_mask(disc_mask(), DISC_LANDMARKS, (0.5, 0.5), QualityThresholds(), predicted_iou=0.9)
    # Hull of the 24-gon = polygon area ~ 0.989 * pi * 20^2 px = 1243 px = 310.7 mm^2 at 0.5 mm; the filled
    # mask counts pixel centres inside it, so the ratio is 1 within pixel counting (~2 %).
    assert quality.hull_size == pytest.approx(0.5 * 24 * 400 * np.sin(2 * np.pi / 24) * 0.25, rel=1e-9)
    assert quality.size_ratio == pytest.approx(1.0, abs=0.03)
    # Landmarks lie on the boundary: within one pixel (0.5 mm) of a surface-voxel centre.
    assert quality.landmark_distance_mm <= 0.5
    assert not quality.implausible and quality.reasons == () and quality.dice is None
    assert quality.size_unit == "mm2"


@pytest.mark.parametrize(
    ("mask_kind", "predicted_iou", "reason"),
    [
        ("empty", 0.9, "empty mask"),
        ("disc", 0.2, "predicted IoU 0.200 < 0.5"),
        ("quarter", 0.9, "size ratio"),
        ("everything", 0.9, "size ratio"),
    ],
)
def test_implausible_masks_are_flagged_with_the_reason(mask_kind: str, predicted_iou: float, reason: str) -> None:
    mask = {
        "empty": np.zeros((64, 64), bool),
        "disc": disc_mask(),
        "quarter": disc_mask() & (np.arange(64)[:, None] < 32) & (np.arange(64)[None, :] < 32),
        "everything": np.ones((64, 64), bool),
    }[mask_kind]
    quality = assess_mask(mask, DISC_LANDMARKS, (1.0, 1.0), QualityThresholds(), predicted_iou=predicted_iou)
    assert quality.implausible
    assert any(reason in text for text in quality.reasons), quality.reasons


def test_far_landmarks_are_flagged_and_checks_can_be_switched_off() -> None:
    # Shifted by (40, 40) px: every landmark is >= |shift| - 2 r = 56.6 - 40 = 16.6 mm from the disc's surface.
    shifted = DISC_LANDMARKS + np.array([40.0, 40.0])
    quality = assess_mask(disc_mask(), shifted, (1.0, 1.0), QualityThresholds(max_size_ratio=None))
    assert any("landmark-to-surface" in text for text in quality.reasons)
    relaxed = QualityThresholds(None, None, None, None)
    assert not assess_mask(np.ones((64, 64), bool), shifted, (1.0, 1.0), relaxed, predicted_iou=0.0).implausible


def test_dice_against_a_reference_and_degenerate_hulls() -> None:
    mask = disc_mask()
    quality = assess_mask(mask, DISC_LANDMARKS, (1.0, 1.0), QualityThresholds(), reference=mask)
    assert quality.dice == 1.0
    two_points = DISC_LANDMARKS[:2]
    assert hull_size(two_points, (1.0, 1.0)) == 0.0
    assert math.isnan(assess_mask(mask, two_points, (1.0, 1.0), QualityThresholds()).size_ratio)
    collinear = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert hull_size(collinear, (1.0, 1.0)) == 0.0


def test_3d_sizes_are_volumes() -> None:
    cube = np.zeros((10, 10, 10), bool)
    cube[2:8, 2:8, 2:8] = True
    corners = np.array([[z, y, x] for z in (2, 7) for y in (2, 7) for x in (2, 7)], dtype=float)
    quality = assess_mask(cube, corners, (2.0, 1.0, 1.0), QualityThresholds())
    # 216 voxels of 2 mm^3; hull of the corner centres: 10 x 5 x 5 mm = 250 mm^3.
    assert quality.mask_size == 432.0 and quality.hull_size == pytest.approx(250.0)
    assert quality.size_unit == "mm3"
    distances = landmark_surface_distances_mm(cube, corners, (2.0, 1.0, 1.0))
    assert np.all(distances == 0.0)  # the corners are surface voxels


def test_threshold_validation() -> None:
    with pytest.raises(ValueError, match="min_size_ratio"):
        QualityThresholds(min_size_ratio=2.0, max_size_ratio=1.0)
    with pytest.raises(ValueError, match="max_landmark_distance_mm"):
        QualityThresholds(max_landmark_distance_mm=-1.0)
