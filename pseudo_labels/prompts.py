"""Prompts for promptable segmenters (the SAM family), built from the landmarks of one organ.

Every coordinate here is a continuous voxel index in numpy array order (``(row, col)`` in 2D, ``(z, y, x)`` in 3D;
integers are voxel centres); distances given by the user are in mm and converted with the in-plane spacing. SAM's
``(x, y)`` order appears only inside :mod:`pseudo_labels.backends`. Nothing here imports torch or a model.

Strategies (:class:`PromptStrategy`), for the ``K`` landmarks of one organ in ``dataset.json`` order:

* ``box``: the bounding box of the landmarks, grown by ``box_margin_mm`` on every side.
* ``line``: the prompt of BaBLoss' pseudo-label figure (MedSAM): for a pair of landmarks, **foreground points on the
  segment between them** (at ``foreground_fractions`` of its length) and **background points on the line's extension
  beyond each landmark** (``background_offset_mm`` past it). Pairs: landmark ``i`` with landmark ``i + K // 2``, the
  "opposite" landmark when the landmarks run around the organ; for ``K = 2`` the one pair; at most
  ``max_line_pairs`` pairs, spread evenly over ``i``. Points that fall outside the image are dropped.
* ``points``: the foreground points of ``line`` only (no background points).
* ``mixed``: ``box`` together with the foreground and background points of ``line``.
* ``contour``: no model: the landmarks, in order, are the vertices of a closed polygon whose filled interior is the
  mask (:func:`fill_polygon`; pixel centres inside by the even-odd rule). Only right when the landmarks trace the
  organ's boundary in order, as the SCR landmarks of JSRT do.

3D images are prompted slice by slice along ``slice_axis`` (an array axis, default 0), with the landmarks projected
onto the slice plane (the coordinate along the axis dropped). Which slices (:func:`plan_slices`):

* ``extent``: every slice from the lowest to the highest landmark (coordinates rounded to the nearest slice),
  each prompted with the same projected prompt.
* ``propagate``: the seed slice (nearest the landmarks' median) is prompted from the landmarks; each further slice,
  walking outward within the extent (plus ``propagation_margin_slices``), is prompted with the box of the previous
  slice's mask grown by ``box_margin_mm``; the walk stops at the first empty mask. The loop needs a model and lives
  in :func:`pseudo_labels.pipeline.segment_organ`.
* ``contour`` in 3D fills, on every slice holding at least 3 of the organ's landmarks (rounded to the nearest slice),
  the polygon of those landmarks in order; other slices stay empty.

References: Cheng et al., "Boundary as the Bridge" (BaBLoss), pseudo masks from landmark-derived SAM prompts;
Ma et al., "Segment anything in medical images" (MedSAM), box prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnunet_babloss.core.rasterise import fill_polygon

__all__ = [
    "MODEL_FREE_STRATEGIES",
    "Prompt",
    "PromptSettings",
    "PromptStrategy",
    "SliceMode",
    "build_prompt",
    "contour_mask",
    "fill_polygon",
    "landmark_box",
    "line_pairs",
    "line_points",
    "mask_box",
    "parse_strategy",
    "plan_slices",
    "project_to_plane",
    "prompt_roi",
    "shift_prompt",
]

SliceMode = Literal["extent", "propagate"]
_SLICE_MODES: tuple[str, ...] = ("extent", "propagate")


class PromptStrategy(str, Enum):
    """How an organ's landmarks become a prompt (see the module docstring)."""

    BOX = "box"
    POINTS = "points"
    LINE = "line"
    MIXED = "mixed"
    CONTOUR = "contour"

    def __str__(self) -> str:
        return self.value


MODEL_FREE_STRATEGIES: frozenset[PromptStrategy] = frozenset({PromptStrategy.CONTOUR})


def parse_strategy(value: str | PromptStrategy, where: str = "strategy") -> PromptStrategy:
    """Read a strategy name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if isinstance(value, PromptStrategy):
        return value
    try:
        return PromptStrategy(str(value).strip().lower())
    except ValueError:
        known = ", ".join(strategy.value for strategy in PromptStrategy)
        raise ValueError(f"{where}: unknown prompt strategy {value!r}; choose one of {known}") from None


@dataclass(frozen=True)
class PromptSettings:
    """Geometry of the prompts (see the module docstring for how each is used).

    Attributes:
        box_margin_mm: Margin added on every side of the landmarks' bounding box (and of the previous mask's box when
            propagating in 3D), mm, >= 0.
        max_line_pairs: Most landmark pairs used by ``line``/``points``/``mixed``, >= 1.
        foreground_fractions: Positions of the foreground points along each pair's segment, each in ``(0, 1)``.
        background_offset_mm: Distance of each background point beyond its landmark, mm, > 0.
        slice_axis: 3D only: the array axis sliced along (0 = z).
        slice_mode: 3D only: ``"extent"`` or ``"propagate"``.
        propagation_margin_slices: 3D ``propagate`` only: slices beyond the landmarks' extent that may still be
            reached, >= 0.
        roi_scale: 0 (default): the model sees the whole image (or slice) and encodes it once for all organs.
            >= 1: the model sees a square crop centred on the prompt (its box, or its points' bounding box), of side
            ``roi_scale`` times the prompt's longest extent (at least 32 voxels), so small organs get more of the
            model's input resolution; the encoder then runs once per organ.

    Raises:
        ValueError: (from the constructor) a value breaks its rule.
    """

    box_margin_mm: float = 7.0
    max_line_pairs: int = 4
    foreground_fractions: tuple[float, ...] = (0.3, 0.5, 0.7)
    background_offset_mm: float = 5.0
    slice_axis: int = 0
    slice_mode: SliceMode = "extent"
    propagation_margin_slices: int = 0
    roi_scale: float = 0.0

    def __post_init__(self) -> None:
        margin = float(self.box_margin_mm)
        if not (math.isfinite(margin) and margin >= 0.0):
            raise ValueError(f"PromptSettings.box_margin_mm must be finite and >= 0, got {self.box_margin_mm!r}")
        if int(self.max_line_pairs) != self.max_line_pairs or self.max_line_pairs < 1:
            raise ValueError(f"PromptSettings.max_line_pairs must be an integer >= 1, got {self.max_line_pairs!r}")
        fractions = tuple(float(value) for value in self.foreground_fractions)
        if not fractions or not all(0.0 < value < 1.0 for value in fractions):
            raise ValueError(
                "PromptSettings.foreground_fractions must be non-empty, each in (0, 1), "
                f"got {self.foreground_fractions!r}"
            )
        offset = float(self.background_offset_mm)
        if not (math.isfinite(offset) and offset > 0.0):
            raise ValueError(
                f"PromptSettings.background_offset_mm must be finite and > 0, got {self.background_offset_mm!r}"
            )
        if self.slice_axis not in (0, 1, 2):
            raise ValueError(f"PromptSettings.slice_axis must be 0, 1 or 2 (array axis), got {self.slice_axis!r}")
        if self.slice_mode not in _SLICE_MODES:
            raise ValueError(f"PromptSettings.slice_mode must be one of {_SLICE_MODES}, got {self.slice_mode!r}")
        if int(self.propagation_margin_slices) != self.propagation_margin_slices or self.propagation_margin_slices < 0:
            raise ValueError(
                "PromptSettings.propagation_margin_slices must be an integer >= 0, "
                f"got {self.propagation_margin_slices!r}"
            )
        roi_scale = float(self.roi_scale)
        if not (roi_scale == 0.0 or (math.isfinite(roi_scale) and roi_scale >= 1.0)):
            raise ValueError(f"PromptSettings.roi_scale must be 0 (whole image) or >= 1, got {self.roi_scale!r}")
        object.__setattr__(self, "box_margin_mm", margin)
        object.__setattr__(self, "roi_scale", roi_scale)
        object.__setattr__(self, "max_line_pairs", int(self.max_line_pairs))
        object.__setattr__(self, "foreground_fractions", fractions)
        object.__setattr__(self, "background_offset_mm", offset)
        object.__setattr__(self, "propagation_margin_slices", int(self.propagation_margin_slices))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready copy (for provenance)."""
        return {
            "box_margin_mm": self.box_margin_mm,
            "max_line_pairs": self.max_line_pairs,
            "foreground_fractions": list(self.foreground_fractions),
            "background_offset_mm": self.background_offset_mm,
            "slice_axis": self.slice_axis,
            "slice_mode": self.slice_mode,
            "propagation_margin_slices": self.propagation_margin_slices,
            "roi_scale": self.roi_scale,
        }


@dataclass(frozen=True)
class Prompt:
    """A 2D prompt in voxel indices of one image/slice (array order).

    Attributes:
        points_vox: ``(N, 2)`` float64 points ``(row, col)``; ``N`` may be 0.
        point_labels: ``(N,)`` int64, 1 = foreground, 0 = background.
        box_vox: ``(4,)`` float64 ``(row_min, col_min, row_max, col_max)``, or ``None``.
    """

    points_vox: NDArray[np.float64]
    point_labels: NDArray[np.int64]
    box_vox: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        points = np.asarray(self.points_vox, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(self.point_labels, dtype=np.int64).reshape(-1)
        if labels.shape[0] != points.shape[0]:
            raise ValueError(
                f"Prompt: {points.shape[0]} points but {labels.shape[0]} point labels; they must match one to one"
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"Prompt.point_labels must be 0 (background) or 1 (foreground), got {labels.tolist()}")
        if not np.isfinite(points).all():
            raise ValueError(f"Prompt.points_vox must be finite, got {points.tolist()}")
        box = None
        if self.box_vox is not None:
            box = np.asarray(self.box_vox, dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
                raise ValueError(
                    "Prompt.box_vox must be 4 finite numbers (row_min, col_min, row_max, col_max) with min <= max, "
                    f"got {np.asarray(self.box_vox).tolist()}"
                )
        object.__setattr__(self, "points_vox", points)
        object.__setattr__(self, "point_labels", labels)
        object.__setattr__(self, "box_vox", box)

    @property
    def is_empty(self) -> bool:
        """Whether the prompt has neither points nor a box."""
        return self.points_vox.shape[0] == 0 and self.box_vox is None

    @property
    def num_foreground(self) -> int:
        """Number of foreground points."""
        return int(np.count_nonzero(self.point_labels == 1))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready copy (array order)."""
        return {
            "points_vox": self.points_vox.tolist(),
            "point_labels": self.point_labels.tolist(),
            "box_vox": None if self.box_vox is None else self.box_vox.tolist(),
        }


def _landmark_array(
    landmarks_vox: ArrayLike, dimension: int | None = None, what: str = "landmarks_vox"
) -> NDArray[np.float64]:
    """``(K, D)`` float64 copy with absent (NaN) rows removed.

    Raises:
        ValueError: not ``(K, D)``, wrong ``D``, or infinite values.
    """
    array = np.asarray(landmarks_vox, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 3) or (dimension is not None and array.shape[1] != dimension):
        expected = f"(K, {dimension})" if dimension is not None else "(K, 2) or (K, 3)"
        raise ValueError(f"{what} must have shape {expected}, got {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{what} must be finite or NaN (absent), got {array.tolist()}")
    return array[~np.isnan(array).any(axis=1)]


def _spacing_array(spacing_mm: Sequence[float], dimension: int) -> NDArray[np.float64]:
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if spacing.shape != (dimension,) or not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise ValueError(f"spacing_mm must be {dimension} positive numbers (array order), got {list(spacing_mm)}")
    return spacing


def _shape_tuple(shape: Sequence[int], dimension: int) -> tuple[int, ...]:
    sizes = tuple(int(size) for size in shape)
    if len(sizes) != dimension or min(sizes) < 1:
        raise ValueError(f"shape must be {dimension} positive sizes, got {tuple(shape)}")
    return sizes


def landmark_box(
    landmarks_vox: ArrayLike,
    spacing_mm: Sequence[float],
    margin_mm: float,
    shape: Sequence[int] | None = None,
) -> NDArray[np.float64]:
    """Bounding box of 2D landmarks grown by a margin.

    Args:
        landmarks_vox: ``(K, 2)`` voxel indices ``(row, col)``; NaN rows (absent) are ignored.
        spacing_mm: In-plane spacing ``(row, col)`` in mm.
        margin_mm: Margin added on every side, mm (``margin_mm / spacing`` voxels per axis), >= 0.
        shape: If given, the box is clipped to the voxel centres ``[0, size - 1]`` of this ``(H, W)`` image.

    Returns:
        ``(4,)`` float64 ``(row_min, col_min, row_max, col_max)``.

    Raises:
        ValueError: fewer than one present landmark, a negative margin or a bad shape/spacing.
    """
    points = _landmark_array(landmarks_vox, 2)
    if points.shape[0] < 1:
        raise ValueError("landmark_box needs at least one present landmark, got none")
    if not (math.isfinite(margin_mm) and margin_mm >= 0.0):
        raise ValueError(f"margin_mm must be finite and >= 0, got {margin_mm!r}")
    margin_vox = float(margin_mm) / _spacing_array(spacing_mm, 2)
    low = points.min(axis=0) - margin_vox
    high = points.max(axis=0) + margin_vox
    if shape is not None:
        upper = np.asarray(_shape_tuple(shape, 2), dtype=np.float64) - 1.0
        low = np.clip(low, 0.0, upper)
        high = np.clip(high, 0.0, upper)
    return np.concatenate([low, high])


def line_pairs(num_landmarks: int, max_pairs: int) -> tuple[tuple[int, int], ...]:
    """Pairs ``(i, i + K // 2)`` of "opposite" landmarks, at most ``max_pairs``, spread evenly over ``i``.

    ``K = 2`` gives ``((0, 1),)``; ``K = 6`` gives ``((0, 3), (1, 4), (2, 5))``; ``K < 2`` gives ``()``.

    Raises:
        ValueError: negative ``num_landmarks`` or ``max_pairs < 1``.
    """
    if num_landmarks < 0 or max_pairs < 1:
        raise ValueError(f"line_pairs needs num_landmarks >= 0 and max_pairs >= 1, got {num_landmarks}, {max_pairs}")
    half = num_landmarks // 2
    if half == 0:
        return ()
    starts = np.unique(np.round(np.linspace(0, half - 1, min(half, max_pairs))).astype(int))
    return tuple((int(start), int(start) + half) for start in starts)


def line_points(
    landmarks_vox: ArrayLike,
    spacing_mm: Sequence[float],
    *,
    pairs: Sequence[tuple[int, int]],
    foreground_fractions: Sequence[float],
    background_offset_mm: float,
    shape: Sequence[int] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The paper's line prompt: foreground points between paired landmarks, background points beyond each.

    For a pair ``(a, b)``, the foreground points are ``a + t (b - a)`` for ``t`` in ``foreground_fractions`` and the
    background points are ``a - u d`` and ``b + u d`` with ``u`` the unit direction from ``a`` to ``b`` **in mm** and
    ``d = background_offset_mm`` (so the offset is isotropic in mm on anisotropic grids).

    Args:
        landmarks_vox: ``(K, 2)`` voxel indices ``(row, col)`` (NaN rows allowed; pairs touching one are skipped).
        spacing_mm: In-plane spacing ``(row, col)`` in mm.
        pairs: Index pairs into ``landmarks_vox``; pairs closer than 1e-6 mm are skipped.
        foreground_fractions: Positions along each segment, each in ``(0, 1)``.
        background_offset_mm: Distance of the background points beyond the landmarks, mm, > 0.
        shape: If given, points outside ``[-0.5, size - 0.5)`` of this ``(H, W)`` image are dropped.

    Returns:
        ``(points (N, 2) float64, labels (N,) int64)``, foreground points first.

    Raises:
        ValueError: bad shapes, a pair index out of range, or a rule above broken.
    """
    array = np.asarray(landmarks_vox, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"landmarks_vox must have shape (K, 2), got {array.shape}")
    spacing = _spacing_array(spacing_mm, 2)
    fractions = np.asarray(foreground_fractions, dtype=np.float64).reshape(-1)
    if fractions.size == 0 or not ((fractions > 0) & (fractions < 1)).all():
        raise ValueError(f"foreground_fractions must be non-empty and each in (0, 1), got {list(foreground_fractions)}")
    if not (math.isfinite(background_offset_mm) and background_offset_mm > 0):
        raise ValueError(f"background_offset_mm must be finite and > 0, got {background_offset_mm!r}")
    foreground: list[NDArray[np.float64]] = []
    background: list[NDArray[np.float64]] = []
    for first, second in pairs:
        if not (0 <= first < array.shape[0] and 0 <= second < array.shape[0]):
            raise ValueError(f"line pair {(first, second)} is out of range for {array.shape[0]} landmarks")
        start, end = array[first], array[second]
        if np.isnan(start).any() or np.isnan(end).any():
            continue
        delta_mm = (end - start) * spacing
        length_mm = float(np.linalg.norm(delta_mm))
        if length_mm < 1e-6:
            continue
        foreground.append(start[None, :] + fractions[:, None] * (end - start)[None, :])
        step_vox = delta_mm / length_mm * background_offset_mm / spacing
        background.append(np.stack([start - step_vox, end + step_vox]))
    points_fg = np.concatenate(foreground) if foreground else np.zeros((0, 2))
    points_bg = np.concatenate(background) if background else np.zeros((0, 2))
    points = np.concatenate([points_fg, points_bg])
    labels = np.concatenate([np.ones(len(points_fg), np.int64), np.zeros(len(points_bg), np.int64)])
    if shape is not None:
        sizes = np.asarray(_shape_tuple(shape, 2), dtype=np.float64)
        inside = ((points >= -0.5) & (points < sizes - 0.5)).all(axis=1)
        points, labels = points[inside], labels[inside]
    return points, labels


def build_prompt(
    strategy: PromptStrategy | str,
    landmarks_vox: ArrayLike,
    spacing_mm: Sequence[float],
    settings: PromptSettings,
    shape: Sequence[int],
) -> Prompt:
    """Build the 2D prompt of one organ.

    Args:
        strategy: ``box``, ``points``, ``line`` or ``mixed`` (``contour`` needs no prompt: use :func:`contour_mask`).
        landmarks_vox: ``(K, 2)`` voxel indices ``(row, col)`` of the organ's landmarks in order; NaN rows are absent.
        spacing_mm: In-plane spacing ``(row, col)``, mm.
        settings: Prompt geometry.
        shape: ``(H, W)`` of the image.

    Returns:
        The prompt; ``line``/``points`` prompts with fewer than two present landmarks are empty.

    Raises:
        ValueError: ``contour`` or an unknown strategy, no present landmark, or bad shapes.
    """
    chosen = parse_strategy(strategy)
    present = _landmark_array(landmarks_vox, 2)
    if present.shape[0] == 0:
        raise ValueError("build_prompt needs at least one present landmark, got none")
    box = None
    if chosen in (PromptStrategy.BOX, PromptStrategy.MIXED):
        box = landmark_box(present, spacing_mm, settings.box_margin_mm, shape)
    if chosen is PromptStrategy.BOX:
        return Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), box)
    if chosen in (PromptStrategy.POINTS, PromptStrategy.LINE, PromptStrategy.MIXED):
        points, labels = line_points(
            present,
            spacing_mm,
            pairs=line_pairs(present.shape[0], settings.max_line_pairs),
            foreground_fractions=settings.foreground_fractions,
            background_offset_mm=settings.background_offset_mm,
            shape=shape,
        )
        if chosen is PromptStrategy.POINTS:
            points, labels = points[labels == 1], labels[labels == 1]
        return Prompt(points, labels, box)
    raise ValueError(f"strategy {chosen.value!r} builds a mask without a model: use contour_mask, not build_prompt")


def project_to_plane(landmarks_vox: ArrayLike, slice_axis: int) -> NDArray[np.float64]:
    """Drop the coordinate along ``slice_axis``: ``(K, 3)`` → ``(K, 2)`` in-plane indices (other axes in order)."""
    array = np.asarray(landmarks_vox, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or slice_axis not in (0, 1, 2):
        raise ValueError(
            f"project_to_plane needs (K, 3) landmarks and slice_axis in 0..2, got {array.shape}, {slice_axis}"
        )
    return np.delete(array, slice_axis, axis=1)


def plan_slices(
    landmarks_vox: ArrayLike, shape: Sequence[int], slice_axis: int, margin_slices: int = 0
) -> tuple[tuple[int, ...], int]:
    """Slices of a 3D image covered by an organ's landmarks.

    Args:
        landmarks_vox: ``(K, 3)`` voxel indices (array order); NaN rows are ignored.
        shape: ``(Z, Y, X)`` image shape.
        slice_axis: Array axis sliced along.
        margin_slices: Slices added beyond the landmarks' extent at both ends (clipped to the image).

    Returns:
        ``(slices, seed)``: the sorted slice indices from the lowest to the highest landmark (each rounded to the
        nearest slice, then clipped to the image) plus the margin, and the seed slice nearest the landmarks' median.

    Raises:
        ValueError: no present landmark, bad shape or axis.
    """
    sizes = _shape_tuple(shape, 3)
    points = _landmark_array(landmarks_vox, 3)
    if points.shape[0] == 0:
        raise ValueError("plan_slices needs at least one present landmark, got none")
    if slice_axis not in (0, 1, 2) or margin_slices < 0:
        raise ValueError(
            f"plan_slices needs slice_axis in 0..2 and margin_slices >= 0, got {slice_axis}, {margin_slices}"
        )
    last = sizes[slice_axis] - 1
    coordinates = points[:, slice_axis]
    low = int(np.clip(np.floor(coordinates.min() + 0.5) - margin_slices, 0, last))
    high = int(np.clip(np.floor(coordinates.max() + 0.5) + margin_slices, 0, last))
    seed = int(np.clip(np.floor(float(np.median(coordinates)) + 0.5), low, high))
    return tuple(range(low, high + 1)), seed


def contour_mask(landmarks_vox: ArrayLike, shape: Sequence[int], slice_axis: int = 0) -> NDArray[np.bool_]:
    """The ``contour`` strategy: fill the polygon the landmarks trace (2D), or per slice (3D).

    Args:
        landmarks_vox: ``(K, D)`` voxel indices in order around the boundary; NaN rows are dropped.
        shape: Image shape ``(H, W)`` or ``(Z, Y, X)``.
        slice_axis: 3D only: landmarks are grouped by their nearest slice along this axis, and every slice with at
            least 3 of them gets the filled polygon of those landmarks (in their order).

    Returns:
        Bool mask of ``shape``.

    Raises:
        ValueError: dimension mismatch or bad shapes.
    """
    dimension = len(tuple(shape))
    points = _landmark_array(landmarks_vox, dimension)
    if dimension == 2:
        return fill_polygon(points, shape)
    sizes = _shape_tuple(shape, 3)
    mask = np.zeros(sizes, dtype=bool)
    nearest = np.floor(points[:, slice_axis] + 0.5).astype(np.int64)
    plane_shape = tuple(size for axis, size in enumerate(sizes) if axis != slice_axis)
    for slice_index in np.unique(nearest):
        if not 0 <= slice_index < sizes[slice_axis]:
            continue
        members = points[nearest == slice_index]
        if members.shape[0] >= 3:
            selector: list[slice | int] = [slice(None)] * 3
            selector[slice_axis] = int(slice_index)
            mask[tuple(selector)] = fill_polygon(project_to_plane(members, slice_axis), plane_shape)
    return mask


def mask_box(mask: ArrayLike, margin_vox: Sequence[float] | float = 0.0) -> NDArray[np.float64] | None:
    """Bounding box of a 2D mask's voxel centres grown by ``margin_vox`` (per axis), or ``None`` for an empty mask.

    Returns:
        ``(4,)`` float64 ``(row_min, col_min, row_max, col_max)``, clipped to the image's voxel centres.
    """
    array = np.asarray(mask, dtype=bool)
    if array.ndim != 2:
        raise ValueError(f"mask_box needs a 2D mask, got shape {array.shape}")
    rows, cols = np.nonzero(array)
    if rows.size == 0:
        return None
    margin = np.broadcast_to(np.asarray(margin_vox, dtype=np.float64), (2,))
    upper = np.asarray(array.shape, dtype=np.float64) - 1.0
    low = np.clip(np.array([rows.min(), cols.min()], dtype=np.float64) - margin, 0.0, upper)
    high = np.clip(np.array([rows.max(), cols.max()], dtype=np.float64) + margin, 0.0, upper)
    return np.concatenate([low, high])


def prompt_roi(
    prompt: Prompt, shape: Sequence[int], roi_scale: float, min_size_vox: int = 32
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Square crop around a prompt for ``roi_scale`` >= 1 (see :class:`PromptSettings`).

    Args:
        prompt: The prompt (its box, or else the bounding box of its points, sets centre and extent).
        shape: ``(H, W)`` of the image.
        roi_scale: Crop side / the prompt's longest extent, >= 1.
        min_size_vox: Smallest crop side, voxels.

    Returns:
        ``((row_start, col_start), (row_stop, col_stop))``, half-open, inside the image (the square is shifted to fit
        and shrunk only where the image is smaller).

    Raises:
        ValueError: an empty prompt or ``roi_scale < 1``.
    """
    if prompt.is_empty:
        raise ValueError("prompt_roi needs a prompt with points or a box")
    if not (math.isfinite(roi_scale) and roi_scale >= 1.0):
        raise ValueError(f"roi_scale must be >= 1, got {roi_scale!r}")
    sizes = np.asarray(_shape_tuple(shape, 2))
    if prompt.box_vox is not None:
        low, high = prompt.box_vox[:2], prompt.box_vox[2:]
    else:
        low, high = prompt.points_vox.min(axis=0), prompt.points_vox.max(axis=0)
    centre = (low + high) / 2.0
    side = max(float(np.max(high - low)) * roi_scale, float(min_size_vox))
    start = np.floor(centre - side / 2.0 + 0.5).astype(np.int64)
    stop = start + int(math.ceil(side))
    # Shift the square inside the image where possible, then clip.
    start = np.where(stop > sizes, start - (stop - sizes), start)
    start = np.maximum(start, 0)
    stop = np.minimum(start + int(math.ceil(side)), sizes)
    return (int(start[0]), int(start[1])), (int(stop[0]), int(stop[1]))


def shift_prompt(prompt: Prompt, offset_vox: Sequence[float]) -> Prompt:
    """The same prompt in a frame whose origin is at ``offset_vox`` (``(row, col)``): coordinates minus the offset."""
    offset = np.asarray(offset_vox, dtype=np.float64).reshape(2)
    box = None if prompt.box_vox is None else prompt.box_vox - np.tile(offset, 2)
    return Prompt(prompt.points_vox - offset[None, :], prompt.point_labels, box)
