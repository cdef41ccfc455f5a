"""Evaluation metrics: Dice, HD95 and normalised surface Dice for masks; radial error and SDR for landmarks.

Conventions (the numbers these functions return depend on them, so they are fixed here once):

* Arrays are in the package's array axis order (``(z, y, x)`` in 3D, ``(y, x)`` in 2D) and ``spacing_mm`` is
  given **in that same order** (the reverse of ITK's ``GetSpacing()``).
* Tolerances and thresholds are **inclusive** (``distance <= tolerance``), with a relative slack of ``1e-6``
  that absorbs floating-point rounding, including spacings read from float32 image headers (0.8 mm is stored as
  0.800000011920929): a distance of exactly one voxel counts at a tolerance of one voxel.
* **Empty masks**: a metric that is undefined is ``NaN`` (so callers can aggregate with ``numpy.nanmean``);
  a prediction that misses a present structure (or invents an absent one) is the worst value: Dice 0,
  HD95 ``inf``, NSD 0. See each function for its table.

HD95 and NSD have two definitions in use, selected by ``surface_metric`` (:data:`SURFACE_METRICS`; the sentence
each one stands for is in :data:`SURFACE_METRIC_DEFINITIONS`, which the evaluation writes into ``summary.json``):

* ``"voxel"`` (default; MONAI's default definitions): the surface of a mask is the set of its *boundary
  voxels* (mask voxels with a face neighbour, 4-neighbourhood in 2D and 6 in 3D, outside the mask; positions
  outside the array are background). Distances go from the centre of each boundary voxel of one mask to the
  centre of the nearest boundary voxel of the other; every voxel weighs 1. HD95 is the larger of the two directed
  95th percentiles with numpy's linear interpolation; NSD is the fraction of boundary voxels (of both masks) within
  the tolerance.
* ``"surface"`` (the challenge toolkits' definition: DeepMind's ``surface-distance``, used by the Medical
  Segmentation Decathlon and Nikolov et al.): surface elements sit on the grid of voxel corners (the points
  between voxel centres); a corner is on the surface when the 2 x 2 (x 2) voxels around it are neither all inside
  nor all outside, and it carries the length (2D, mm) or area (3D, mm^2) of the marching-squares / marching-cubes
  surface inside that cell of voxel centres (a line or triangles through the midpoints between an inside and an
  outside centre; a configuration and its complement share one triangulation, that of the minority corners).
  HD95 is the larger of the two directed, area-weighted 95th percentiles: the smallest distance whose surface
  elements, with all closer ones, make up at least 95 % of the area (no interpolation). NSD is the area within the
  tolerance over the area of both surfaces. Only 2D and 3D masks.

The two agree on identical masks and on masks far apart, and differ otherwise: two touching masks share the
corners between them (distance 0 in ``"surface"``, one voxel in ``"voxel"``), and per mm^2 of surface the voxel
count weighs parts whose normal lies along a coarse axis (thick-slice caps) more, by the spacing ratio.

Normalised surface Dice is the metric of Nikolov et al., "Clinically applicable segmentation of head and neck
anatomy for radiotherapy" (2021); marching cubes is Lorensen & Cline (1987).

Landmarks: the radial error is the Euclidean distance between a predicted and a reference point (in the units
of the inputs: mm for world points); MRE is its mean and SDR@t the fraction of errors ``<= t``. Absent landmarks
(NaN rows) are counted and reported, never silently dropped; how a *missed* landmark (reference present,
prediction absent) enters the SDR is chosen by ``sdr_missed`` (:data:`SDR_MISSED_RULES`): left out of the
denominator (``"exclude"``, default) or counted as a failure at every threshold (``"fail"``, as several landmark
challenge toolkits do).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = [
    "SDR_MISSED_DEFINITIONS",
    "SDR_MISSED_RULES",
    "SURFACE_METRICS",
    "SURFACE_METRIC_DEFINITIONS",
    "LandmarkDetectionSummary",
    "PerLandmarkSummary",
    "SdrMissed",
    "SurfaceMetric",
    "WeightedSurfaceDistances",
    "dice",
    "hausdorff_distance_95",
    "landmark_detection_summary",
    "normalized_surface_dice",
    "radial_errors_mm",
    "segmentation_metrics",
    "surface_distances_mm",
    "surface_voxels",
    "weighted_surface_distances_mm",
]

SurfaceMetric = Literal["voxel", "surface"]
SURFACE_METRICS: tuple[str, ...] = ("voxel", "surface")
# One sentence per definition and metric; the evaluation writes them into summary.json beside the numbers.
SURFACE_METRIC_DEFINITIONS: dict[str, dict[str, str]] = {
    "voxel": {
        "surface": "boundary voxels (mask voxels with a face neighbour outside the mask), each weighing 1; "
        "distances between voxel centres",
        "hd95_mm": "max of the two directed 95th percentiles (numpy linear interpolation) of the distances from the "
        "boundary voxels of one mask to the nearest boundary voxel of the other",
        "nsd": "number of boundary voxels of both masks within the tolerance of the other mask's boundary voxels, "
        "over the number of boundary voxels of both masks",
    },
    "surface": {
        "surface": "surface elements on the voxel-corner grid weighted by their marching-squares length (2D) or "
        "marching-cubes area (3D), as DeepMind's surface-distance",
        "hd95_mm": "max of the two directed area-weighted 95th percentiles (smallest distance within which at least "
        "95 % of the surface area lies; no interpolation)",
        "nsd": "surface area of both masks within the tolerance of the other surface, over the area of both "
        "surfaces",
    },
}
SdrMissed = Literal["exclude", "fail"]
SDR_MISSED_RULES: tuple[str, ...] = ("exclude", "fail")
SDR_MISSED_DEFINITIONS: dict[str, str] = {
    "exclude": "fraction of evaluated landmarks (reference and prediction present) with radial error <= t; missed "
    "landmarks (reference present, prediction absent) are left out of the denominator and counted in n_missed",
    "fail": "fraction of reference landmarks with radial error <= t; a missed landmark (reference present, "
    "prediction absent) counts as a failure at every threshold",
}

# Relative slack for inclusive comparisons (distance <= tolerance). Image headers (NIfTI, and nnU-Net's float32
# properties) store spacings in float32, which rounds a decimal spacing by up to 2**-24 ~ 6e-8 relative (0.8 ->
# 0.800000011920929, 0.3 -> 0.30000001192092896); every surface distance is a norm of multiples of the spacings, so it
# inherits that relative error, and scipy's EDT / numpy's norm add an ulp (hypot(0.1, 0.1) -> 0.14142135623730953).
# 1e-6 covers both with a 16x margin and is still far below any meaningful difference (10 nm at 10 mm).
_RELATIVE_SLACK = 1e-6


class WeightedSurfaceDistances(NamedTuple):
    """Directed surface distances of a pair of masks and the weight of each surface point (see
    :func:`weighted_surface_distances_mm`); all four arrays are float64 and 1D."""

    prediction_to_reference_mm: NDArray[np.float64]
    """For each surface point of the prediction, the distance in mm to the nearest surface point of the reference."""
    prediction_weights: NDArray[np.float64]
    """Weight of each prediction surface point: 1 (``"voxel"``), or its length in mm / area in mm^2 (``"surface"``)."""
    reference_to_prediction_mm: NDArray[np.float64]
    """For each surface point of the reference, the distance in mm to the nearest surface point of the prediction."""
    reference_weights: NDArray[np.float64]
    """Weight of each reference surface point."""


# ----------------------------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------------------------
def _as_mask(mask: ArrayLike, name: str) -> NDArray[np.bool_]:
    """A boolean array from a bool or {0, 1}-valued array; raise on anything else."""
    array = np.asarray(mask)
    if array.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be a boolean mask, got dtype {array.dtype}")
    values = np.unique(array)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(
            f"{name} must be a boolean mask (bool or values in {{0, 1}}), got values {values[:10].tolist()}"
        )
    return array.astype(bool)


def _check_same_shape(prediction: np.ndarray, reference: np.ndarray, what: str = "mask") -> None:
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference {what}s must have the same shape, "
            f"got prediction {prediction.shape} and reference {reference.shape}"
        )


def _as_spacing(spacing_mm: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """Per-axis spacing in mm (array order); a scalar means isotropic."""
    if np.ndim(spacing_mm) == 0:
        values = (float(spacing_mm),) * ndim  # type: ignore[arg-type]
    else:
        values = tuple(float(s) for s in spacing_mm)  # type: ignore[union-attr]
    if len(values) != ndim:
        raise ValueError(
            f"spacing_mm must have one value per array axis ({ndim}, array order), got {len(values)}: {values}"
        )
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing_mm must be finite and > 0 on every axis, got {values}")
    return values


def _check_tolerance(tolerance_mm: float) -> float:
    tolerance = float(tolerance_mm)
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm!r}")
    return tolerance


def _within(distances: np.ndarray, limit: float) -> np.ndarray:
    """``distances <= limit`` with the module's relative slack for rounding."""
    return distances <= limit * (1.0 + _RELATIVE_SLACK)


# ----------------------------------------------------------------------------------------------------------------
# overlap and surface metrics
# ----------------------------------------------------------------------------------------------------------------
def dice(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Dice coefficient ``2 |P ∩ R| / (|P| + |R|)`` of two masks.

    Args:
        prediction: Boolean (or {0, 1}) mask, any shape.
        reference: Boolean (or {0, 1}) mask, same shape.

    Returns:
        Dice in ``[0, 1]``; ``NaN`` when both masks are empty (undefined: aggregate with ``numpy.nanmean``).
        One empty and the other not gives 0.

    Raises:
        ValueError: if the shapes differ or an input is not a boolean mask.
    """
    prediction_mask = _as_mask(prediction, "prediction")
    reference_mask = _as_mask(reference, "reference")
    _check_same_shape(prediction_mask, reference_mask)
    total = int(np.count_nonzero(prediction_mask)) + int(np.count_nonzero(reference_mask))
    if total == 0:
        return math.nan
    return 2.0 * int(np.count_nonzero(prediction_mask & reference_mask)) / total


def surface_voxels(mask: ArrayLike) -> NDArray[np.bool_]:
    """The surface of a mask: its voxels with at least one face neighbour outside it.

    Positions outside the array count as background, so mask voxels on the array border are surface voxels.

    Args:
        mask: Boolean (or {0, 1}) mask, any number of axes.

    Returns:
        Boolean array of the same shape, ``True`` on surface voxels (a subset of ``mask``).

    Raises:
        ValueError: if ``mask`` is not a boolean mask.
    """
    mask_bool = _as_mask(mask, "mask")
    face_neighbourhood = ndimage.generate_binary_structure(mask_bool.ndim, 1)
    interior = ndimage.binary_erosion(mask_bool, structure=face_neighbourhood, border_value=0)
    return mask_bool & ~interior


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every ``True`` voxel of a non-empty mask."""
    slices = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        occupied = np.flatnonzero(np.any(mask, axis=other_axes))
        slices.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(slices)


def _surface_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances of two validated, same-shape boolean masks (see :func:`surface_distances_mm`)."""
    if not prediction.any() or not reference.any():
        prediction_count = int(np.count_nonzero(surface_voxels(prediction)))
        reference_count = int(np.count_nonzero(surface_voxels(reference)))
        return np.full(prediction_count, math.inf), np.full(reference_count, math.inf)
    # Cropping to the union's bounding box changes nothing: outside it both masks are background (so surfaces
    # are the same, the array border being background too) and every surface voxel lies inside it.
    box = _bounding_box(prediction | reference)
    prediction_surface = surface_voxels(prediction[box])
    reference_surface = surface_voxels(reference[box])
    to_reference_mm = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction_mm = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return (
        np.asarray(to_reference_mm[prediction_surface], dtype=np.float64),
        np.asarray(to_prediction_mm[reference_surface], dtype=np.float64),
    )


def surface_distances_mm(
    prediction: ArrayLike, reference: ArrayLike, spacing_mm: float | Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Directed distances between the boundary voxels of two masks (the ``"voxel"`` definition).

    Args:
        prediction: Boolean mask, shape ``(*spatial)`` (array order).
        reference: Boolean mask, same shape.
        spacing_mm: Voxel spacing in mm, one value per axis in array order (a scalar means isotropic).

    Returns:
        ``(prediction_to_reference_mm, reference_to_prediction_mm)``: for each surface voxel of the prediction
        (in C order of the array) the distance in mm to the nearest reference surface voxel, and vice versa.
        Distances from a non-empty surface to an empty one are ``inf``; an empty mask gives an empty array.

    Raises:
        ValueError: on different shapes, non-boolean masks or invalid spacing.
    """
    prediction_mask = _as_mask(prediction, "prediction")
    reference_mask = _as_mask(reference, "reference")
    _check_same_shape(prediction_mask, reference_mask)
    spacing = _as_spacing(spacing_mm, prediction_mask.ndim)
    return _surface_distances(prediction_mask, reference_mask, spacing)


def _check_surface_metric(surface_metric: str, ndim: int) -> str:
    if surface_metric not in SURFACE_METRICS:
        raise ValueError(f"surface_metric must be one of {list(SURFACE_METRICS)}, got {surface_metric!r}")
    if surface_metric == "surface" and ndim not in (2, 3):
        raise ValueError(f"surface_metric 'surface' is defined for 2D and 3D masks only, got {ndim} axes")
    return surface_metric


def _cell_configuration(code: int, ndim: int) -> NDArray[np.bool_]:
    """The ``(2,) * ndim`` inside/outside pattern of a cell code (bit ``i`` = voxel ``i`` of the cell, C order)."""
    return np.array([(code >> bit) & 1 for bit in range(2**ndim)], dtype=bool).reshape((2,) * ndim)


def _cell_codes(padded_mask: np.ndarray) -> NDArray[np.int32]:
    """The code of every cell of ``2**D`` neighbouring voxel centres; the cell grid is the voxel-corner grid, one
    shorter than the array on every axis (``padded_mask`` has a background margin, so every corner is there)."""
    ndim = padded_mask.ndim
    codes = np.zeros(tuple(size - 1 for size in padded_mask.shape), dtype=np.int32)
    for bit, offset in enumerate(itertools.product((0, 1), repeat=ndim)):
        window = tuple(slice(start, start + size - 1) for start, size in zip(offset, padded_mask.shape))
        codes |= padded_mask[window].astype(np.int32) << bit
    return codes


@functools.lru_cache(maxsize=1)
def _cell_triangles_3d() -> tuple[NDArray[np.float64], ...]:
    """Per cell code, the marching-cubes triangles ``(T, 3, 3)`` of a unit cell (vertex coordinates in array order).

    A configuration with more than four inside corners is triangulated as its complement, so that a cell and its
    complement share one surface (Lorensen & Cline's table; scikit-image's does not do this for 5-6 corners).
    """
    from skimage.measure import marching_cubes

    triangles = []
    for code in range(2**8):
        cell = _cell_configuration(code, 3)
        inside = int(np.count_nonzero(cell))
        if inside in (0, 8):
            triangles.append(np.zeros((0, 3, 3)))
            continue
        minority = cell if inside <= 4 else ~cell
        vertices, faces, _, _ = marching_cubes(minority.astype(np.float32), level=0.5, method="lorensen")
        # Unit-cell vertices are multiples of 0.5, exact in float32.
        triangles.append(np.asarray(vertices, dtype=np.float64)[faces])
    return tuple(triangles)


@functools.lru_cache(maxsize=32)
def _cell_surface_sizes(spacing: tuple[float, ...]) -> NDArray[np.float64]:
    """Length (2D, mm) or area (3D, mm^2) of the surface inside a cell, per cell code, at ``spacing`` (array order)."""
    if len(spacing) == 2:
        # Marching squares: the contour joins the midpoints between inside and outside centres.
        corner_cut = 0.5 * math.hypot(*spacing)
        sizes = np.zeros(2**4)
        for code in range(2**4):
            cell = _cell_configuration(code, 2)
            inside = int(np.count_nonzero(cell))
            if inside in (1, 3):
                sizes[code] = corner_cut
            elif inside == 2 and cell[0, 0] == cell[1, 1]:
                sizes[code] = 2 * corner_cut  # diagonal pair: two corner cuts
            elif inside == 2:
                # Two inside centres side by side: a straight line across the cell, along the axis they share.
                sizes[code] = spacing[1] if cell[0, 0] == cell[0, 1] else spacing[0]
        return sizes
    scale = np.asarray(spacing, dtype=np.float64)
    sizes = np.zeros(2**8)
    for code, triangles in enumerate(_cell_triangles_3d()):
        if len(triangles):
            scaled = triangles * scale
            normals = np.cross(scaled[:, 1] - scaled[:, 0], scaled[:, 2] - scaled[:, 0])
            sizes[code] = 0.5 * float(np.sum(np.linalg.norm(normals, axis=1)))
    return sizes


def _surface_elements(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(on_surface, size)`` on the corner grid of a background-padded mask: which corners carry a surface
    element, and its length / area."""
    codes = _cell_codes(mask)
    all_inside = 2 ** (2**mask.ndim) - 1  # every bit of the cell set
    on_surface = (codes != 0) & (codes != all_inside)
    return on_surface, _cell_surface_sizes(spacing)[codes]


def _element_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...]
) -> WeightedSurfaceDistances:
    """Surface-element distances and sizes of two validated, same-shape boolean 2D/3D masks."""
    if not prediction.any() or not reference.any():
        sizes = []
        for mask in (prediction, reference):
            if mask.any():
                on_surface, size = _surface_elements(np.pad(mask[_bounding_box(mask)], 1), spacing)
                sizes.append(size[on_surface])
            else:
                sizes.append(np.zeros(0))
        return WeightedSurfaceDistances(np.full(sizes[0].size, math.inf), sizes[0],
                                        np.full(sizes[1].size, math.inf), sizes[1])
    # One voxel of background around the union's box puts every corner of both masks on the grid.
    box = _bounding_box(prediction | reference)
    prediction_surface, prediction_size = _surface_elements(np.pad(prediction[box], 1), spacing)
    reference_surface, reference_size = _surface_elements(np.pad(reference[box], 1), spacing)
    to_reference_mm = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction_mm = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return WeightedSurfaceDistances(
        np.asarray(to_reference_mm[prediction_surface], dtype=np.float64), prediction_size[prediction_surface],
        np.asarray(to_prediction_mm[reference_surface], dtype=np.float64), reference_size[reference_surface],
    )


def _weighted_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...], surface_metric: str
) -> WeightedSurfaceDistances:
    if surface_metric == "surface":
        return _element_distances(prediction, reference, spacing)
    to_reference_mm, to_prediction_mm = _surface_distances(prediction, reference, spacing)
    return WeightedSurfaceDistances(
        to_reference_mm, np.ones(to_reference_mm.size), to_prediction_mm, np.ones(to_prediction_mm.size)
    )


def weighted_surface_distances_mm(
    prediction: ArrayLike,
    reference: ArrayLike,
    spacing_mm: float | Sequence[float],
    surface_metric: SurfaceMetric = "voxel",
) -> WeightedSurfaceDistances:
    """Directed distances between the surfaces of two masks, with the weight of every surface point.

    Args:
        prediction: Boolean mask, shape ``(*spatial)`` (array order; 2D or 3D for ``"surface"``).
        reference: Boolean mask, same shape.
        spacing_mm: Voxel spacing in mm, one value per axis in array order (a scalar means isotropic).
        surface_metric: ``"voxel"`` (boundary voxels, weight 1 each) or ``"surface"`` (corner-grid surface
            elements weighted by their length in mm (2D) or area in mm^2 (3D)); see the module docstring.

    Returns:
        A :class:`WeightedSurfaceDistances`; distances from a non-empty surface to an empty one are ``inf``, an
        empty mask has no surface points.

    Raises:
        ValueError: on different shapes, non-boolean masks, invalid spacing, an unknown ``surface_metric`` or
            ``"surface"`` on masks that are not 2D or 3D.
    """
    prediction_mask = _as_mask(prediction, "prediction")
    reference_mask = _as_mask(reference, "reference")
    _check_same_shape(prediction_mask, reference_mask)
    spacing = _as_spacing(spacing_mm, prediction_mask.ndim)
    metric = _check_surface_metric(surface_metric, prediction_mask.ndim)
    return _weighted_distances(prediction_mask, reference_mask, spacing, metric)


def _area_weighted_percentile(distances: np.ndarray, weights: np.ndarray, percent: float) -> float:
    """Smallest distance such that the points at or below it carry at least ``percent`` % of the weight."""
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(weights[order])
    # The tiny relative slack keeps a cut that falls exactly between two distances (e.g. 19 of 20 equal
    # weights) on the lower one despite the rounding of the cumulative sum.
    index = int(np.searchsorted(cumulative, percent / 100.0 * cumulative[-1] * (1.0 - 1e-12), side="left"))
    return float(distances[order][min(index, distances.size - 1)])


def _hd95_from_distances(distances: WeightedSurfaceDistances, surface_metric: str) -> float:
    to_reference_mm, prediction_weights, to_prediction_mm, reference_weights = distances
    if to_reference_mm.size == 0 and to_prediction_mm.size == 0:
        return math.nan
    if to_reference_mm.size == 0 or to_prediction_mm.size == 0:
        return math.inf
    if surface_metric == "surface":
        return max(
            _area_weighted_percentile(to_reference_mm, prediction_weights, 95.0),
            _area_weighted_percentile(to_prediction_mm, reference_weights, 95.0),
        )
    return float(max(np.percentile(to_reference_mm, 95.0), np.percentile(to_prediction_mm, 95.0)))


def _nsd_from_distances(distances: WeightedSurfaceDistances, tolerance_mm: float) -> float:
    to_reference_mm, prediction_weights, to_prediction_mm, reference_weights = distances
    if to_reference_mm.size + to_prediction_mm.size == 0:
        return math.nan
    if to_reference_mm.size == 0 or to_prediction_mm.size == 0:
        return 0.0
    within = float(np.sum(prediction_weights[_within(to_reference_mm, tolerance_mm)]))
    within += float(np.sum(reference_weights[_within(to_prediction_mm, tolerance_mm)]))
    return within / (float(np.sum(prediction_weights)) + float(np.sum(reference_weights)))


def hausdorff_distance_95(
    prediction: ArrayLike,
    reference: ArrayLike,
    spacing_mm: float | Sequence[float],
    *,
    surface_metric: SurfaceMetric = "voxel",
) -> float:
    """95th-percentile Hausdorff distance (HD95) between the surfaces of two masks, in mm.

    ``HD95 = max(P95(d(S_P -> S_R)), P95(d(S_R -> S_P)))``: the larger of the two *directed* 95th percentiles, the
    convention of DeepMind's ``surface-distance`` (``compute_robust_hausdorff``) and MONAI
    (``compute_hausdorff_distance``). What ``S`` and ``P95`` are depends on ``surface_metric``:

    * ``"voxel"``: boundary voxels, each weighing 1, numpy's linear interpolation between order statistics
      (MONAI's). ``medpy.metric.binary.hd95`` finds the same surface voxels and distances but takes one percentile
      of the *pooled* distances, which can be smaller: for prediction = two voxels 20 mm apart and reference = the
      first of them, the directed distances are ``[0, 20]`` and ``[0]``, so ours is ``P95([0, 20]) = 19`` and
      medpy's is ``P95([0, 0, 20]) = 18``.
    * ``"surface"``: corner-grid surface elements weighted by length/area, and the smallest distance within which
      95 % of the area lies (DeepMind's), without interpolation.

    ============================  =======
    masks                         HD95
    ============================  =======
    both empty                    NaN
    exactly one empty             inf
    ============================  =======

    Args:
        prediction: Boolean mask, shape ``(*spatial)`` (array order).
        reference: Boolean mask, same shape.
        spacing_mm: Voxel spacing in mm, one value per axis in array order (a scalar means isotropic).
        surface_metric: ``"voxel"`` (default) or ``"surface"`` (2D/3D only); see the module docstring.

    Returns:
        HD95 in mm.

    Raises:
        ValueError: on different shapes, non-boolean masks, invalid spacing or ``surface_metric``.
    """
    distances = weighted_surface_distances_mm(prediction, reference, spacing_mm, surface_metric)
    return _hd95_from_distances(distances, surface_metric)


def normalized_surface_dice(
    prediction: ArrayLike,
    reference: ArrayLike,
    spacing_mm: float | Sequence[float],
    tolerance_mm: float,
    *,
    surface_metric: SurfaceMetric = "voxel",
) -> float:
    """Normalised surface Dice (NSD) at a tolerance.

    ``NSD = (w(S_P within tol of S_R) + w(S_R within tol of S_P)) / (w(S_P) + w(S_R))``, where ``w`` is the number
    of boundary voxels (``surface_metric="voxel"``, MONAI's default) or the length/area of the corner-grid surface
    elements (``"surface"``, DeepMind's ``compute_surface_dice_at_tolerance``). The two agree on identical masks
    (1) and on masks with no surface point within tolerance (0); otherwise they weigh the points differently: per
    mm^2 of surface, voxel counting gives parts whose normal lies along a coarse axis (e.g. the caps of an organ in
    thick-slice CT) more weight than parts whose normal lies along a fine axis, by the spacing ratio, and counts a
    voxel with several exposed faces once; and masks that touch share their corner-grid elements (distance 0).

    ============================  =======
    masks                         NSD
    ============================  =======
    both empty                    NaN
    exactly one empty             0
    ============================  =======

    Args:
        prediction: Boolean mask, shape ``(*spatial)`` (array order).
        reference: Boolean mask, same shape.
        spacing_mm: Voxel spacing in mm, one value per axis in array order (a scalar means isotropic).
        tolerance_mm: Inclusive tolerance in mm (``distance <= tolerance_mm``), finite and ``>= 0``.
        surface_metric: ``"voxel"`` (default) or ``"surface"`` (2D/3D only); see the module docstring.

    Returns:
        NSD in ``[0, 1]``.

    Raises:
        ValueError: on different shapes, non-boolean masks, invalid spacing, tolerance or ``surface_metric``.
    """
    tolerance = _check_tolerance(tolerance_mm)
    distances = weighted_surface_distances_mm(prediction, reference, spacing_mm, surface_metric)
    return _nsd_from_distances(distances, tolerance)


def _region_values(name: str, value: int | Sequence[int], ignore_label: int | None) -> tuple[int, ...]:
    """The label values of one (region) label, validated."""
    raw_values = (value,) if np.ndim(value) == 0 else tuple(value)  # type: ignore[arg-type]
    if len(raw_values) == 0:
        raise ValueError(f"labels[{name!r}] must name at least one label value, got an empty sequence")
    values = []
    for raw in raw_values:
        if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
            raise ValueError(f"labels[{name!r}] must be an int or a sequence of ints, got {raw!r}")
        if ignore_label is not None and int(raw) == ignore_label:
            raise ValueError(f"labels[{name!r}] contains the ignore label {ignore_label}")
        values.append(int(raw))
    return tuple(values)


def segmentation_metrics(
    prediction_labels: ArrayLike,
    reference_labels: ArrayLike,
    labels: Mapping[str, int | Sequence[int]],
    spacing_mm: float | Sequence[float],
    tolerance_mm: float,
    ignore_label: int | None = None,
    *,
    surface_metric: SurfaceMetric = "voxel",
) -> dict[str, dict[str, float]]:
    """Dice, HD95 and NSD for every (region) label of a pair of integer label maps.

    A label given as a sequence of values is a region (the union of those values, as nnU-Net's region-based
    training defines them). Voxels whose *reference* value is ``ignore_label`` are removed from both masks
    before any metric is computed, so an ignored area is neither a hit nor a miss (where both masks reach it,
    the cut is a surface of both, at distance 0). If the reference is ``ignore_label`` everywhere, every metric
    of every label is ``NaN``.

    Args:
        prediction_labels: Integer label map, shape ``(*spatial)`` (array order).
        reference_labels: Integer label map, same shape.
        labels: Name -> label value, or sequence of values for a region (e.g. ``{"lungs": (1, 2)}``).
        spacing_mm: Voxel spacing in mm, one value per axis in array order (a scalar means isotropic).
        tolerance_mm: NSD tolerance in mm (inclusive).
        ignore_label: Reference value marking unannotated voxels, or None.
        surface_metric: Definition of HD95 and NSD: ``"voxel"`` (default) or ``"surface"`` (2D/3D only); see the
            module docstring.

    Returns:
        ``{name: {"dice", "hd95_mm", "nsd", "prediction_voxels", "reference_voxels"}}`` (voxel counts after
        removing ignored voxels, as floats). Empty-mask rules as in :func:`dice`,
        :func:`hausdorff_distance_95` and :func:`normalized_surface_dice`.

    Raises:
        ValueError: on different shapes, non-integer label maps, invalid labels, spacing, tolerance or
            ``surface_metric``.
    """
    prediction = np.asarray(prediction_labels)
    reference = np.asarray(reference_labels)
    _check_same_shape(prediction, reference, "label map")
    for name, array in (("prediction_labels", prediction), ("reference_labels", reference)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(f"{name} must be an integer label map, got dtype {array.dtype}")
        if array.ndim == 0:
            raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    if len(labels) == 0:
        raise ValueError("labels must name at least one label, got an empty mapping")
    spacing = _as_spacing(spacing_mm, prediction.ndim)
    tolerance = _check_tolerance(tolerance_mm)
    metric = _check_surface_metric(surface_metric, prediction.ndim)
    if ignore_label is not None and (isinstance(ignore_label, bool) or not isinstance(ignore_label, (int, np.integer))):
        raise ValueError(f"ignore_label must be an int or None, got {ignore_label!r}")
    region_values = {name: _region_values(name, value, ignore_label) for name, value in labels.items()}

    annotated = np.ones(reference.shape, dtype=bool) if ignore_label is None else reference != ignore_label
    nothing_annotated = not bool(np.any(annotated))

    results: dict[str, dict[str, float]] = {}
    for name, values in region_values.items():
        prediction_mask = np.isin(prediction, values) & annotated
        reference_mask = np.isin(reference, values) & annotated
        counts = {
            "prediction_voxels": float(np.count_nonzero(prediction_mask)),
            "reference_voxels": float(np.count_nonzero(reference_mask)),
        }
        if nothing_annotated:
            results[name] = {"dice": math.nan, "hd95_mm": math.nan, "nsd": math.nan, **counts}
            continue
        distances = _weighted_distances(prediction_mask, reference_mask, spacing, metric)
        results[name] = {
            "dice": dice(prediction_mask, reference_mask),
            "hd95_mm": _hd95_from_distances(distances, metric),
            "nsd": _nsd_from_distances(distances, tolerance),
            **counts,
        }
    return results


# ----------------------------------------------------------------------------------------------------------------
# landmark metrics
# ----------------------------------------------------------------------------------------------------------------
def _landmark_presence(points: np.ndarray, name: str) -> np.ndarray:
    """``(..., K)`` presence of ``(..., K, D)`` points; raise on partly-NaN rows and infinite values."""
    nan = np.isnan(points)
    partial = np.any(nan, axis=-1) & ~np.all(nan, axis=-1)
    if np.any(partial):
        where = tuple(int(i) for i in np.argwhere(partial)[0])
        raise ValueError(
            f"{name} has a partly-NaN row at index {where}: an absent landmark must be a full row of NaN"
        )
    if np.any(np.isinf(points)):
        where = tuple(int(i) for i in np.argwhere(np.any(np.isinf(points), axis=-1))[0])
        raise ValueError(f"{name} has an infinite coordinate at index {where}")
    return ~np.all(nan, axis=-1)


def radial_errors_mm(predicted: ArrayLike, reference: ArrayLike) -> NDArray[np.float64]:
    """Euclidean distance between predicted and reference landmarks.

    Args:
        predicted: ``(K, D)`` points (world mm, or any common unit), NaN rows = absent.
        reference: ``(K, D)`` points in the same unit and order.

    Returns:
        ``(K,)`` errors in the inputs' unit; NaN where either landmark is absent.

    Raises:
        ValueError: if the shapes differ or are not ``(K, D)``, or a row is partly NaN or infinite.
    """
    predicted_points = np.asarray(predicted, dtype=np.float64)
    reference_points = np.asarray(reference, dtype=np.float64)
    if predicted_points.shape != reference_points.shape or predicted_points.ndim != 2:
        raise ValueError(
            f"predicted and reference must both have shape (K, D), got predicted {predicted_points.shape} "
            f"and reference {reference_points.shape}"
        )
    present = _landmark_presence(predicted_points, "predicted") & _landmark_presence(reference_points, "reference")
    errors = np.full(predicted_points.shape[0], math.nan)
    errors[present] = np.linalg.norm(predicted_points[present] - reference_points[present], axis=-1)
    return errors


class PerLandmarkSummary(TypedDict):
    """Statistics of one landmark index over all cases (see :func:`landmark_detection_summary`)."""

    index: int
    mre_mm: float
    sd_mm: float
    n_evaluated: int
    n_missed: int
    n_spurious: int


class LandmarkDetectionSummary(TypedDict):
    """Result of :func:`landmark_detection_summary`."""

    mre_mm: float
    sd_mm: float
    median_mm: float
    sdr: dict[str, float]
    n_evaluated: int
    n_missed: int
    n_spurious: int
    n_reference_absent_correct: int
    per_landmark: list[PerLandmarkSummary]


def _mean(errors: np.ndarray) -> float:
    return float(np.mean(errors)) if errors.size else math.nan


def _sample_sd(errors: np.ndarray) -> float:
    return float(np.std(errors, ddof=1)) if errors.size > 1 else math.nan


def _case_point_arrays(
    predicted: ArrayLike | Sequence[ArrayLike], reference: ArrayLike | Sequence[ArrayLike]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(N, K, D)`` float arrays of the predicted and reference points; raise unless both have that same shape."""
    try:
        predicted_points = np.asarray(predicted, dtype=np.float64)
        reference_points = np.asarray(reference, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"predicted and reference must be (N, K, D) arrays of equal-shape cases: {error}") from None
    if predicted_points.shape != reference_points.shape or predicted_points.ndim != 3:
        raise ValueError(
            f"predicted and reference must both have shape (N, K, D), got predicted {predicted_points.shape} "
            f"and reference {reference_points.shape}"
        )
    return predicted_points, reference_points


def _check_detection_settings(
    thresholds_mm: Sequence[float], missed_penalty_mm: float | None, sdr_missed: SdrMissed
) -> tuple[float, ...]:
    """The SDR thresholds as floats; raise on invalid thresholds, penalty or ``sdr_missed`` (or both rules given)."""
    thresholds = tuple(float(t) for t in thresholds_mm)
    if not all(math.isfinite(t) and t >= 0 for t in thresholds):
        raise ValueError(f"thresholds_mm must be finite and >= 0, got {thresholds}")
    if len(set(thresholds)) != len(thresholds):
        raise ValueError(f"thresholds_mm must be distinct, got {thresholds}")
    if missed_penalty_mm is not None and not (math.isfinite(missed_penalty_mm) and missed_penalty_mm >= 0):
        raise ValueError(f"missed_penalty_mm must be finite and >= 0 or None, got {missed_penalty_mm!r}")
    if sdr_missed not in SDR_MISSED_RULES:
        raise ValueError(f"sdr_missed must be one of {list(SDR_MISSED_RULES)}, got {sdr_missed!r}")
    if sdr_missed == "fail" and missed_penalty_mm is not None:
        raise ValueError(
            "sdr_missed='fail' and missed_penalty_mm both decide how missed landmarks enter the SDR "
            f"(penalty {missed_penalty_mm!r}); give one of them"
        )
    return thresholds


def landmark_detection_summary(
    predicted: ArrayLike | Sequence[ArrayLike],
    reference: ArrayLike | Sequence[ArrayLike],
    thresholds_mm: Sequence[float] = (2.0, 2.5, 3.0, 4.0),
    *,
    missed_penalty_mm: float | None = None,
    sdr_missed: SdrMissed = "exclude",
) -> LandmarkDetectionSummary:
    """Mean radial error (MRE), its spread and the success detection rate (SDR) over cases and landmarks.

    Every (case, landmark) pair falls in exactly one class, all reported:

    * evaluated: both present -> its radial error enters the statistics;
    * missed: reference present, prediction absent (``n_missed``);
    * spurious: prediction present, reference absent (``n_spurious``);
    * correctly absent: both absent (``n_reference_absent_correct``).

    By default the statistics use the evaluated errors only, and missed landmarks are reported through
    ``n_missed`` (never dropped silently). With ``missed_penalty_mm`` each missed landmark also enters the
    statistics as an error of that size (it then counts in the SDR denominator and is a success if
    ``missed_penalty_mm <= t``). Spurious landmarks are reported only.

    ``sdr_missed`` says how missed landmarks enter the SDR (:data:`SDR_MISSED_DEFINITIONS`): ``"exclude"`` leaves
    them out of its denominator (SDR over the evaluated landmarks), ``"fail"`` counts each as a failure at every
    threshold (SDR over the reference landmarks). MRE, SD and median are over the evaluated errors either way.

    ``sd_mm`` is the sample standard deviation (``ddof=1``), NaN for fewer than two errors; ``mre_mm`` and
    ``median_mm`` are NaN when there are no errors, every SDR NaN when nothing enters its denominator. SDR
    thresholds are inclusive (``error <= t``).

    Args:
        predicted: ``(N, K, D)`` points for N cases (or a sequence of N ``(K, D)`` arrays), NaN rows = absent.
        reference: Same shape, same unit (mm for world points).
        thresholds_mm: SDR thresholds, finite, ``>= 0``, distinct.
        missed_penalty_mm: Error assigned to missed landmarks in the statistics, or None to leave them out.
        sdr_missed: ``"exclude"`` (default) or ``"fail"``; only without ``missed_penalty_mm``.

    Returns:
        A :class:`LandmarkDetectionSummary`; ``sdr`` is keyed by ``str(float(t))`` (``"2.0"``, ``"2.5"``, ...);
        ``per_landmark`` holds one :class:`PerLandmarkSummary` per landmark index (with the same penalty rule).

    Raises:
        ValueError: on mismatched or non-``(N, K, D)`` shapes, partly-NaN or infinite rows, invalid thresholds
            or penalty, an unknown ``sdr_missed`` or ``"fail"`` together with a penalty.
    """
    predicted_points, reference_points = _case_point_arrays(predicted, reference)
    thresholds = _check_detection_settings(thresholds_mm, missed_penalty_mm, sdr_missed)

    predicted_present = _landmark_presence(predicted_points, "predicted")
    reference_present = _landmark_presence(reference_points, "reference")
    evaluated = predicted_present & reference_present  # (N, K)
    missed = reference_present & ~predicted_present
    spurious = predicted_present & ~reference_present
    errors = np.linalg.norm(predicted_points - reference_points, axis=-1)  # (N, K); NaN where not evaluated

    def statistics_errors(selection: np.ndarray) -> np.ndarray:
        """Errors entering the statistics for a boolean (N, K) selection of pairs."""
        chosen = errors[evaluated & selection]
        if missed_penalty_mm is None:
            return chosen
        penalties = np.full(int(np.count_nonzero(missed & selection)), float(missed_penalty_mm))
        return np.concatenate([chosen, penalties])

    all_errors = statistics_errors(np.ones(evaluated.shape, dtype=bool))
    # "fail": every missed landmark is one more case in the denominator that no threshold reaches.
    sdr_denominator = all_errors.size + (int(np.count_nonzero(missed)) if sdr_missed == "fail" else 0)
    sdr = {
        str(t): (float(np.count_nonzero(_within(all_errors, t))) / sdr_denominator if sdr_denominator else math.nan)
        for t in thresholds
    }
    per_landmark: list[PerLandmarkSummary] = []
    for k in range(evaluated.shape[1]):
        column = np.zeros(evaluated.shape, dtype=bool)
        column[:, k] = True
        landmark_errors = statistics_errors(column)
        per_landmark.append(
            {
                "index": k,
                "mre_mm": _mean(landmark_errors),
                "sd_mm": _sample_sd(landmark_errors),
                "n_evaluated": int(np.count_nonzero(evaluated[:, k])),
                "n_missed": int(np.count_nonzero(missed[:, k])),
                "n_spurious": int(np.count_nonzero(spurious[:, k])),
            }
        )
    return {
        "mre_mm": _mean(all_errors),
        "sd_mm": _sample_sd(all_errors),
        "median_mm": float(np.median(all_errors)) if all_errors.size else math.nan,
        "sdr": sdr,
        "n_evaluated": int(np.count_nonzero(evaluated)),
        "n_missed": int(np.count_nonzero(missed)),
        "n_spurious": int(np.count_nonzero(spurious)),
        "n_reference_absent_correct": int(np.count_nonzero(~predicted_present & ~reference_present)),
        "per_landmark": per_landmark,
    }
