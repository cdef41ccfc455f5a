"""Truncated boundary-proximity maps of binary masks (the distance prior of BaBLoss), in torch on any device.

The map of a mask is ``max(0, 1 - d / range_mm)``, where ``d`` is the Euclidean distance in mm from a voxel centre
to the nearest boundary voxel centre: 1 on the boundary, falling linearly to 0 at ``range_mm`` and beyond
(Eq. 11 of "Boundary as the Bridge", the BaBLoss paper, seed document 000 — written here from the formula, not from its code).

The exact distance is computed as a *truncated* separable min-convolution of squared distances, which costs
``sum_a (2 r_a + 1)`` elementwise minima over the tensor with ``r_a = floor(range_mm / spacing_mm[a])``; every
channel of every image is processed at once. :func:`chessboard_proximity_map` reproduces the released code's
approximation (chessboard distance in voxels, iterated 3 x 3 (x 3) max-pooling).

Axis order is the package's array order (``(z, y, x)`` / ``(y, x)``); masks are ``(B, C, *spatial)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "boundary_proximity_map",
    "boundary_voxels",
    "chessboard_proximity_map",
    "truncated_boundary_distance_mm",
]

_SUPPORTED_DIMENSIONS = (2, 3)


def boundary_voxels(masks: Tensor) -> Tensor:
    """Mark the voxels that differ from at least one face neighbour (4-connectivity in 2D, 6 in 3D).

    Both sides of every edge are marked (the outermost layer of the mask *and* the innermost layer of the
    background), so the boundary of a mask equals the boundary of its complement and a one-voxel mask has a
    boundary of 5 (2D) or 7 (3D) voxels. The image border never creates boundary: outside the image each voxel is
    taken to equal its nearest inside voxel (replicate padding). Each channel is treated independently.

    Args:
        masks: ``(B, C, *spatial)`` bool tensor, or numeric tensor with values in {0, 1}; 2 or 3 spatial axes.

    Returns:
        ``(B, C, *spatial)`` bool tensor on the device of ``masks``.

    Raises:
        ValueError: on a wrong number of axes or a numeric mask with values other than 0 and 1.
    """
    binary = _binary_masks(masks)
    boundary = torch.zeros_like(binary)
    for axis in range(2, binary.ndim):
        size = binary.shape[axis]
        if size < 2:
            continue
        differs = binary.narrow(axis, 1, size - 1) != binary.narrow(axis, 0, size - 1)
        boundary.narrow(axis, 1, size - 1).logical_or_(differs)
        boundary.narrow(axis, 0, size - 1).logical_or_(differs)
    return boundary


def truncated_boundary_distance_mm(masks: Tensor, range_mm: float, spacing_mm: Sequence[float]) -> Tensor:
    """Exact Euclidean distance in mm to the nearest boundary voxel centre, up to ``range_mm``.

    Why truncation is exact: the squared distance ``d^2(x) = min_y sum_a ((x_a - y_a) s_a)^2`` over boundary voxels
    ``y`` is a minimum over a product of axes, so it can be taken one axis at a time (1-D min-convolutions of the
    squared-distance map with the kernel ``(k s_a)^2``). Restricting every axis to offsets ``|k| <= r_a =
    floor(range_mm / s_a)`` restricts ``y`` to a box around ``x``, and the iterated minima then give the exact
    minimum over the boundary voxels in that box. If ``d(x) <= range_mm``, the nearest ``y`` satisfies
    ``|x_a - y_a| s_a <= d(x) <= range_mm`` on every axis, hence the integer ``|x_a - y_a| <= r_a``: it lies in the
    box and the result is exact. If ``d(x) > range_mm``, the box minimum is either ``inf`` or a distance ``>= d(x)``,
    both ``> range_mm``; such values are reported as ``inf``.

    Args:
        masks: ``(B, C, *spatial)`` bool tensor, or numeric tensor with values in {0, 1}; 2 or 3 spatial axes.
        range_mm: truncation radius in mm, positive and finite.
        spacing_mm: voxel spacing per spatial axis in mm, array order.

    Returns:
        ``(B, C, *spatial)`` float32 tensor: the distance where it is ``<= range_mm``, ``inf`` elsewhere (including
        every voxel of a channel without boundary: empty or full mask).

    Raises:
        ValueError: on invalid masks, range or spacing.
    """
    boundary = boundary_voxels(masks)
    spacing = _validate_range_and_spacing(range_mm, spacing_mm, boundary.ndim - 2)
    inf = torch.tensor(math.inf, dtype=torch.float32, device=boundary.device)
    squared_mm2 = torch.where(boundary, torch.zeros((), dtype=torch.float32, device=boundary.device), inf)
    for axis, spacing_axis in enumerate(spacing, start=2):
        # The tiny slack keeps e.g. floor(1.4 / 0.7) at 2 despite the rounding of the quotient.
        radius_vox = math.floor(range_mm / spacing_axis * (1.0 + 1e-9))
        squared_mm2 = _min_convolve_squared(squared_mm2, axis, spacing_axis, radius_vox)
    distance_mm = squared_mm2.sqrt()
    # Inside the box but farther than the range: not exact in general, so report it as out of range.
    return torch.where(distance_mm <= range_mm, distance_mm, inf)


def boundary_proximity_map(masks: Tensor, range_mm: float, spacing_mm: Sequence[float]) -> Tensor:
    """Truncated boundary-proximity map ``max(0, 1 - d / range_mm)`` with exact Euclidean ``d`` in mm.

    ``d`` is the distance to the nearest voxel of :func:`boundary_voxels` (see
    :func:`truncated_boundary_distance_mm` for why the truncated computation is exact); it equals
    ``scipy.ndimage.distance_transform_edt(~boundary, sampling=spacing_mm)`` up to float32 rounding. A channel
    without boundary (empty or full mask) maps to all zeros. No gradient flows through this map.

    Args:
        masks: ``(B, C, *spatial)`` bool tensor, or numeric tensor with values in {0, 1}; 2 or 3 spatial axes.
        range_mm: the range ``n`` in mm, positive and finite: the map is 0 at ``d >= range_mm``.
        spacing_mm: voxel spacing per spatial axis in mm, array order.

    Returns:
        ``(B, C, *spatial)`` float32 tensor in ``[0, 1]`` on the device of ``masks``; exactly 1 on the boundary.

    Raises:
        ValueError: on invalid masks, range or spacing.

    Example:
        >>> masks = torch.zeros(1, 1, 1, 6, dtype=torch.bool)
        >>> masks[..., 3:] = True
        >>> boundary_proximity_map(masks, range_mm=2.0, spacing_mm=(1.0, 1.0))[0, 0, 0].tolist()
        [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]
    """
    distance_mm = truncated_boundary_distance_mm(masks, range_mm, spacing_mm)
    return (1.0 - distance_mm / range_mm).clamp_(min=0.0)


def chessboard_proximity_map(masks: Tensor, range_vox: int) -> Tensor:
    """BaBLoss's released approximation: ``max(0, 1 - d_chessboard / range_vox)`` by iterated max-pooling.

    ``d_chessboard`` is the chessboard (L-infinity) distance in voxels to the nearest boundary voxel; ``j``
    successive 3 x 3 (x 3) max-pools of the boundary mark every voxel with ``d <= j``, so the average of the
    pooled maps for ``j = 0 .. range_vox - 1`` equals ``(range_vox - d) / range_vox`` where ``d < range_vox``.
    Spacing is ignored (the released code works on an isotropic grid). Use it to reproduce the paper; prefer
    :func:`boundary_proximity_map` otherwise.

    Args:
        masks: ``(B, C, *spatial)`` bool tensor, or numeric tensor with values in {0, 1}; 2 or 3 spatial axes.
        range_vox: the range ``n`` in voxels, a positive integer.

    Returns:
        ``(B, C, *spatial)`` float32 tensor in ``[0, 1]`` on the device of ``masks``.

    Raises:
        ValueError: on invalid masks or a ``range_vox`` that is not a positive integer.
    """
    if isinstance(range_vox, bool) or not isinstance(range_vox, int) or range_vox < 1:
        raise ValueError(f"range_vox must be a positive integer number of voxels, got {range_vox!r}")
    boundary = boundary_voxels(masks).to(torch.float32)
    max_pool = F.max_pool2d if boundary.ndim == 4 else F.max_pool3d
    dilated = boundary
    total = boundary.clone()
    for _ in range(range_vox - 1):
        dilated = max_pool(dilated, kernel_size=3, stride=1, padding=1)
        total += dilated
    return total / range_vox


def _min_convolve_squared(squared_mm2: Tensor, axis: int, spacing_mm: float, radius_vox: int) -> Tensor:
    """``out[x] = min_{|k| <= radius_vox} in[x + k] + (k spacing_mm)^2`` along ``axis``, ``inf`` outside."""
    if radius_vox == 0:
        return squared_mm2
    size = squared_mm2.shape[axis]
    pad_shape = list(squared_mm2.shape)
    pad_shape[axis] = radius_vox
    padding = squared_mm2.new_full(pad_shape, math.inf)
    padded = torch.cat([padding, squared_mm2, padding], dim=axis)
    result = squared_mm2.clone()
    shifted = torch.empty_like(result)  # reused for every shift: no allocation inside the loop
    for offset_vox in range(1, radius_vox + 1):
        penalty_mm2 = (offset_vox * spacing_mm) ** 2
        for start in (radius_vox - offset_vox, radius_vox + offset_vox):
            torch.add(padded.narrow(axis, start, size), penalty_mm2, out=shifted)
            torch.minimum(result, shifted, out=result)
    return result


def _binary_masks(masks: Tensor) -> Tensor:
    """Validate ``(B, C, *spatial)`` masks and return them as bool."""
    if not isinstance(masks, Tensor) or masks.ndim - 2 not in _SUPPORTED_DIMENSIONS:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a (B, C, *spatial) tensor with 2 or 3 spatial axes, got {got}")
    if masks.dtype == torch.bool:
        return masks
    if masks.is_complex() or not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError(f"masks must be bool or hold only the values 0 and 1 (dtype {masks.dtype})")
    return masks != 0


def _validate_range_and_spacing(range_mm: float, spacing_mm: Sequence[float], dimension: int) -> tuple[float, ...]:
    """Check a positive finite range and one positive finite spacing per spatial axis."""
    if isinstance(range_mm, bool) or not isinstance(range_mm, (int, float)) or not (
        math.isfinite(range_mm) and range_mm > 0
    ):
        raise ValueError(f"range_mm must be a positive finite number of millimetres, got {range_mm!r}")
    try:
        spacing = tuple(float(value) for value in spacing_mm)
    except (TypeError, ValueError) as error:
        raise ValueError(f"spacing_mm must be a sequence of numbers, got {spacing_mm!r}") from error
    if len(spacing) != dimension or not all(math.isfinite(value) and value > 0 for value in spacing):
        raise ValueError(
            f"spacing_mm must hold {dimension} positive finite values (one per spatial axis, array order), "
            f"got {spacing_mm!r}"
        )
    return spacing
