"""DenseSeg's dense image-to-shape representation: per-structure ``uv`` maps and landmark read-out by uv matching.

DenseSeg (Keuth et al., "DenseSeg: joint learning for semantic segmentation and landmark detection using dense
image-to-shape representation") predicts, for every pixel of a structure, its coordinate ``uv`` in a canonical mean
shape of that structure. Landmarks are then read out by finding the pixels whose predicted ``uv`` is nearest a
landmark's canonical ``uv``; any other canonical ``uv`` (a landmark defined after training) is found the same way.

Conventions (2D only):

* Points are ``(axis0, axis1)`` in the order of the array axes (row, column of a patch); ``*_vox`` are voxel
  indices (voxel centres at integers), ``*_mm`` the same axes scaled by the voxel spacing.
* The **mean shape** of a structure lives in mm of those axes (generalised Procrustes analysis with proper rotations,
  then put back at the training shapes' mean size, orientation and position).
* The **canonical frame**: ``uv = (mean_shape_mm - uv_origin_mm) / uv_scale_mm``. ``u`` follows array axis 0 and
  ``v`` array axis 1; the longer side of the mean shape's bounding box spans ``[0, 1]`` and the shorter one is
  centred, so every mean-shape landmark has ``uv`` in ``[0, 1]^2`` and distances in ``uv`` are isotropic.
* **Ground-truth uv field** of a case: align the case's landmarks to the mean shape with a similarity transform
  ``T`` (scale, proper rotation, translation), then add a thin-plate-spline interpolation of the remaining landmark
  displacements, so ``uv(x) = N(T x) + f(N(T x))`` with ``N`` the canonical normalisation. At each landmark the
  field equals its canonical ``uv`` exactly; far from the landmarks it follows the similarity. A structure with
  fewer than 3 landmarks (or collinear ones) is interpolated by a minimum-norm spline (exact for 2 landmarks: the
  similarity alone fits them).

Everything here is numpy/torch; nothing imports nnU-Net.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from nnunet_babloss.core.landmarks.baseline import fit_similarity
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.rasterise import fill_polygon

__all__ = [
    "DenseSegTemplate",
    "StructureTemplate",
    "build_structure_template",
    "canonical_frame",
    "dense_uv_map",
    "dilate_region",
    "denseseg_structures",
    "generalized_procrustes_mean",
    "parse_uv_queries",
    "polygon_mask",
    "similarity_transform",
    "simple_polygon_order",
    "soft_match_uv",
    "uv_at_points",
]

_MIN_LANDMARKS = 2


def similarity_transform(source: ArrayLike, target: ArrayLike) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Least-squares similarity ``target ≈ scale · R · source + t`` (proper rotation, no reflection; Umeyama).

    Args:
        source: ``(N, 2)`` points, N >= 2, no NaN.
        target: ``(N, 2)`` corresponding points.

    Returns:
        ``(scale, rotation (2, 2), translation (2,))``.

    Raises:
        ValueError: fewer than 2 points, NaN, mismatched shapes, or all source points identical.
    """
    source_array = np.asarray(source, dtype=np.float64)
    target_array = np.asarray(target, dtype=np.float64)
    if source_array.ndim != 2 or source_array.shape[1] != 2 or source_array.shape != target_array.shape:
        raise ValueError(f"source and target must both be (N, 2), got {source_array.shape} and {target_array.shape}")
    if source_array.shape[0] < _MIN_LANDMARKS or not (np.isfinite(source_array).all() and np.isfinite(target_array).all()):
        raise ValueError(f"a similarity needs >= 2 finite point pairs, got {source_array.shape[0]} (or NaN)")
    return fit_similarity(source_array, target_array)


def _apply(scale: float, rotation: NDArray[np.float64], translation: NDArray[np.float64], points: NDArray[np.float64]) -> NDArray[np.float64]:
    return scale * points @ rotation.T + translation


def generalized_procrustes_mean(shapes: Sequence[ArrayLike], iterations: int = 50, tolerance: float = 1e-10) -> NDArray[np.float64]:
    """Mean shape of corresponding 2D point sets (generalised Procrustes analysis, proper rotations).

    Shapes may miss landmarks (NaN rows): each is aligned on its present landmarks and the mean is taken per
    landmark over the shapes that have it. The result is returned at the shapes' mean centroid size and in their
    typical pose (aligned to the per-landmark average of the unaligned shapes), so it lives in their mm frame.

    Args:
        shapes: ``(K, 2)`` arrays (mm); each needs >= 2 present landmarks.
        iterations: maximum GPA iterations.
        tolerance: stop when the mean moves less than this (unit-size units, squared).

    Returns:
        ``(K, 2)`` mean shape.

    Raises:
        ValueError: no shape, inconsistent ``K``, a shape with < 2 present landmarks, or a landmark present in none.
    """
    arrays = [np.asarray(shape, dtype=np.float64) for shape in shapes]
    if not arrays:
        raise ValueError("no shapes given: the mean shape needs at least one case with landmarks")
    num = arrays[0].shape[0]
    for index, array in enumerate(arrays):
        if array.shape != (num, 2):
            raise ValueError(f"shape {index} is {array.shape}, expected ({num}, 2)")
        if (~np.isnan(array).any(1)).sum() < _MIN_LANDMARKS:
            raise ValueError(f"shape {index} has fewer than {_MIN_LANDMARKS} present landmarks")
    stacked = np.stack(arrays)
    present_any = ~np.isnan(stacked).any(2)
    missing = np.flatnonzero(~present_any.any(0))
    if missing.size:
        raise ValueError(f"landmark rows {missing.tolist()} are missing in every shape: no mean is defined")
    sizes = []
    for array in arrays:
        present = array[~np.isnan(array).any(1)]
        sizes.append(math.sqrt(((present - present.mean(0)) ** 2).sum(1).mean()))
    reference_index = int(np.argmax(present_any.sum(1)))
    reference = _unit(stacked[reference_index])
    for _ in range(iterations):
        aligned = np.full_like(stacked, np.nan)
        for index, array in enumerate(arrays):
            rows = ~np.isnan(array).any(1) & ~np.isnan(reference).any(1)
            transform = similarity_transform(array[rows], reference[rows])
            aligned[index] = _apply(*transform, array)
        mean = _unit(np.nanmean(aligned, axis=0))
        # Keep the reference's orientation so the iteration cannot drift by a rotation.
        rows = ~np.isnan(mean).any(1)
        scale, rotation, translation = similarity_transform(mean[rows], reference[rows])
        mean = _unit(_apply(1.0, rotation, np.zeros(2), mean))
        change = float(np.nansum((mean - reference) ** 2))
        reference = mean
        if change < tolerance:
            break
    typical = np.nanmean(stacked, axis=0)
    rows = ~np.isnan(typical).any(1)
    _, rotation, _ = similarity_transform(reference[rows], typical[rows])
    posed = _apply(float(np.mean(sizes)), rotation, np.zeros(2), reference)
    return posed - posed.mean(0) + typical[rows].mean(0)


def _unit(shape: NDArray[np.float64]) -> NDArray[np.float64]:
    """Centred at the origin, RMS distance to the centroid 1 (NaN rows kept)."""
    centred = shape - np.nanmean(shape, axis=0)
    size = math.sqrt(np.nanmean((centred**2).sum(1)))
    return centred / size


def canonical_frame(mean_shape_mm: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """The canonical ``uv`` of a mean shape (see the module docstring).

    Returns:
        ``(canonical_uv (K, 2), uv_origin_mm (2,), uv_scale_mm)`` with ``uv = (mean - origin) / scale``.

    Raises:
        ValueError: NaN in the mean shape, or all its points coincide.
    """
    mean = np.asarray(mean_shape_mm, dtype=np.float64)
    if mean.ndim != 2 or mean.shape[1] != 2 or not np.isfinite(mean).all():
        raise ValueError(f"mean_shape_mm must be a finite (K, 2) array, got shape {mean.shape}")
    low, high = mean.min(0), mean.max(0)
    scale = float((high - low).max())
    if scale <= 0:
        raise ValueError("the mean shape's points coincide: no canonical frame")
    origin = (low + high) / 2 - scale / 2
    return (mean - origin) / scale, origin, scale


def _segments_cross(p1: NDArray[np.float64], p2: NDArray[np.float64], q1: NDArray[np.float64], q2: NDArray[np.float64]) -> bool:
    def orientation(a: NDArray[np.float64], b: NDArray[np.float64], c: NDArray[np.float64]) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return (orientation(p1, p2, q1) * orientation(p1, p2, q2) < 0) and (orientation(q1, q2, p1) * orientation(q1, q2, p2) < 0)


def _is_simple_polygon(points: NDArray[np.float64]) -> bool:
    count = len(points)
    for first in range(count):
        for second in range(first + 1, count):
            if second == first + 1 or (first == 0 and second == count - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(points[first], points[(first + 1) % count], points[second], points[(second + 1) % count]):
                return False
    return True


def simple_polygon_order(points: ArrayLike) -> tuple[int, ...]:
    """A vertex order in which ``points`` form a simple (non-self-intersecting) polygon, or ``()`` if none is found.

    The given order is kept when it is simple (landmarks that trace a contour, as in JSRT); otherwise the points
    are ordered by angle around their centroid (star-shaped outlines, e.g. extreme points of an ellipse).
    Fewer than 3 points, or a degenerate (zero-area) polygon, give ``()``.
    """
    array = np.asarray(points, dtype=np.float64)
    if len(array) < 3 or not np.isfinite(array).all():
        return ()
    candidates = [np.arange(len(array))]
    centred = array - array.mean(0)
    candidates.append(np.argsort(np.arctan2(centred[:, 1], centred[:, 0]), kind="stable"))
    for order in candidates:
        polygon = array[order]
        area = 0.5 * abs(float(np.dot(polygon[:, 0], np.roll(polygon[:, 1], -1)) - np.dot(polygon[:, 1], np.roll(polygon[:, 0], -1))))
        if area > 1e-9 * max(1.0, float((centred**2).sum())) and _is_simple_polygon(polygon):
            return tuple(int(index) for index in order)
    return ()


@dataclass(frozen=True)
class StructureTemplate:
    """One structure's mean shape and canonical frame.

    Attributes:
        label_name: the label (``dataset.json["labels"]`` key) whose mask is the structure.
        label_value: its value in the label map.
        landmark_names: the structure's landmarks, in the landmark spec's order.
        landmark_indices: their rows in the landmark spec.
        mean_shape_mm: ``(K, 2)`` mean shape (mm, array axes of the training patches).
        canonical_uv: ``(K, 2)`` canonical ``uv`` of the landmarks.
        uv_origin_mm: ``(2,)`` and ``uv_scale_mm``: ``uv = (mean_shape_mm - uv_origin_mm) / uv_scale_mm``.
        polygon_order: vertex order of the landmarks forming a simple polygon inside the structure (``()`` if none).
    """

    label_name: str
    label_value: int
    landmark_names: tuple[str, ...]
    landmark_indices: tuple[int, ...]
    mean_shape_mm: NDArray[np.float64]
    canonical_uv: NDArray[np.float64]
    uv_origin_mm: NDArray[np.float64]
    uv_scale_mm: float
    polygon_order: tuple[int, ...] = ()

    @property
    def num_landmarks(self) -> int:
        return len(self.landmark_names)

    def to_json(self) -> dict[str, Any]:
        return {
            "label_name": self.label_name,
            "label_value": self.label_value,
            "landmark_names": list(self.landmark_names),
            "landmark_indices": list(self.landmark_indices),
            "mean_shape_mm": np.asarray(self.mean_shape_mm).tolist(),
            "canonical_uv": np.asarray(self.canonical_uv).tolist(),
            "uv_origin_mm": np.asarray(self.uv_origin_mm).tolist(),
            "uv_scale_mm": float(self.uv_scale_mm),
            "polygon_order": list(self.polygon_order),
        }

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> StructureTemplate:
        return cls(
            label_name=str(block["label_name"]),
            label_value=int(block["label_value"]),
            landmark_names=tuple(block["landmark_names"]),
            landmark_indices=tuple(int(index) for index in block["landmark_indices"]),
            mean_shape_mm=np.asarray(block["mean_shape_mm"], dtype=np.float64),
            canonical_uv=np.asarray(block["canonical_uv"], dtype=np.float64),
            uv_origin_mm=np.asarray(block["uv_origin_mm"], dtype=np.float64),
            uv_scale_mm=float(block["uv_scale_mm"]),
            polygon_order=tuple(int(index) for index in block["polygon_order"]),
        )


@dataclass(frozen=True)
class DenseSegTemplate:
    """Everything DenseSeg inference needs besides the network: the structures and the read-out settings.

    Attributes:
        structures: one :class:`StructureTemplate` per uv-map pair; structure ``s`` owns channels ``2s`` (u) and
            ``2s + 1`` (v) of the uv head.
        spacing_mm: voxel spacing of the patches the templates were built in (array axis order).
        match_k: number of nearest-uv pixels averaged by :func:`soft_match_uv`.
        match_tau: softmax temperature of that average (uv units squared).
        match_margin_mm: the predicted structure mask is dilated by this much before matching.
    """

    structures: tuple[StructureTemplate, ...]
    spacing_mm: tuple[float, float]
    match_k: int = 5
    match_tau: float = 1e-4
    match_margin_mm: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "structures": [structure.to_json() for structure in self.structures],
            "spacing_mm": list(self.spacing_mm),
            "match_k": self.match_k,
            "match_tau": self.match_tau,
            "match_margin_mm": self.match_margin_mm,
        }

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> DenseSegTemplate:
        return cls(
            structures=tuple(StructureTemplate.from_json(item) for item in block["structures"]),
            spacing_mm=tuple(float(value) for value in block["spacing_mm"]),  # type: ignore[arg-type]
            match_k=int(block["match_k"]),
            match_tau=float(block["match_tau"]),
            match_margin_mm=float(block["match_margin_mm"]),
        )

    def structure(self, label_name: str) -> StructureTemplate:
        """The structure of label ``label_name``.

        Raises:
            KeyError: no structure has that label (the message lists the known ones).
        """
        for structure in self.structures:
            if structure.label_name == label_name:
                return structure
        raise KeyError(f"no DenseSeg structure for label {label_name!r}; known: {[s.label_name for s in self.structures]}")


def denseseg_structures(spec: LandmarkSpec, labels: Mapping[str, Any]) -> list[tuple[str, int, tuple[int, ...]]]:
    """Group landmarks into structures: a landmark bridged to exactly one label belongs to that label's structure.

    The bridge is read by :meth:`LandmarkSpec.rows_by_bridged_label` (``sole_label_only``); DenseSeg adds its own
    rules on top.

    Args:
        spec: the landmark specification (its names give the rows, its bridge the labels).
        labels: ``dataset.json["labels"]``.

    Returns:
        ``(label name, label value, landmark rows)`` per structure, sorted by label value. Landmarks bridged to
        several labels, or none, belong to no structure.

    Raises:
        ValueError: no structure results, a bridged label is a region (list of values), or a structure has
            fewer than 2 landmarks (a similarity needs 2).
    """
    groups = spec.rows_by_bridged_label(labels, sole_label_only=True)
    if not groups:
        raise ValueError(
            "DenseSeg needs structures: bridge each landmark to the one label it outlines in the dataset.json "
            "landmarks block (\"bridge\": {landmark: [label]}); no landmark is bridged to exactly one label"
        )
    structures = []
    for label_name, rows in groups.items():
        if len(rows) < _MIN_LANDMARKS:
            raise ValueError(
                f"DenseSeg structure {label_name!r} has {len(rows)} landmark ({spec.names[rows[0]]!r}); each "
                f"structure needs >= {_MIN_LANDMARKS} landmarks to be aligned to its mean shape"
            )
        structures.append((label_name, int(labels[label_name]), rows))
    return structures


def build_structure_template(
    label_name: str, label_value: int, landmark_names: Sequence[str], landmark_indices: Sequence[int],
    shapes_mm: Sequence[ArrayLike],
) -> StructureTemplate:
    """Mean shape, canonical frame and polygon order of one structure from its training shapes (mm, array axes).

    Raises:
        ValueError: see :func:`generalized_procrustes_mean`.
    """
    mean = generalized_procrustes_mean(shapes_mm)
    uv, origin, scale = canonical_frame(mean)
    return StructureTemplate(
        label_name=label_name, label_value=int(label_value), landmark_names=tuple(landmark_names),
        landmark_indices=tuple(int(index) for index in landmark_indices), mean_shape_mm=mean, canonical_uv=uv,
        uv_origin_mm=origin, uv_scale_mm=scale, polygon_order=simple_polygon_order(mean),
    )


def _tps_kernel(squared_distance: Tensor) -> Tensor:
    """Thin-plate kernel ``r^2 log r`` from squared distances (0 at r = 0)."""
    return 0.5 * squared_distance * torch.log(squared_distance.clamp_min(1e-30))


def _uv_field(points_vox: NDArray[np.float64], template: StructureTemplate, spacing_mm: Sequence[float]):
    """Fit the field of one case; returns ``evaluate(query_vox Tensor (N, 2)) -> Tensor (N, 2)`` or ``None``."""
    points = np.asarray(points_vox, dtype=np.float64)
    if points.shape != (template.num_landmarks, 2):
        raise ValueError(
            f"structure {template.label_name!r} has {template.num_landmarks} landmarks, got points of shape {points.shape}"
        )
    present = ~np.isnan(points).any(1)
    if present.sum() < _MIN_LANDMARKS:
        return None
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    points_mm = points[present] * spacing
    scale, rotation, translation = similarity_transform(points_mm, template.mean_shape_mm[present])
    # The affine map voxel -> canonical uv of the similarity, then a thin-plate spline of the residuals in uv.
    linear = scale * rotation * spacing[None, :] / template.uv_scale_mm
    offset = (translation - template.uv_origin_mm) / template.uv_scale_mm
    aligned = points[present] @ linear.T + offset
    residual = template.canonical_uv[present] - aligned
    count = len(aligned)
    system = np.zeros((count + 3, count + 3))
    squared = ((aligned[:, None] - aligned[None]) ** 2).sum(-1)
    system[:count, :count] = _tps_kernel(torch.from_numpy(squared)).numpy()
    system[:count, count] = 1.0
    system[:count, count + 1 :] = aligned
    system[count, :count] = 1.0
    system[count + 1 :, :count] = aligned.T
    right = np.zeros((count + 3, 2))
    right[:count] = residual
    # Minimum-norm solution: exact for >= 3 non-collinear landmarks, still defined for 2 or collinear ones.
    coefficients = np.linalg.pinv(system, rcond=1e-12) @ right

    def evaluate(query_vox: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
        query = query_vox.to(dtype)
        linear_t = torch.as_tensor(linear, dtype=dtype, device=query.device)
        base = query @ linear_t.T + torch.as_tensor(offset, dtype=dtype, device=query.device)
        centres = torch.as_tensor(aligned, dtype=dtype, device=query.device)
        weights = torch.as_tensor(coefficients[:count], dtype=dtype, device=query.device)
        affine = torch.as_tensor(coefficients[count:], dtype=dtype, device=query.device)
        kernel = _tps_kernel(torch.cdist(base, centres) ** 2)
        return base + kernel @ weights + affine[0] + base @ affine[1:]

    return evaluate


def uv_at_points(
    query_vox: ArrayLike, points_vox: ArrayLike, template: StructureTemplate, spacing_mm: Sequence[float]
) -> NDArray[np.float64]:
    """The ground-truth uv field of a case (landmarks ``points_vox``) evaluated at arbitrary ``query_vox`` points.

    Args:
        query_vox: ``(N, 2)`` voxel coordinates.
        points_vox: ``(K, 2)`` the case's landmarks of this structure (voxel coordinates; NaN rows = absent).
        template: the structure's template.
        spacing_mm: voxel spacing (array axis order).

    Returns:
        ``(N, 2)`` float64 ``uv``; NaN if fewer than 2 landmarks are present.
    """
    query = torch.as_tensor(np.asarray(query_vox, dtype=np.float64))
    field = _uv_field(np.asarray(points_vox, dtype=np.float64), template, spacing_mm)
    if field is None:
        return np.full((len(query), 2), np.nan)
    return field(query).numpy()


def dense_uv_map(
    points_vox: ArrayLike, template: StructureTemplate, spacing_mm: Sequence[float], shape: Sequence[int],
    device: torch.device | str = "cpu", where: Tensor | None = None,
) -> Tensor | None:
    """The ground-truth uv map of one structure over a ``shape`` grid (mask it with the structure).

    Args:
        points_vox: ``(K, 2)`` the structure's landmarks in this grid's voxel coordinates (NaN rows = absent).
        template: the structure's template.
        spacing_mm: voxel spacing (array axis order).
        shape: ``(H, W)``.
        device: where the map is computed.
        where: optional ``(H, W)`` bool: evaluate only there (0 elsewhere), to save time on large patches.

    Returns:
        ``(2, H, W)`` float32 (``u``, ``v``; evaluated in float32), or ``None`` when fewer than 2 landmarks are
        present.
    """
    field = _uv_field(np.asarray(points_vox, dtype=np.float64), template, spacing_mm)
    if field is None:
        return None
    height, width = (int(size) for size in shape)
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32), indexing="ij",
    )
    grid = torch.stack((rows.reshape(-1), cols.reshape(-1)), dim=1)
    if where is None:
        return field(grid, torch.float32).T.reshape(2, height, width)
    selected = where.reshape(-1).to(grid.device)
    uv = torch.zeros((height * width, 2), device=grid.device)
    uv[selected] = field(grid[selected], torch.float32)
    return uv.T.reshape(2, height, width)


def polygon_mask(polygon_vox: ArrayLike, shape: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
    """Voxels whose centre lies inside a polygon (even-odd rule), ``(H, W)`` bool.

    :func:`nnunet_babloss.core.rasterise.fill_polygon` (its module docstring states the pixel convention) on ``device``.

    Args:
        polygon_vox: ``(P, 2)`` vertices in voxel coordinates, in polygon order (P >= 3).
        shape: ``(H, W)``.

    Raises:
        ValueError: fewer than 3 vertices or NaN.
    """
    vertices = np.asarray(polygon_vox, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[0] < 3 or vertices.shape[1] != 2 or np.isnan(vertices).any():
        raise ValueError(f"a polygon needs >= 3 finite (row, col) vertices, got shape {tuple(vertices.shape)}")
    return torch.from_numpy(fill_polygon(vertices, shape)).to(device)


def soft_match_uv(
    uv_map: Tensor, region: Tensor, queries_uv: Tensor, k: int = 5, tau: float = 1e-4
) -> tuple[Tensor, Tensor]:
    """Positions of canonical ``uv`` queries in a (predicted) uv map: soft nearest-uv matching inside a region.

    For each query, the ``k`` region pixels whose ``uv`` is nearest are averaged with weights
    ``softmax(-||uv - query||^2 / tau)``: the expected position under that distribution.

    Args:
        uv_map: ``(2, H, W)`` uv of one structure.
        region: ``(H, W)`` bool, where to look (the predicted structure, possibly dilated).
        queries_uv: ``(Q, 2)`` canonical uv.
        k: number of nearest pixels (>= 1; fewer if the region is smaller).
        tau: temperature (uv units squared, > 0).

    Returns:
        ``(positions (Q, 2) float32 voxel (row, col), best_distance (Q,) float32 uv)``; NaN when the region is
        empty.

    Raises:
        ValueError: bad shapes, ``k < 1`` or ``tau <= 0``.
    """
    if uv_map.ndim != 3 or uv_map.shape[0] != 2 or region.shape != uv_map.shape[1:]:
        raise ValueError(f"uv_map must be (2, H, W) and region (H, W), got {tuple(uv_map.shape)} and {tuple(region.shape)}")
    if queries_uv.ndim != 2 or queries_uv.shape[1] != 2:
        raise ValueError(f"queries_uv must be (Q, 2), got {tuple(queries_uv.shape)}")
    if k < 1 or not tau > 0:
        raise ValueError(f"k must be >= 1 and tau > 0, got k={k}, tau={tau}")
    count = queries_uv.shape[0]
    device = uv_map.device
    indices = torch.nonzero(region, as_tuple=False)
    if indices.shape[0] == 0:
        nan = torch.full((count,), float("nan"), device=device)
        return torch.stack((nan, nan), 1), nan
    candidates = uv_map[:, indices[:, 0], indices[:, 1]].T.float()
    squared = torch.cdist(queries_uv.to(device).float(), candidates) ** 2
    nearest, order = torch.topk(squared, min(k, candidates.shape[0]), dim=1, largest=False)
    weights = torch.softmax(-(nearest - nearest[:, :1]) / tau, dim=1)
    positions = (weights[..., None] * indices[order].float()).sum(1)
    return positions, nearest[:, 0].clamp_min(0).sqrt()


def dilate_region(region: Tensor, radius_vox: Sequence[int]) -> Tensor:
    """Binary dilation of ``(..., H, W)`` bool masks by a box of half-widths ``radius_vox`` (per axis)."""
    radius = [max(0, int(value)) for value in radius_vox]
    if not any(radius):
        return region
    shape = region.shape
    flat = region.reshape(-1, 1, *shape[-2:]).float()
    kernel = (2 * radius[0] + 1, 2 * radius[1] + 1)
    dilated = torch.nn.functional.max_pool2d(flat, kernel, stride=1, padding=tuple(radius))
    return dilated.reshape(shape) > 0


def parse_uv_queries(block: Mapping[str, Any], template: DenseSegTemplate, source: str = "query file") -> dict[str, tuple[tuple[str, ...], NDArray[np.float64]]]:
    """Validate landmark queries ``{label name: {landmark name: [u, v]}}`` against a template.

    A query may also give the *name* of a trained landmark of that structure instead of ``[u, v]`` (its canonical
    uv is used), which lets a query file rename or repeat trained landmarks.

    Returns:
        ``{label name: (names, uv (Q, 2))}``.

    Raises:
        ValueError: unknown structure, malformed or non-finite uv, a duplicate name across structures; the
            message names ``source`` and the entry.
    """
    if not isinstance(block, Mapping):
        raise ValueError(f"{source}: must be an object {{label name: {{landmark name: [u, v]}}}}, got {type(block).__name__}")
    parsed: dict[str, tuple[tuple[str, ...], NDArray[np.float64]]] = {}
    seen: dict[str, str] = {}
    for label_name, entries in block.items():
        try:
            structure = template.structure(label_name)
        except KeyError as error:
            raise ValueError(f"{source}: {error.args[0]}") from None
        if not isinstance(entries, Mapping) or not entries:
            raise ValueError(f"{source}: [{label_name!r}] must be a non-empty object {{landmark name: [u, v]}}, got {entries!r}")
        names, coordinates = [], []
        for name, value in entries.items():
            if not isinstance(name, str) or not name or name != name.strip() or not name.isprintable():
                raise ValueError(f"{source}: [{label_name!r}]: landmark names must be non-empty printable strings, got {name!r}")
            if name in seen:
                raise ValueError(f"{source}: landmark {name!r} is queried in both {seen[name]!r} and {label_name!r}")
            seen[name] = label_name
            if isinstance(value, str):
                if value not in structure.landmark_names:
                    raise ValueError(
                        f"{source}: [{label_name!r}][{name!r}]: {value!r} is not a trained landmark of this structure "
                        f"(known: {list(structure.landmark_names)})"
                    )
                uv = structure.canonical_uv[structure.landmark_names.index(value)]
            else:
                uv = np.asarray(value, dtype=np.float64) if isinstance(value, Sequence) else np.asarray([np.nan])
                if uv.shape != (2,) or not np.isfinite(uv).all():
                    raise ValueError(f"{source}: [{label_name!r}][{name!r}]: must be [u, v] (two finite numbers), got {value!r}")
            names.append(name)
            coordinates.append(uv)
        parsed[label_name] = (tuple(names), np.stack(coordinates))
    return parsed
