"""Landmark keypoints through nnU-Net's data augmentation (batchgeneratorsv2), mapped analytically.

batchgeneratorsv2 dispatches the data-dict key ``"keypoints"`` to ``_apply_to_keypoints``, but its geometric
transforms raise ``NotImplementedError`` there, and every other ``BasicTransform`` that keeps the default
``apply`` silently replaces the keypoints with ``None``. This module provides keypoint-aware subclasses of the four
geometric transforms of nnU-Net's default pipeline and :func:`make_keypoint_aware`, which converts a whole
transform tree as returned by ``nnUNetTrainer.get_training_transforms`` / ``get_validation_transforms``.

Keypoint format (one sample's data dict): ``data["keypoints"]`` is a floating ``torch.Tensor`` ``(K, D)`` of
continuous voxel indices along the sample's spatial axes (the image is ``(C, *spatial)``, ``D = len(spatial)``,
integers are voxel centres); a row of NaN is an absent landmark and stays NaN. Keypoints that leave the patch keep
their (out-of-range) coordinates.

The maps, derived from batchgeneratorsv2 0.3.6 (``SpatialTransform.get_parameters`` / ``_apply_to_image``):

* Resampling (rotation and/or scaling): output voxel ``i`` samples the input at
  ``x = A (i - (P - 1) / 2) + c - 1/2`` (``align_corners=False``; ``A`` the sampled affine in array axis order,
  ``P`` the patch size, ``c`` the patch centre), so ``i = A^-1 (x - c + 1/2) + (P - 1) / 2``. With
  ``align_corners=True`` the sample point is ``x = (A (i - (P - 1) / 2) + c) (S - 1) / S`` for input size ``S``.
* Crop only (no rotation, scaling or deformation): the patch starts at ``floor(c) - P // 2``, so
  ``i = x - (floor(c) - P // 2)``.
* Mirroring along axis ``a`` of size ``S``: ``x' = S - 1 - x``; left/right partners swap rows when an odd number
  of the flipped axes are lateral axes, and under the same decision the values of paired sided labels (right/left
  lung) swap in ``data["segmentation"]``, so every landmark stays on the boundary of its bridged label. Per-landmark
  values that travel with a landmark but are no coordinate of the sample (:data:`KEYPOINT_SLICE_OFFSETS_KEY`, a
  ``(K,)`` tensor) swap rows with it.
* Pseudo-2D (``Convert3DTo2DTransform``): the first spatial axis is folded into channels; its coordinate is kept
  aside in the data dict under :data:`KEYPOINTS_FIRST_AXIS_KEY` and restored by ``Convert2DTo3DTransform``.

Elastic deformation has no closed-form inverse here; nnU-Net disables it (``p_elastic_deform=0``) and a sample
with keypoints that was deformed raises ``NotImplementedError``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform, SegOnlyTransform
from batchgeneratorsv2.transforms.nnunet.seg_to_onehot import MoveSegAsOneHotToDataTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.rot90 import Rot90Transform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.spatial.transpose import TransposeAxesTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms, TimedComposeTransforms
from batchgeneratorsv2.transforms.utils.move_channels import MoveChannelsTransform
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform
from torch import Tensor

__all__ = [
    "KEYPOINTS_FIRST_AXIS_KEY",
    "KEYPOINTS_KEY",
    "KEYPOINT_SLICE_OFFSETS_KEY",
    "KeypointConvert2DTo3DTransform",
    "KeypointConvert3DTo2DTransform",
    "KeypointMirrorTransform",
    "KeypointPassthrough",
    "KeypointSpatialTransform",
    "crop_or_resample_keypoints",
    "make_keypoint_aware",
    "mirror_keypoints",
    "swap_label_values",
    "validate_label_value_pairs",
    "validate_pair_permutation",
]

KEYPOINTS_KEY = "keypoints"
"""The data-dict key batchgeneratorsv2 dispatches to ``_apply_to_keypoints``."""

KEYPOINTS_FIRST_AXIS_KEY = "keypoints_first_axis_pseudo2d"
"""Data-dict key holding the ``(K,)`` first coordinates between ``Convert3DTo2D`` and ``Convert2DTo3D``."""

KEYPOINT_SLICE_OFFSETS_KEY = "keypoint_slice_offsets"
"""Data-dict key of a ``(K,)`` tensor: each landmark's through-plane offset from a 2D slice taken out of a 3D volume
(see :mod:`nnunet_babloss.nnunet.landmark_loader`). No 2D transform moves it; mirror pair swaps reorder it."""

# Transforms whose ``apply`` is overridden but provably never reads or writes ``data["keypoints"]``
# (batchgeneratorsv2 0.3.6 source): they only touch "image" and "segmentation".
_KEYPOINT_SAFE_APPLY_TYPES: tuple[type[BasicTransform], ...] = (MoveSegAsOneHotToDataTransform, MaskImageTransform)
# Every geometric transform of batchgeneratorsv2 0.3.6 (subclasses included): only the exact types of the last
# four have a keypoint map here.
_GEOMETRIC_TYPES: tuple[type[BasicTransform], ...] = (
    Rot90Transform,
    TransposeAxesTransform,
    SpatialTransform,
    MirrorTransform,
    Convert3DTo2DTransform,
    Convert2DTo3DTransform,
)


def _check_keypoints(keypoints: object, dimension: int, where: str) -> Tensor:
    """Validate a ``(K, dimension)`` floating keypoint tensor whose rows are all finite or all NaN."""
    if not isinstance(keypoints, Tensor) or not keypoints.is_floating_point():
        got = f"a tensor of {keypoints.dtype}" if isinstance(keypoints, Tensor) else type(keypoints).__name__
        raise ValueError(
            f"{where}: data['{KEYPOINTS_KEY}'] must be a floating torch.Tensor (K, {dimension}), got {got}"
        )
    if keypoints.ndim != 2 or keypoints.shape[1] != dimension:
        raise ValueError(
            f"{where}: data['{KEYPOINTS_KEY}'] must have shape (K, {dimension}) to match the {dimension} spatial "
            f"axes of the image, got {tuple(keypoints.shape)}"
        )
    nan = torch.isnan(keypoints)
    partial = nan.any(dim=1) & ~nan.all(dim=1)
    if bool(partial.any()) or bool(torch.isinf(keypoints).any()):
        row = int(torch.nonzero(partial | torch.isinf(keypoints).any(dim=1))[0, 0])
        raise ValueError(
            f"{where}: every row of data['{KEYPOINTS_KEY}'] must be all finite or all NaN (absent); "
            f"row {row} is {keypoints[row].tolist()}"
        )
    return keypoints


def validate_pair_permutation(pair_permutation: Sequence[int]) -> tuple[int, ...]:
    """Check that ``pair_permutation`` maps every landmark to its mirror partner (itself when unpaired).

    Args:
        pair_permutation: ``(K,)`` landmark index -> index of its partner.

    Returns:
        The permutation as a tuple of ints.

    Raises:
        ValueError: if it is not a permutation of ``range(K)`` that is its own inverse.
    """
    perm = tuple(int(p) for p in pair_permutation)
    if sorted(perm) != list(range(len(perm))):
        raise ValueError(f"pair_permutation must be a permutation of range({len(perm)}), got {perm}")
    for index, partner in enumerate(perm):
        if perm[partner] != index:
            raise ValueError(
                f"pair_permutation must be its own inverse (a pairing): {index} -> {partner} but "
                f"{partner} -> {perm[partner]} in {perm}"
            )
    return perm


def validate_label_value_pairs(label_value_pairs: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Check ``(left value, right value)`` label pairs: integers, distinct within a pair, each value in one pair.

    Raises:
        ValueError: naming the offending pair.
    """
    pairs: list[tuple[int, int]] = []
    seen: set[int] = set()
    for pair in label_value_pairs:
        values = tuple(pair)
        if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"label_value_pairs: each entry must be two integer label values, got {pair!r}")
        left, right = int(values[0]), int(values[1])
        if left == right or left in seen or right in seen:
            raise ValueError(
                f"label_value_pairs: a pair needs two distinct values not used in another pair, got {values} in "
                f"{[tuple(p) for p in label_value_pairs]}"
            )
        seen.update((left, right))
        pairs.append((left, right))
    return tuple(pairs)


def swap_label_values(segmentation: Tensor, label_value_pairs: Sequence[tuple[int, int]]) -> Tensor:
    """Swap the values of paired labels in a label map (right lung <-> left lung); other values are kept.

    Args:
        segmentation: label map of any shape and dtype (nnU-Net's ``(1, *spatial)`` target, padding ``-1`` kept).
        label_value_pairs: ``(left value, right value)`` pairs (see :func:`validate_label_value_pairs`).

    Returns:
        A new tensor of the same shape and dtype.
    """
    swapped = segmentation.clone()
    for left, right in label_value_pairs:
        swapped[segmentation == left] = right
        swapped[segmentation == right] = left
    return swapped


def _validate_axes(axes: Sequence[int], name: str) -> tuple[int, ...]:
    result = tuple(int(a) for a in axes)
    if any(a < 0 for a in result) or len(set(result)) != len(result):
        raise ValueError(f"{name} must be distinct non-negative spatial axis indices, got {tuple(axes)}")
    return result


def crop_or_resample_keypoints(
    keypoints: Tensor,
    *,
    spatial_shape: Sequence[int],
    patch_size: Sequence[int],
    center_vox: Sequence[float],
    affine: np.ndarray | Tensor | None,
    align_corners: bool = False,
) -> Tensor:
    """Map keypoints from input voxel indices to patch voxel indices of ``SpatialTransform`` (no deformation).

    Args:
        keypoints: ``(K, D)`` input voxel indices, array order; NaN rows stay NaN.
        spatial_shape: ``D`` input sizes ``S``.
        patch_size: ``D`` patch sizes ``P``.
        center_vox: ``D`` patch centre ``c`` in input voxels (``center_location_in_pixels``).
        affine: ``(D, D)`` matrix ``A`` (rotation @ scaling, array order), or ``None`` for the crop-only path.
        align_corners: the transform's ``align_corners``.

    Returns:
        ``(K, D)`` patch voxel indices, same dtype as ``keypoints`` (computed in float64).

    Raises:
        ValueError: on mismatching lengths, a singular ``affine``, or ``align_corners`` with an input size of 1.
    """
    dimension = keypoints.shape[1]
    if not (len(spatial_shape) == len(patch_size) == len(center_vox) == dimension):
        raise ValueError(
            f"spatial_shape {tuple(spatial_shape)}, patch_size {tuple(patch_size)} and center_vox "
            f"{tuple(center_vox)} must each have {dimension} entries (keypoints are {tuple(keypoints.shape)})"
        )
    x = keypoints.to(torch.float64)
    patch = torch.tensor([float(p) for p in patch_size], dtype=torch.float64)
    center = torch.tensor([float(c) for c in center_vox], dtype=torch.float64)
    if affine is None:
        start = torch.tensor([math.floor(c) - p // 2 for c, p in zip(center_vox, patch_size)], dtype=torch.float64)
        return (x - start).to(keypoints.dtype)
    matrix = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    if tuple(matrix.shape) != (dimension, dimension):
        raise ValueError(f"affine must be ({dimension}, {dimension}), got {tuple(matrix.shape)}")
    if not bool(torch.isfinite(matrix).all()) or abs(float(torch.linalg.det(matrix))) < 1e-12:
        raise ValueError(f"affine must be finite and invertible, got {matrix.tolist()}")
    if align_corners:
        size = torch.tensor([float(s) for s in spatial_shape], dtype=torch.float64)
        if bool((size < 2).any()):
            raise ValueError(f"align_corners=True needs every input size >= 2, got {tuple(spatial_shape)}")
        offset = x * size / (size - 1) - center
    else:
        offset = x - center + 0.5
    # Row vectors: i - (P-1)/2 = A^-1 offset  <=>  (i - (P-1)/2)^T = offset^T A^-T.
    centred = torch.linalg.solve(matrix, offset.T).T
    return (centred + (patch - 1) / 2).to(keypoints.dtype)


def mirror_keypoints(
    keypoints: Tensor,
    axes: Sequence[int],
    spatial_shape: Sequence[int],
    pair_permutation: Sequence[int] | None = None,
    lateral_axes: Sequence[int] = (),
) -> Tensor:
    """Flip keypoints along ``axes`` (``x' = S - 1 - x``) and swap left/right partners when sides exchange.

    Args:
        keypoints: ``(K, D)`` voxel indices; NaN rows stay NaN.
        axes: flipped spatial axes.
        spatial_shape: ``D`` sizes ``S``.
        pair_permutation: ``(K,)`` partner index per landmark (see :func:`validate_pair_permutation`); ``None``
            for no pairs.
        lateral_axes: spatial axes along which a flip exchanges left and right. Rows are permuted, after
            flipping, when an odd number of ``axes`` are lateral.

    Returns:
        ``(K, D)`` mirrored keypoints (a new tensor).

    Raises:
        ValueError: if ``pair_permutation`` does not have ``K`` entries or an axis is out of range.
    """
    dimension = keypoints.shape[1]
    result = keypoints.clone()
    for axis in axes:
        if not 0 <= axis < dimension:
            raise ValueError(f"mirror axis {axis} is out of range for {dimension} spatial axes")
        result[:, axis] = (spatial_shape[axis] - 1) - result[:, axis]
    swaps_sides = len(set(axes) & set(lateral_axes)) % 2 == 1
    if pair_permutation is not None and swaps_sides:
        if len(pair_permutation) != keypoints.shape[0]:
            raise ValueError(
                f"pair_permutation has {len(pair_permutation)} entries but data['{KEYPOINTS_KEY}'] has "
                f"{keypoints.shape[0]} rows"
            )
        result = result[torch.as_tensor(tuple(pair_permutation), dtype=torch.long)]
    return result


class KeypointSpatialTransform(SpatialTransform):
    """``SpatialTransform`` (crop, rotation, scaling) that also maps ``data["keypoints"]`` exactly.

    Same constructor and random draws as the parent; ``get_parameters`` adds ``"spatial_shape"``.
    """

    def get_parameters(self, **data_dict: Any) -> dict:
        params = super().get_parameters(**data_dict)
        params["spatial_shape"] = tuple(int(s) for s in data_dict["image"].shape[1:])
        return params

    def _apply_to_keypoints(self, keypoints: Tensor, **params: Any) -> Tensor:
        keypoints = _check_keypoints(keypoints, len(self.patch_size), type(self).__name__)
        if params.get("elastic_offsets") is not None:
            if bool(torch.isnan(keypoints).all()):
                return keypoints.clone()
            raise NotImplementedError(
                f"{type(self).__name__}: elastic deformation was applied (p_elastic_deform="
                f"{self.p_elastic_deform}); keypoints cannot be mapped through it. Set p_elastic_deform=0 "
                "(nnU-Net's default)."
            )
        if params["grid"] is None:
            affine = None
        elif params["affine"] is None:
            raise NotImplementedError(
                f"{type(self).__name__}: a sampling grid without an affine or elastic offsets is not a case of "
                "batchgeneratorsv2 0.3.6; refusing to guess how keypoints move"
            )
        else:
            affine = params["affine"]
        return crop_or_resample_keypoints(
            keypoints,
            spatial_shape=params["spatial_shape"],
            patch_size=self.patch_size,
            center_vox=params["center_location_in_pixels"],
            affine=affine,
            align_corners=self.align_corners,
        )


class KeypointMirrorTransform(MirrorTransform):
    """``MirrorTransform`` that flips ``data["keypoints"]`` and swaps left/right partners.

    Args:
        allowed_axes: as for ``MirrorTransform``: each is flipped with probability 1/2.
        pair_permutation: ``(K,)`` landmark index -> index of its mirror partner (identity for unpaired);
            ``None`` for no pairs.
        lateral_axes: spatial axes along which a flip exchanges left and right.
        permute_regression_target: also permute the channels of ``data["regression_target"]`` by
            ``pair_permutation`` when partners swap (for a regression target holding one heatmap per landmark).
        label_value_pairs: ``(left value, right value)`` pairs of sided labels, swapped in ``data["segmentation"]``
            whenever landmark partners swap (``LandmarkSpec.label_value_pairs``).

    Raises:
        ValueError: on an invalid ``pair_permutation``, ``lateral_axes`` or ``label_value_pairs``.
    """

    def __init__(
        self,
        allowed_axes: tuple[int, ...],
        pair_permutation: Sequence[int] | None = None,
        lateral_axes: Sequence[int] = (),
        permute_regression_target: bool = False,
        label_value_pairs: Sequence[tuple[int, int]] = (),
    ) -> None:
        super().__init__(allowed_axes)
        self._set_pairing(pair_permutation, lateral_axes, permute_regression_target, label_value_pairs)

    def _set_pairing(
        self,
        pair_permutation: Sequence[int] | None,
        lateral_axes: Sequence[int],
        permute_regression_target: bool,
        label_value_pairs: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.pair_permutation = None if pair_permutation is None else validate_pair_permutation(pair_permutation)
        self.lateral_axes = _validate_axes(lateral_axes, "lateral_axes")
        self.permute_regression_target = bool(permute_regression_target)
        self.label_value_pairs = validate_label_value_pairs(label_value_pairs)

    def get_parameters(self, **data_dict: Any) -> dict:
        params = super().get_parameters(**data_dict)
        params["spatial_shape"] = tuple(int(s) for s in data_dict["image"].shape[1:])
        params["swap_pairs"] = len(set(params["axes"]) & set(self.lateral_axes)) % 2 == 1
        return params

    def _apply_to_keypoints(self, keypoints: Tensor, **params: Any) -> Tensor:
        keypoints = _check_keypoints(keypoints, len(params["spatial_shape"]), type(self).__name__)
        return mirror_keypoints(
            keypoints, params["axes"], params["spatial_shape"], self.pair_permutation, self.lateral_axes
        )

    def _apply_to_segmentation(self, segmentation: Tensor, **params: Any) -> Tensor:
        flipped = super()._apply_to_segmentation(segmentation, **params)
        if not (params["swap_pairs"] and self.label_value_pairs):
            return flipped
        return swap_label_values(flipped, self.label_value_pairs)

    def _apply_to_regr_target(self, regression_target: Tensor, **params: Any) -> Tensor:
        flipped = super()._apply_to_regr_target(regression_target, **params)
        if not (self.permute_regression_target and params["swap_pairs"] and self.pair_permutation is not None):
            return flipped
        if flipped.shape[0] != len(self.pair_permutation):
            raise ValueError(
                f"{type(self).__name__}: permute_regression_target needs one regression_target channel per "
                f"landmark ({len(self.pair_permutation)}), got {flipped.shape[0]} channels"
            )
        return flipped[torch.as_tensor(self.pair_permutation, dtype=torch.long)]

    def apply(self, data_dict: dict, **params: Any) -> dict:
        data_dict = super().apply(data_dict, **params)
        offsets = data_dict.get(KEYPOINT_SLICE_OFFSETS_KEY)
        if offsets is not None and params["swap_pairs"] and self.pair_permutation is not None:
            if offsets.shape != (len(self.pair_permutation),):
                raise ValueError(
                    f"{type(self).__name__}: data['{KEYPOINT_SLICE_OFFSETS_KEY}'] must have shape "
                    f"({len(self.pair_permutation)},), one value per landmark, got {tuple(offsets.shape)}"
                )
            data_dict[KEYPOINT_SLICE_OFFSETS_KEY] = offsets[torch.as_tensor(self.pair_permutation, dtype=torch.long)]
        return data_dict


class KeypointConvert3DTo2DTransform(Convert3DTo2DTransform):
    """``Convert3DTo2DTransform`` that keeps the first keypoint coordinate aside and passes on the other two."""

    def apply(self, data_dict: dict, **params: Any) -> dict:
        keypoints = data_dict.get(KEYPOINTS_KEY)
        if keypoints is not None:
            keypoints = _check_keypoints(keypoints, 3, type(self).__name__)
            data_dict[KEYPOINTS_FIRST_AXIS_KEY] = keypoints[:, 0].clone()
        return super().apply(data_dict, **params)

    def _apply_to_keypoints(self, keypoints: Tensor, **params: Any) -> Tensor:
        return keypoints[:, 1:].clone()


class KeypointConvert2DTo3DTransform(Convert2DTo3DTransform):
    """``Convert2DTo3DTransform`` that puts back the first keypoint coordinate kept by the 3D -> 2D step."""

    def get_parameters(self, **data_dict: Any) -> dict:
        params = super().get_parameters(**data_dict)
        if KEYPOINTS_FIRST_AXIS_KEY in data_dict:
            params[KEYPOINTS_FIRST_AXIS_KEY] = data_dict[KEYPOINTS_FIRST_AXIS_KEY]
        return params

    def apply(self, data_dict: dict, **params: Any) -> dict:
        has_keypoints = data_dict.get(KEYPOINTS_KEY) is not None
        if has_keypoints != (KEYPOINTS_FIRST_AXIS_KEY in data_dict):
            raise ValueError(
                f"{type(self).__name__}: data['{KEYPOINTS_KEY}'] is {'set' if has_keypoints else 'missing'} but "
                f"'{KEYPOINTS_FIRST_AXIS_KEY}' is {'set' if not has_keypoints else 'missing'}; the pipeline must "
                f"pass keypoints through {KeypointConvert3DTo2DTransform.__name__} first"
            )
        data_dict = super().apply(data_dict, **params)
        data_dict.pop(KEYPOINTS_FIRST_AXIS_KEY, None)
        return data_dict

    def _apply_to_keypoints(self, keypoints: Tensor, **params: Any) -> Tensor:
        keypoints = _check_keypoints(keypoints, 2, type(self).__name__)
        first = params[KEYPOINTS_FIRST_AXIS_KEY]
        if first.shape != (keypoints.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: kept first coordinates have shape {tuple(first.shape)} but there are "
                f"{keypoints.shape[0]} keypoints"
            )
        return torch.cat((first.to(keypoints.dtype)[:, None], keypoints), dim=1)


class KeypointPassthrough(BasicTransform):
    """Runs ``transform`` with ``data["keypoints"]`` held aside, then puts the keypoints back unchanged.

    For transforms declared non-geometric (``make_keypoint_aware(..., passthrough_types=...)``) that would
    otherwise overwrite the keypoints with ``None`` through ``BasicTransform.apply``.
    """

    def __init__(self, transform: BasicTransform) -> None:
        super().__init__()
        self.transform = transform

    def apply(self, data_dict: dict, **params: Any) -> dict:
        keypoints = data_dict.pop(KEYPOINTS_KEY, None)
        data_dict = self.transform(**data_dict)
        if keypoints is not None:
            data_dict[KEYPOINTS_KEY] = keypoints
        return data_dict

    def __repr__(self) -> str:
        return f"{type(self).__name__}(transform={self.transform!r})"


def _rebuild_as(cls: type[BasicTransform], original: BasicTransform, **replacements: Any) -> BasicTransform:
    """A new ``cls`` instance with a deep copy of ``original``'s attributes, some replaced; ``original`` untouched."""
    rebuilt = object.__new__(cls)
    rebuilt.__dict__.update(
        {key: copy.deepcopy(value) for key, value in original.__dict__.items() if key not in replacements}
    )
    rebuilt.__dict__.update(replacements)
    return rebuilt


def _keeps_keypoints_untouched(transform: BasicTransform) -> bool:
    """Whether ``transform`` provably never touches ``data["keypoints"]`` (image-/segmentation-only transforms)."""
    cls = type(transform)
    if cls.__call__ is not BasicTransform.__call__:
        return False
    if isinstance(transform, ImageOnlyTransform) and cls.apply is ImageOnlyTransform.apply:
        return True
    if isinstance(transform, SegOnlyTransform) and cls.apply is SegOnlyTransform.apply:
        return True
    if cls in _KEYPOINT_SAFE_APPLY_TYPES:
        return True
    if cls is MoveChannelsTransform:
        return KEYPOINTS_KEY not in (transform.source_key, transform.target_key)
    return False


def make_keypoint_aware(
    transform: BasicTransform,
    pair_permutation: Sequence[int] | None,
    lateral_axes: Sequence[int],
    *,
    permute_regression_target: bool = False,
    label_value_pairs: Sequence[tuple[int, int]] = (),
    passthrough_types: tuple[type, ...] = (),
) -> BasicTransform:
    """An equivalent transform tree that carries ``data["keypoints"]`` exactly.

    ``SpatialTransform``, ``MirrorTransform``, ``Convert3DTo2DTransform`` and ``Convert2DTo3DTransform`` (exact
    types) become their keypoint-aware subclasses with identical (deep-copied) parameters; containers
    (``ComposeTransforms``, ``TimedComposeTransforms``, ``RandomTransform``, ``OneOfTransform``) are rebuilt around
    converted children; image-/segmentation-only transforms are deep-copied. ``transform`` itself is not modified
    and shares no object with the result. The result pickles (for nnU-Net's multi-process augmentation).

    Args:
        transform: e.g. ``nnUNetTrainer.get_training_transforms(...)``.
        pair_permutation: ``(K,)`` landmark index -> mirror partner index (``LandmarkSpec.mirror_permutation()``);
            ``None`` for no pairs.
        lateral_axes: spatial axes (of the samples the pipeline sees) along which a flip exchanges left and right.
        permute_regression_target: see :class:`KeypointMirrorTransform`.
        label_value_pairs: see :class:`KeypointMirrorTransform`: sided label values swapped with the landmark rows.
        passthrough_types: further transform classes the caller declares non-geometric; instances are wrapped in
            :class:`KeypointPassthrough`.

    Returns:
        The converted transform tree.

    Raises:
        NotImplementedError: on a geometric transform without a keypoint map (``Rot90Transform``,
            ``TransposeAxesTransform``, a subclass of a supported geometric transform).
        ValueError: on a transform whose effect on keypoints is unknown (not in ``passthrough_types``), or on an
            invalid ``pair_permutation`` / ``lateral_axes`` / ``label_value_pairs``.
    """
    perm = None if pair_permutation is None else validate_pair_permutation(pair_permutation)
    lateral = _validate_axes(lateral_axes, "lateral_axes")
    label_pairs = validate_label_value_pairs(label_value_pairs)

    def convert(node: BasicTransform) -> BasicTransform:
        cls = type(node)
        if cls in (ComposeTransforms, TimedComposeTransforms):
            return _rebuild_as(cls, node, transforms=[convert(child) for child in node.transforms])
        if cls is RandomTransform:
            return _rebuild_as(cls, node, transform=convert(node.transform))
        if cls is OneOfTransform:
            return _rebuild_as(cls, node, list_of_transforms=[convert(child) for child in node.list_of_transforms])
        if cls is KeypointPassthrough:
            return _rebuild_as(cls, node, transform=copy.deepcopy(node.transform))
        if cls in (SpatialTransform, KeypointSpatialTransform):
            return _rebuild_as(KeypointSpatialTransform, node)
        if cls in (MirrorTransform, KeypointMirrorTransform):
            mirror = cast(KeypointMirrorTransform, _rebuild_as(KeypointMirrorTransform, node))
            mirror._set_pairing(perm, lateral, permute_regression_target, label_pairs)
            return mirror
        if cls in (Convert3DTo2DTransform, KeypointConvert3DTo2DTransform):
            return _rebuild_as(KeypointConvert3DTo2DTransform, node)
        if cls in (Convert2DTo3DTransform, KeypointConvert2DTo3DTransform):
            return _rebuild_as(KeypointConvert2DTo3DTransform, node)
        if isinstance(node, _GEOMETRIC_TYPES):
            raise NotImplementedError(
                f"{cls.__module__}.{cls.__qualname__} changes the geometry of the sample and has no keypoint map; "
                "remove it from the pipeline or implement _apply_to_keypoints for it"
            )
        if passthrough_types and isinstance(node, passthrough_types):
            return KeypointPassthrough(copy.deepcopy(node))
        if isinstance(node, BasicTransform) and _keeps_keypoints_untouched(node):
            return copy.deepcopy(node)
        raise ValueError(
            f"make_keypoint_aware: cannot tell whether {cls.__module__}.{cls.__qualname__} changes geometry or "
            "drops data['keypoints']; if it does neither, pass passthrough_types=(" + cls.__qualname__ + ",)"
        )

    return convert(transform)
