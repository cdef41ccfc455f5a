"""Quality control of a pseudo mask against the landmarks that prompted it.

Per case and organ (:func:`assess_mask`):

* ``predicted_iou``: the model's own estimate of its mask's IoU (NaN for model-free strategies);
* ``mask_size`` / ``hull_size``: area (2D, mm²) or volume (3D, mm³) of the mask and of the convex hull of the
  organ's landmarks, and their ratio ``size_ratio``. Landmarks that surround the organ (contours, extreme points) give
  a ratio near 1 (a bit below for concave organs); the ratio is NaN when the hull is degenerate (fewer than
  ``D + 1`` landmarks, or all on a line/plane);
* ``landmark_distance_mm``: median distance from the organ's landmarks to the mask's surface voxels (centres, in mm):
  the landmarks lie on the organ boundary, so a good mask has them within a voxel or two;
* ``dice`` against a reference mask where one exists (cases annotated with both a mask and landmarks);
* ``implausible`` with its ``reasons``: an empty mask, or a value outside :class:`QualityThresholds`.

The default thresholds assume landmarks that surround the organ; set a bound to ``None`` to switch its check off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnunet_babloss.core.metrics import dice, surface_voxels

__all__ = ["MaskQuality", "QualityThresholds", "assess_mask", "hull_size", "landmark_surface_distances_mm"]


def _optional_bound(value: float | None, field: str, *, lower: float = 0.0) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not (math.isfinite(number) and number >= lower):
        raise ValueError(f"QualityThresholds.{field} must be None or a finite number >= {lower}, got {value!r}")
    return number


@dataclass(frozen=True)
class QualityThresholds:
    """Bounds outside which a pseudo mask is flagged implausible (``None`` switches a check off).

    Attributes:
        min_predicted_iou: Lowest acceptable model-predicted IoU (model strategies only).
        min_size_ratio: Lowest acceptable mask size / landmark hull size.
        max_size_ratio: Highest acceptable mask size / landmark hull size.
        max_landmark_distance_mm: Highest acceptable median landmark-to-mask-surface distance, mm.

    Raises:
        ValueError: (from the constructor) a negative or non-finite bound, an IoU bound above 1, or min > max ratio.
    """

    min_predicted_iou: float | None = 0.5
    min_size_ratio: float | None = 0.5
    max_size_ratio: float | None = 1.5
    max_landmark_distance_mm: float | None = 10.0

    def __post_init__(self) -> None:
        for field in ("min_predicted_iou", "min_size_ratio", "max_size_ratio", "max_landmark_distance_mm"):
            object.__setattr__(self, field, _optional_bound(getattr(self, field), field))
        if self.min_predicted_iou is not None and self.min_predicted_iou > 1.0:
            # An IoU is at most 1: a higher bound would flag every model mask implausible.
            raise ValueError(f"QualityThresholds.min_predicted_iou must be <= 1 (an IoU), got {self.min_predicted_iou}")
        if (
            self.min_size_ratio is not None
            and self.max_size_ratio is not None
            and self.min_size_ratio > self.max_size_ratio
        ):
            raise ValueError(
                f"QualityThresholds: min_size_ratio ({self.min_size_ratio}) must not exceed max_size_ratio "
                f"({self.max_size_ratio})"
            )

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready copy (for provenance)."""
        return asdict(self)


@dataclass(frozen=True)
class MaskQuality:
    """Quality measures of one pseudo mask (see the module docstring).

    Attributes:
        predicted_iou: Model estimate, NaN for model-free strategies.
        mask_size: Mask area (mm², 2D) or volume (mm³, 3D).
        hull_size: Convex-hull area/volume of the present landmarks, same unit; 0 when degenerate.
        size_unit: ``"mm2"`` or ``"mm3"``.
        size_ratio: ``mask_size / hull_size``, NaN when the hull is degenerate.
        landmark_distance_mm: Median landmark-to-mask-surface distance, mm; NaN for an empty mask.
        dice: Dice against the reference mask, ``None`` without one.
        implausible: Whether any check failed.
        reasons: Human-readable reasons, empty when plausible.
    """

    predicted_iou: float
    mask_size: float
    hull_size: float
    size_unit: str
    size_ratio: float
    landmark_distance_mm: float
    dice: float | None
    implausible: bool
    reasons: tuple[str, ...]


def _spacing(spacing_mm: Sequence[float], ndim: int) -> NDArray[np.float64]:
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if spacing.shape != (ndim,) or not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise ValueError(f"spacing_mm must be {ndim} positive numbers (array order), got {list(spacing_mm)}")
    return spacing


def _present(landmarks_vox: ArrayLike, ndim: int) -> NDArray[np.float64]:
    points = np.asarray(landmarks_vox, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != ndim:
        raise ValueError(f"landmarks_vox must have shape (K, {ndim}) to match the mask, got {points.shape}")
    return points[~np.isnan(points).any(axis=1)]


def hull_size(landmarks_vox: ArrayLike, spacing_mm: Sequence[float]) -> float:
    """Area (2D, mm²) or volume (3D, mm³) of the convex hull of the present landmarks; 0 when degenerate.

    Args:
        landmarks_vox: ``(K, D)`` voxel indices (array order), NaN rows ignored.
        spacing_mm: ``D`` spacings in array order, mm.
    """
    from scipy.spatial import ConvexHull, QhullError

    spacing = _spacing(spacing_mm, len(spacing_mm))
    points_mm = _present(landmarks_vox, spacing.size) * spacing
    if points_mm.shape[0] < spacing.size + 1:
        return 0.0
    try:
        return float(ConvexHull(points_mm).volume)
    except QhullError:  # all points on a line (2D) or a plane (3D)
        return 0.0


def landmark_surface_distances_mm(
    mask: ArrayLike, landmarks_vox: ArrayLike, spacing_mm: Sequence[float]
) -> NDArray[np.float64]:
    """Distance of each landmark to the nearest surface-voxel centre of ``mask``, mm.

    Args:
        mask: Bool mask ``(H, W)`` or ``(Z, Y, X)``.
        landmarks_vox: ``(K, D)`` voxel indices (array order); NaN rows give NaN.
        spacing_mm: ``D`` spacings in array order, mm.

    Returns:
        ``(K,)`` float64 distances; all NaN for an empty mask.
    """
    from scipy.spatial import cKDTree

    mask_bool = np.asarray(mask, dtype=bool)
    spacing = _spacing(spacing_mm, mask_bool.ndim)
    points = np.asarray(landmarks_vox, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != mask_bool.ndim:
        raise ValueError(f"landmarks_vox must have shape (K, {mask_bool.ndim}) to match the mask, got {points.shape}")
    distances = np.full(points.shape[0], np.nan)
    surface = np.argwhere(surface_voxels(mask_bool))
    present = ~np.isnan(points).any(axis=1)
    if surface.shape[0] == 0 or not present.any():
        return distances
    distances[present] = cKDTree(surface * spacing).query(points[present] * spacing)[0]
    return distances


def assess_mask(
    mask: ArrayLike,
    landmarks_vox: ArrayLike,
    spacing_mm: Sequence[float],
    thresholds: QualityThresholds,
    *,
    predicted_iou: float = math.nan,
    reference: ArrayLike | None = None,
) -> MaskQuality:
    """Measure a pseudo mask and flag it if implausible.

    Args:
        mask: Bool mask ``(H, W)`` or ``(Z, Y, X)``.
        landmarks_vox: ``(K, D)`` voxel indices of the organ's landmarks (array order), NaN rows ignored.
        spacing_mm: ``D`` spacings in array order, mm.
        thresholds: The bounds of the checks.
        predicted_iou: The model's estimate (NaN: not checked, e.g. model-free strategies).
        reference: Optional reference mask of the same shape (Dice reported, never used for the flag).

    Returns:
        The measures, the flag and its reasons.

    Raises:
        ValueError: shapes or spacing do not fit.
    """
    mask_bool = np.asarray(mask, dtype=bool)
    if mask_bool.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D, got shape {mask_bool.shape}")
    spacing = _spacing(spacing_mm, mask_bool.ndim)
    voxel_size = float(np.prod(spacing))
    size = float(np.count_nonzero(mask_bool)) * voxel_size
    hull = hull_size(landmarks_vox, spacing)
    ratio = size / hull if hull > 0 else math.nan
    distances = landmark_surface_distances_mm(mask_bool, landmarks_vox, spacing)
    median_distance = float(np.nanmedian(distances)) if np.isfinite(distances).any() else math.nan
    reference_dice = None
    if reference is not None:
        reference_bool = np.asarray(reference, dtype=bool)
        if reference_bool.shape != mask_bool.shape:
            raise ValueError(f"reference shape {reference_bool.shape} differs from mask shape {mask_bool.shape}")
        reference_dice = dice(mask_bool, reference_bool)
    reasons: list[str] = []
    if size == 0.0:
        reasons.append("empty mask")
    if thresholds.min_predicted_iou is not None and math.isfinite(predicted_iou):
        if predicted_iou < thresholds.min_predicted_iou:
            reasons.append(f"predicted IoU {predicted_iou:.3f} < {thresholds.min_predicted_iou}")
    if math.isfinite(ratio) and size > 0:
        if thresholds.min_size_ratio is not None and ratio < thresholds.min_size_ratio:
            reasons.append(f"mask/hull size ratio {ratio:.3f} < {thresholds.min_size_ratio}")
        if thresholds.max_size_ratio is not None and ratio > thresholds.max_size_ratio:
            reasons.append(f"mask/hull size ratio {ratio:.3f} > {thresholds.max_size_ratio}")
    if thresholds.max_landmark_distance_mm is not None and math.isfinite(median_distance):
        if median_distance > thresholds.max_landmark_distance_mm:
            reasons.append(
                f"median landmark-to-surface distance {median_distance:.1f} mm > {thresholds.max_landmark_distance_mm}"
            )
    return MaskQuality(
        predicted_iou=float(predicted_iou),
        mask_size=size,
        hull_size=hull,
        size_unit="mm2" if mask_bool.ndim == 2 else "mm3",
        size_ratio=ratio,
        landmark_distance_mm=median_distance,
        dice=reference_dice,
        implausible=bool(reasons),
        reasons=tuple(reasons),
    )
