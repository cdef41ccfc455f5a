"""World ↔ voxel ↔ nnU-Net-preprocessed coordinate maps.

Three coordinate frames appear in this package (see :mod:`nnunet_babloss` for the conventions):

* **world**: ITK/LPS physical points in mm, ITK order ``(x, y, z)`` / ``(x, y)``;
* **raw voxel index**: continuous index in numpy array order ``(z, y, x)`` / ``(y, x)`` of the image as SimpleITK
  loads it; integers are voxel centres;
* **preprocessed voxel index**: continuous index into nnU-Net's preprocessed array (transposed, cropped to the
  non-zero bounding box, resampled). nnU-Net keeps 2D images as 3D arrays ``(1, H, W)`` with a dummy leading axis.

:class:`ImageGeometry` maps world ↔ raw index with the full direction matrix::

    world = origin + D · diag(spacing) · idx_xyz,      idx_xyz = idx[::-1]

:class:`PreprocessingMap` maps raw ↔ preprocessed index. nnU-Net transposes, crops with a half-open bounding box and
resamples with the half-pixel ("align_corners=False") convention, so along every transposed axis::

    t = idx[transpose_forward];  c = t - bbox_lo;  p = (c + 0.5) · S_pre / S_crop - 0.5

where ``S_crop``/``S_pre`` are the array shapes before/after resampling (shapes, not spacings: nnU-Net rounds the
resampled shape, and the data follow the shape). Both maps are affine, and their inverses are exact.

Nothing here imports SimpleITK or nnU-Net: :meth:`ImageGeometry.from_sitk` reads any object with SimpleITK's
``GetSpacing``/``GetOrigin``/``GetDirection``, and :meth:`PreprocessingMap.from_nnunet` reads the plain ``dict``
nnU-Net pickles beside each preprocessed case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ImageGeometry",
    "PreprocessingMap",
    "SitkLikeImage",
    "contains_index",
    "nnunet_index_from_world",
    "preprocessed_index_to_world",
    "world_from_nnunet_index",
    "world_to_preprocessed_index",
]

# |det(direction)| below this is treated as singular. Direction matrices hold unit-length columns, so a real
# image has |det| == 1 (orthonormal) or close to it (slight shear); 1e-6 only rejects degenerate input.
_MIN_ABS_DIRECTION_DET = 1e-6
_SUPPORTED_DIMENSIONS = (2, 3)


class SitkLikeImage(Protocol):
    """What :meth:`ImageGeometry.from_sitk` needs: the geometry getters of ``SimpleITK.Image``."""

    def GetSpacing(self) -> Sequence[float]: ...  # noqa: N802 (SimpleITK's names)

    def GetOrigin(self) -> Sequence[float]: ...  # noqa: N802

    def GetDirection(self) -> Sequence[float]: ...  # noqa: N802


def _as_points(points: ArrayLike, dimension: int, what: str) -> NDArray[np.float64]:
    """Validate an ``(N, dimension)`` coordinate array; rows with any NaN become all-NaN (absent).

    Raises:
        ValueError: not numeric, wrong shape, or an infinite coordinate.
    """
    try:
        array = np.array(points, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be an (N, {dimension}) array of numbers, got {points!r}") from error
    if array.ndim != 2 or array.shape[1] != dimension:
        raise ValueError(
            f"{what} must have shape (N, {dimension}), got shape {array.shape}"
            + (" (for a single point use points[None])" if array.ndim == 1 else "")
        )
    if np.isinf(array).any():
        row = int(np.nonzero(np.isinf(array).any(axis=1))[0][0])
        raise ValueError(f"{what} must be finite or NaN (absent), row {row} is {array[row].tolist()}")
    array[np.isnan(array).any(axis=1)] = np.nan
    return array


def _as_float_tuple(values: Sequence[float] | NDArray[Any], field: str, *, flatten: bool = False) -> tuple[float, ...]:
    """Convert to a tuple of finite Python floats (``flatten``: accept any shape, read row-major).

    Raises:
        ValueError: non-numeric, non-1D (unless ``flatten``), or non-finite values.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field} must be a sequence of numbers, got {values!r}") from error
    if flatten:
        array = array.ravel()
    if array.ndim != 1:
        raise ValueError(f"{field} must be a flat sequence of numbers, got shape {array.shape}: {values!r}")
    if not np.isfinite(array).all():
        raise ValueError(f"{field} must be finite, got {values!r}")
    return tuple(float(v) for v in array)


def _as_int_tuple(values: Sequence[int] | NDArray[Any], field: str) -> tuple[int, ...]:
    """Convert to a tuple of Python ints, refusing non-integral values.

    Raises:
        ValueError: non-numeric, non-1D or non-integral values.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:  # pragma: no cover - numpy accepts nearly anything
        raise ValueError(f"{field} must be a sequence of integers, got {values!r}") from error
    integral = array.dtype.kind in "iu" or (array.dtype.kind == "f" and bool(np.all(array == np.round(array))))
    if array.ndim != 1 or not integral:
        raise ValueError(f"{field} must be a flat sequence of integers, got {values!r}")
    return tuple(int(v) for v in array)


@dataclass(frozen=True)
class ImageGeometry:
    """The physical frame of an image, exactly as ITK defines it.

    Attributes:
        spacing_mm: Voxel size in mm, ITK order ``(x, y, z)`` / ``(x, y)``; all > 0.
        origin_mm: World position of the voxel centre with index 0, ITK order.
        direction: Row-major ``D x D`` direction cosine matrix (ITK ``GetDirection()``); column ``j`` is the world
            direction of ITK index axis ``j``. Must be invertible.

    Example:
        >>> geometry = ImageGeometry(spacing_mm=(0.5, 0.5, 3.0), origin_mm=(0.0, 0.0, 0.0),
        ...                          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
        >>> geometry.index_to_world([[2.0, 4.0, 6.0]])  # (z, y, x) index -> (x, y, z) mm
        array([[3., 2., 6.]])
    """

    spacing_mm: tuple[float, ...]
    origin_mm: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        spacing = _as_float_tuple(self.spacing_mm, "ImageGeometry.spacing_mm")
        origin = _as_float_tuple(self.origin_mm, "ImageGeometry.origin_mm")
        direction = _as_float_tuple(self.direction, "ImageGeometry.direction", flatten=True)
        dimension = len(spacing)
        if dimension not in _SUPPORTED_DIMENSIONS:
            raise ValueError(
                f"ImageGeometry.spacing_mm must have 2 or 3 entries (2D/3D images), got {dimension}: {spacing}"
            )
        if len(origin) != dimension:
            raise ValueError(
                f"ImageGeometry.origin_mm must have {dimension} entries like spacing_mm, got {len(origin)}: {origin}"
            )
        if len(direction) != dimension * dimension:
            raise ValueError(
                f"ImageGeometry.direction must have {dimension}x{dimension}={dimension * dimension} entries "
                f"(row-major), got {len(direction)}: {direction}"
            )
        if min(spacing) <= 0.0:
            raise ValueError(f"ImageGeometry.spacing_mm must be > 0 in every axis, got {spacing}")
        determinant = float(np.linalg.det(np.reshape(direction, (dimension, dimension))))
        if abs(determinant) < _MIN_ABS_DIRECTION_DET:
            raise ValueError(
                f"ImageGeometry.direction must be invertible, got {direction} with determinant {determinant:.3g}"
            )
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "direction", direction)

    @classmethod
    def identity(cls, spacing_mm: Sequence[float]) -> ImageGeometry:
        """Axis-aligned geometry with origin 0 and the given spacing (ITK order)."""
        dimension = len(spacing_mm)
        return cls(tuple(spacing_mm), (0.0,) * dimension, tuple(np.eye(dimension).ravel().tolist()))

    @classmethod
    def from_sitk(cls, image: SitkLikeImage) -> ImageGeometry:
        """Geometry of a ``SimpleITK.Image`` (any object with its ``Get{Spacing,Origin,Direction}``).

        Raises:
            ValueError: the image is not 2D/3D or its geometry is invalid.
        """
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @classmethod
    def from_sitk_stuff(cls, sitk_stuff: Mapping[str, Any]) -> ImageGeometry:
        """Geometry from nnU-Net's ``properties['sitk_stuff']``.

        nnU-Net's ``SimpleITKIO`` (and ``SimpleITKIOWithReorient``, after reorienting) stores the image's own
        ``GetSpacing()``, ``GetOrigin()`` and ``GetDirection()`` there, in ITK order and for 2D images with 2 axes
        (nnU-Net's array then has a dummy leading axis: see :func:`nnunet_index_from_world`).

        Args:
            sitk_stuff: Mapping with keys ``'spacing'``, ``'origin'``, ``'direction'``.

        Raises:
            ValueError: a key is missing (e.g. a whole ``properties`` dict was passed, or the dataset was read with
                a reader that stores no world frame, such as ``NaturalImage2DIO``) or the values are invalid.
        """
        if not isinstance(sitk_stuff, Mapping):
            raise ValueError(f"sitk_stuff must be a mapping (nnU-Net properties['sitk_stuff']), got {type(sitk_stuff)}")
        missing = [key for key in ("spacing", "origin", "direction") if key not in sitk_stuff]
        if missing:
            hint = (
                " (pass properties['sitk_stuff'], not the whole properties dict)"
                if "sitk_stuff" in sitk_stuff
                else " (only nnU-Net's SimpleITK readers store a world frame)"
            )
            raise ValueError(
                f"sitk_stuff is missing key(s) {missing}; found keys {sorted(map(str, sitk_stuff))}{hint}"
            )
        return cls(tuple(sitk_stuff["spacing"]), tuple(sitk_stuff["origin"]), tuple(sitk_stuff["direction"]))

    @property
    def dimension(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spacing_mm)

    @property
    def direction_matrix(self) -> NDArray[np.float64]:
        """The direction as a ``(D, D)`` matrix (ITK order)."""
        return np.reshape(np.asarray(self.direction, dtype=np.float64), (self.dimension, self.dimension))

    @property
    def spacing_mm_array_order(self) -> tuple[float, ...]:
        """Voxel size in mm in array axis order ``(z, y, x)`` / ``(y, x)``."""
        return self.spacing_mm[::-1]

    @property
    def index_to_world_matrix(self) -> NDArray[np.float64]:
        """``(D, D)`` matrix ``A`` with ``world = origin + A · idx_xyz`` (ITK index order)."""
        return self.direction_matrix * np.asarray(self.spacing_mm)[None, :]

    def index_to_world(self, index: ArrayLike) -> NDArray[np.float64]:
        """Map continuous voxel indices (array order) to world points.

        Args:
            index: ``(N, D)`` indices in array order ``(z, y, x)``; NaN rows (absent) pass through.

        Returns:
            ``(N, D)`` float64 world points in mm, ITK order ``(x, y, z)``.

        Raises:
            ValueError: wrong shape or infinite values.
        """
        index_array = _as_points(index, self.dimension, "index")
        index_xyz = index_array[:, ::-1]
        return index_xyz @ self.index_to_world_matrix.T + np.asarray(self.origin_mm)[None, :]

    def world_to_index(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """Map world points to continuous voxel indices (array order).

        Args:
            points_mm: ``(N, D)`` world points in mm, ITK order ``(x, y, z)``; NaN rows (absent) pass through.

        Returns:
            ``(N, D)`` float64 continuous indices in array order ``(z, y, x)``.

        Raises:
            ValueError: wrong shape or infinite values.
        """
        points = _as_points(points_mm, self.dimension, "points_mm")
        offsets_mm = points - np.asarray(self.origin_mm)[None, :]
        index_xyz = np.linalg.solve(self.index_to_world_matrix, offsets_mm.T).T
        return index_xyz[:, ::-1]

    def contains(self, points_mm: ArrayLike, shape: Sequence[int]) -> NDArray[np.bool_]:
        """Whether world points fall inside an image of this geometry and array ``shape``.

        Args:
            points_mm: ``(N, D)`` world points in mm (ITK order).
            shape: Array shape ``(z, y, x)`` / ``(y, x)`` of the image.

        Returns:
            ``(N,)`` bool; see :func:`contains_index` for the rule. NaN rows are ``False``.
        """
        return contains_index(self.world_to_index(points_mm), shape)


def contains_index(index: ArrayLike, shape: Sequence[int]) -> NDArray[np.bool_]:
    """Whether continuous voxel indices lie inside an array of ``shape``.

    A voxel covers ``[i - 0.5, i + 0.5)`` around its centre ``i``, so the image covers ``[-0.5, S - 0.5)`` per axis
    (ITK's rule for continuous indices): exactly the points whose nearest voxel centre exists.

    Args:
        index: ``(N, D)`` continuous indices in array order.
        shape: ``D`` positive array sizes.

    Returns:
        ``(N,)`` bool, ``False`` for NaN (absent) rows.

    Raises:
        ValueError: ``shape`` not positive integers, or ``index`` not ``(N, len(shape))``.
    """
    sizes = _as_int_tuple(shape, "shape")
    if not sizes or min(sizes) < 1:
        raise ValueError(f"shape must hold positive sizes, got {tuple(shape)}")
    index_array = _as_points(index, len(sizes), "index")
    upper = np.asarray(sizes, dtype=np.float64) - 0.5
    with np.errstate(invalid="ignore"):
        inside = (index_array >= -0.5) & (index_array < upper[None, :])
    return inside.all(axis=1)


@dataclass(frozen=True)
class PreprocessingMap:
    """nnU-Net's raw-array → preprocessed-array index map (transpose, crop, resample) and its inverse.

    All per-axis fields are in **transposed** axis order, as nnU-Net stores them.

    Attributes:
        transpose_forward: The plans' ``transpose_forward`` (a permutation of ``range(D)``).
        bbox: Crop box per transposed axis, half-open ``((lo, hi), ...)`` (``bbox_used_for_cropping``).
        cropped_shape: Shape after cropping, before resampling
            (``shape_after_cropping_and_before_resampling``); equals ``hi - lo`` per axis.
        preprocessed_shape: Spatial shape of the preprocessed array (its ``shape[1:]``).
        shape_before_cropping: Optional transposed raw shape (``shape_before_cropping``); when given, the bbox is
            checked against it.
    """

    transpose_forward: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]
    cropped_shape: tuple[int, ...]
    preprocessed_shape: tuple[int, ...]
    shape_before_cropping: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        transpose = _as_int_tuple(self.transpose_forward, "PreprocessingMap.transpose_forward")
        dimension = len(transpose)
        if sorted(transpose) != list(range(dimension)):
            raise ValueError(
                f"PreprocessingMap.transpose_forward must be a permutation of {list(range(dimension))}, got {transpose}"
            )
        try:
            bbox_array = np.asarray(self.bbox)
        except (TypeError, ValueError) as error:
            raise ValueError(f"PreprocessingMap.bbox must be {dimension} (lo, hi) pairs, got {self.bbox!r}") from error
        if bbox_array.shape != (dimension, 2):
            raise ValueError(
                f"PreprocessingMap.bbox must be {dimension} (lo, hi) pairs (one per transposed axis), "
                f"got {self.bbox!r}"
            )
        bbox_flat = _as_int_tuple(bbox_array.ravel(), "PreprocessingMap.bbox")
        bbox = tuple((bbox_flat[2 * axis], bbox_flat[2 * axis + 1]) for axis in range(dimension))
        cropped_shape = _as_int_tuple(self.cropped_shape, "PreprocessingMap.cropped_shape")
        preprocessed_shape = _as_int_tuple(self.preprocessed_shape, "PreprocessingMap.preprocessed_shape")
        for field, shape in (("cropped_shape", cropped_shape), ("preprocessed_shape", preprocessed_shape)):
            if len(shape) != dimension:
                raise ValueError(
                    f"PreprocessingMap.{field} must have {dimension} spatial sizes like transpose_forward, got {shape}"
                    + (" (drop the channel axis: pass data.shape[1:])" if len(shape) == dimension + 1 else "")
                )
            if min(shape) < 1:
                raise ValueError(f"PreprocessingMap.{field} must hold positive sizes, got {shape}")
        for axis, ((low, high), size) in enumerate(zip(bbox, cropped_shape)):
            if low < 0 or high - low != size:
                raise ValueError(
                    f"PreprocessingMap.bbox[{axis}] = {[low, high]} must satisfy 0 <= lo and hi - lo == "
                    f"cropped_shape[{axis}] = {size}"
                )
        shape_before = None
        if self.shape_before_cropping is not None:
            shape_before = _as_int_tuple(self.shape_before_cropping, "PreprocessingMap.shape_before_cropping")
            if len(shape_before) != dimension or any(high > size for (_, high), size in zip(bbox, shape_before)):
                raise ValueError(
                    f"PreprocessingMap.shape_before_cropping = {shape_before} must have {dimension} sizes that "
                    f"contain bbox {[list(pair) for pair in bbox]}"
                )
        object.__setattr__(self, "transpose_forward", transpose)
        object.__setattr__(self, "bbox", bbox)
        object.__setattr__(self, "cropped_shape", cropped_shape)
        object.__setattr__(self, "preprocessed_shape", preprocessed_shape)
        object.__setattr__(self, "shape_before_cropping", shape_before)

    @classmethod
    def from_nnunet(
        cls,
        properties: Mapping[str, Any],
        transpose_forward: Sequence[int],
        preprocessed_shape: Sequence[int],
    ) -> PreprocessingMap:
        """Build the map from a preprocessed case's properties (its ``.pkl``) and the plans.

        Args:
            properties: The case's properties dict (``bbox_used_for_cropping``,
                ``shape_after_cropping_and_before_resampling`` and, if present, ``shape_before_cropping``).
            transpose_forward: ``plans['transpose_forward']``.
            preprocessed_shape: Spatial shape of the preprocessed array (``data.shape[1:]``).

        Raises:
            ValueError: a key is missing or the values are inconsistent.
        """
        required = ("bbox_used_for_cropping", "shape_after_cropping_and_before_resampling")
        missing = [key for key in required if key not in properties]
        if missing:
            raise ValueError(
                f"nnU-Net properties are missing key(s) {missing} (written by nnU-Net's preprocessor); "
                f"found keys {sorted(map(str, properties))}"
            )
        shape_before = properties.get("shape_before_cropping")
        return cls(
            transpose_forward=tuple(transpose_forward),
            bbox=tuple(tuple(pair) for pair in properties["bbox_used_for_cropping"]),
            cropped_shape=tuple(properties["shape_after_cropping_and_before_resampling"]),
            preprocessed_shape=tuple(preprocessed_shape),
            shape_before_cropping=None if shape_before is None else tuple(shape_before),
        )

    @property
    def dimension(self) -> int:
        """Number of axes of nnU-Net's arrays (3; 2D images carry a dummy leading axis)."""
        return len(self.transpose_forward)

    @property
    def transpose_backward(self) -> tuple[int, ...]:
        """Inverse permutation of :attr:`transpose_forward`."""
        return tuple(int(axis) for axis in np.argsort(self.transpose_forward))

    @property
    def scale(self) -> NDArray[np.float64]:
        """``(D,)`` resampling factors ``S_pre / S_crop`` per transposed axis (preprocessed voxels per raw voxel)."""
        return np.asarray(self.preprocessed_shape, dtype=np.float64) / np.asarray(self.cropped_shape, dtype=np.float64)

    def raw_to_preprocessed(self, index: ArrayLike) -> NDArray[np.float64]:
        """Map raw array indices to preprocessed array indices.

        Args:
            index: ``(N, D)`` continuous indices into the raw array (array order, **not** transposed); NaN rows
                pass through.

        Returns:
            ``(N, D)`` continuous indices into the preprocessed array (transposed order).

        Raises:
            ValueError: wrong shape or infinite values.
        """
        raw = _as_points(index, self.dimension, "index")
        transposed = raw[:, list(self.transpose_forward)]
        cropped = transposed - np.asarray([low for low, _ in self.bbox], dtype=np.float64)[None, :]
        return (cropped + 0.5) * self.scale[None, :] - 0.5

    def preprocessed_to_raw(self, index: ArrayLike) -> NDArray[np.float64]:
        """Map preprocessed array indices back to raw array indices (exact inverse of :meth:`raw_to_preprocessed`).

        Args:
            index: ``(N, D)`` continuous indices into the preprocessed array; NaN rows pass through.

        Returns:
            ``(N, D)`` continuous indices into the raw array (array order, not transposed).

        Raises:
            ValueError: wrong shape or infinite values.
        """
        preprocessed = _as_points(index, self.dimension, "index")
        cropped = (preprocessed + 0.5) / self.scale[None, :] - 0.5
        transposed = cropped + np.asarray([low for low, _ in self.bbox], dtype=np.float64)[None, :]
        return transposed[:, list(self.transpose_backward)]


def nnunet_index_from_world(geometry: ImageGeometry, points_mm: ArrayLike) -> NDArray[np.float64]:
    """World points to indices into nnU-Net's raw 3D array (before transpose/crop/resample).

    For 3D images this is :meth:`ImageGeometry.world_to_index`. For 2D images nnU-Net holds ``(1, H, W)`` arrays,
    so a leading index 0 is prepended: ``(y, x)`` becomes ``(0, y, x)``.

    Args:
        geometry: Geometry of the raw image (2D or 3D).
        points_mm: ``(N, geometry.dimension)`` world points in mm; NaN rows pass through.

    Returns:
        ``(N, 3)`` float64 indices.

    Raises:
        ValueError: wrong shape or infinite values.
    """
    index = geometry.world_to_index(points_mm)
    if geometry.dimension == 3:
        return index
    dummy = np.where(np.isnan(index[:, :1]), np.nan, 0.0)
    return np.concatenate([dummy, index], axis=1)


def world_from_nnunet_index(geometry: ImageGeometry, index: ArrayLike) -> NDArray[np.float64]:
    """Indices into nnU-Net's raw 3D array to world points (inverse of :func:`nnunet_index_from_world`).

    For 2D images the dummy leading axis is dropped; it must lie within the single slice (``|i0| <= 0.5``).

    Args:
        geometry: Geometry of the raw image (2D or 3D).
        index: ``(N, 3)`` indices into nnU-Net's raw array; NaN rows pass through.

    Returns:
        ``(N, geometry.dimension)`` float64 world points in mm.

    Raises:
        ValueError: wrong shape, infinite values, or (2D) a dummy-axis index outside the single slice.
    """
    index_array = _as_points(index, 3, "index")
    if geometry.dimension == 3:
        return geometry.index_to_world(index_array)
    dummy = index_array[:, 0]
    outside = np.abs(np.nan_to_num(dummy, nan=0.0)) > 0.5
    if outside.any():
        row = int(np.nonzero(outside)[0][0])
        raise ValueError(
            f"index row {row} = {index_array[row].tolist()} has a dummy-axis index {dummy[row]:g} outside the single "
            "slice [-0.5, 0.5] of a 2D image (is this a 3D index used with a 2D geometry?)"
        )
    return geometry.index_to_world(index_array[:, 1:])


def world_to_preprocessed_index(
    points_mm: ArrayLike, geometry: ImageGeometry, preprocessing: PreprocessingMap
) -> NDArray[np.float64]:
    """World points (mm) to indices into nnU-Net's preprocessed array.

    Args:
        points_mm: ``(N, geometry.dimension)`` world points; NaN rows pass through.
        geometry: Geometry of the raw image (``ImageGeometry.from_sitk_stuff(properties['sitk_stuff'])``).
        preprocessing: The case's :class:`PreprocessingMap`.

    Returns:
        ``(N, 3)`` preprocessed indices.

    Raises:
        ValueError: see :func:`nnunet_index_from_world`.
    """
    return preprocessing.raw_to_preprocessed(nnunet_index_from_world(geometry, points_mm))


def preprocessed_index_to_world(
    index: ArrayLike, geometry: ImageGeometry, preprocessing: PreprocessingMap
) -> NDArray[np.float64]:
    """Indices into nnU-Net's preprocessed array to world points (inverse of :func:`world_to_preprocessed_index`).

    Raises:
        ValueError: see :func:`world_from_nnunet_index`.
    """
    return world_from_nnunet_index(geometry, preprocessing.preprocessed_to_raw(index))
