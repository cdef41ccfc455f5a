"""Landmark heatmaps: render Gaussian targets on the device and decode them with sub-voxel accuracy.

Coordinates are **voxel indices in array axis order** (``(z, y, x)`` in 3D, ``(y, x)`` in 2D; integers are voxel
centres), shaped ``(B, K, D)`` for ``B`` images and ``K`` landmarks, with a row of NaN for an absent landmark.

Rendering is separable: the heatmap of landmark ``c`` is ``prod_a exp(-(i_a - c_a)^2 / (2 sigma_a^2))``, so each
channel is the outer product of ``D`` one-dimensional Gaussians. Only the ``(B, K, S_a)`` factors and the output
itself are ever allocated, on the device of the coordinates.

A 2D slice taken out of a 3D volume gets the slice of a 3D Gaussian: the in-plane Gaussian times the through-plane
factor ``exp(-o^2 / (2 sigma^2))`` of the landmark's offset ``o`` from the slice (:func:`through_plane_factors`).
The heatmaps of the slices then stack into a sampled 3D Gaussian, which the same decoder reads in 3D.

Decoding takes the arg-max of each channel and refines it per axis with a parabola through the logarithm of the
peak and its two neighbours, which recovers the centre of a sampled Gaussian exactly (its logarithm *is* a
parabola along every axis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "decode_heatmaps",
    "render_gaussian_heatmaps",
    "sigma_mm_to_vox",
    "through_plane_factors",
]

_SUPPORTED_DIMENSIONS = (2, 3)


def sigma_mm_to_vox(sigma_mm: float | Sequence[float], spacing_mm: Sequence[float]) -> tuple[float, ...]:
    """Convert a Gaussian width from millimetres to voxels, per axis.

    Args:
        sigma_mm: standard deviation in mm; one value for every axis, or one per axis in array order.
        spacing_mm: voxel spacing in mm per axis, **array order** (``(z, y, x)`` / ``(y, x)``).

    Returns:
        ``sigma_mm[a] / spacing_mm[a]`` for every axis ``a``, in array order.

    Raises:
        ValueError: if a value is not positive and finite, or the lengths of the two sequences differ.

    Example:
        >>> sigma_mm_to_vox(2.0, (4.0, 0.5, 0.5))
        (0.5, 4.0, 4.0)
    """
    spacing = _positive_finite_tuple(spacing_mm, "spacing_mm")
    if isinstance(sigma_mm, (int, float)):
        sigma = _positive_finite_tuple((sigma_mm,), "sigma_mm") * len(spacing)
    else:
        sigma = _positive_finite_tuple(sigma_mm, "sigma_mm")
        if len(sigma) != len(spacing):
            raise ValueError(
                f"sigma_mm has {len(sigma)} values but spacing_mm has {len(spacing)}: give one sigma or one per axis"
            )
    return tuple(s / h for s, h in zip(sigma, spacing))


def render_gaussian_heatmaps(
    coords_vox: Tensor,
    spatial_shape: Sequence[int],
    sigma_vox: float | Sequence[float] | Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    out: Tensor | None = None,
) -> Tensor:
    """Render one unnormalised Gaussian per landmark (value 1 at the landmark itself).

    Memory: the output is the only large tensor, ``B * K * prod(spatial_shape) * itemsize`` bytes; e.g.
    ``B=2, K=166`` at 512 x 512 in float32 is 2 * 166 * 262144 * 4 B = 348 MB (on the device of ``coords_vox``).
    Pass ``out`` to reuse a buffer across calls.

    Args:
        coords_vox: ``(B, K, D)`` float voxel indices in array order; a row containing NaN (or any non-finite value)
            is an absent landmark and renders as all zeros.
        spatial_shape: ``D`` image sizes in array order, ``D`` in {2, 3}.
        sigma_vox: Gaussian standard deviation in voxels: one value, or ``D`` values in array order (sequence or
            1-D tensor), for anisotropic voxels (see :func:`sigma_mm_to_vox`).
        dtype: floating dtype of the output (the 1-D factors are computed in at least float32).
        out: optional ``(B, K, *spatial_shape)`` tensor of ``dtype`` on the device of ``coords_vox`` to write into.

    Returns:
        ``(B, K, *spatial_shape)`` tensor of ``dtype`` on ``coords_vox.device``, values in ``[0, 1]``.

    Raises:
        ValueError: on a wrong shape, dimension, sigma, dtype or ``out`` buffer.

    Example:
        >>> coords = torch.tensor([[[2.0, 3.0], [float("nan"), float("nan")]]])
        >>> heatmaps = render_gaussian_heatmaps(coords, (5, 6), 1.0)
        >>> heatmaps.shape, float(heatmaps[0, 0, 2, 3]), float(heatmaps[0, 1].abs().sum())
        (torch.Size([1, 2, 5, 6]), 1.0, 0.0)
    """
    shape = _spatial_shape_tuple(spatial_shape)
    dimension = len(shape)
    if not isinstance(coords_vox, Tensor) or coords_vox.ndim != 3 or coords_vox.shape[-1] != dimension:
        got = tuple(coords_vox.shape) if isinstance(coords_vox, Tensor) else type(coords_vox).__name__
        raise ValueError(f"coords_vox must be a (B, K, {dimension}) tensor for spatial_shape {shape}, got {got}")
    if not coords_vox.is_floating_point():
        raise ValueError(f"coords_vox must be a floating-point tensor, got dtype {coords_vox.dtype}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    device = coords_vox.device
    batch, num_landmarks = coords_vox.shape[:2]
    output_shape = (batch, num_landmarks, *shape)
    if out is not None and (tuple(out.shape) != output_shape or out.dtype != dtype or out.device != device):
        raise ValueError(
            f"out must be a {output_shape} tensor of {dtype} on {device}, "
            f"got {tuple(out.shape)} {out.dtype} on {out.device}"
        )

    work_dtype = torch.promote_types(dtype, torch.float32)
    sigma = _sigma_tensor(sigma_vox, dimension, work_dtype, device)
    coords = coords_vox.to(work_dtype)
    present = torch.isfinite(coords).all(dim=-1, keepdim=True)  # (B, K, 1)
    coords = torch.where(present, coords, torch.zeros((), dtype=work_dtype, device=device))

    factors = []
    for axis, size in enumerate(shape):
        grid = torch.arange(size, dtype=work_dtype, device=device)
        offset = (grid - coords[..., axis : axis + 1]) / sigma[axis]  # (B, K, S_axis)
        factor = torch.exp(-0.5 * offset.square()) * present
        view = [batch, num_landmarks] + [1] * dimension
        view[2 + axis] = size
        factors.append(factor.to(dtype).view(view))

    # In 3D the (B, K, S_0, S_1) intermediate is smaller than the output by a factor S_2.
    leading = factors[0] if dimension == 2 else factors[0] * factors[1]
    if out is None:
        return leading * factors[-1]
    return torch.mul(leading, factors[-1], out=out)


def through_plane_factors(offsets_vox: Tensor, sigma_vox: float) -> Tensor:
    """Peak height of each landmark's heatmap on a 2D slice of a 3D volume: the through-plane factor of a 3D Gaussian.

    Multiplying the in-plane heatmaps of :func:`render_gaussian_heatmaps` by these factors gives, on the slice, the
    3D Gaussian of the landmark (separable, so exact): 1 for a landmark on the slice, about 0 for one far from it.

    Args:
        offsets_vox: ``(B, K)`` signed distance of each landmark from the slice, in slices (through-plane voxels);
            NaN for a landmark that is not annotated.
        sigma_vox: through-plane standard deviation, in slices.

    Returns:
        ``(B, K)`` factors in ``[0, 1]`` (dtype at least float32, device of ``offsets_vox``); 0 where the offset is
        not finite.

    Raises:
        ValueError: on a non-floating tensor or a sigma that is not positive and finite.

    Example:
        >>> factors = through_plane_factors(torch.tensor([[0.0, 1.0, 4.0, float("nan")]]), 1.0)
        >>> [round(value, 4) for value in factors[0].tolist()]
        [1.0, 0.6065, 0.0003, 0.0]
    """
    if not isinstance(offsets_vox, Tensor) or not offsets_vox.is_floating_point():
        got = f"a tensor of {offsets_vox.dtype}" if isinstance(offsets_vox, Tensor) else type(offsets_vox).__name__
        raise ValueError(f"offsets_vox must be a floating-point tensor, got {got}")
    (sigma,) = _positive_finite_tuple((sigma_vox,), "sigma_vox")
    offsets = offsets_vox.to(torch.promote_types(offsets_vox.dtype, torch.float32))
    finite = torch.isfinite(offsets)
    factors = torch.exp(-0.5 * (torch.where(finite, offsets, torch.zeros_like(offsets)) / sigma).square())
    return torch.where(finite, factors, torch.zeros_like(factors))


def decode_heatmaps(heatmaps: Tensor, *, min_confidence: float = 0.0) -> tuple[Tensor, Tensor]:
    """Locate the peak of every heatmap channel with sub-voxel refinement.

    The integer arg-max is refined independently along each axis by fitting a parabola to the logarithm of the
    heatmap at the peak and its two neighbours: ``offset = (l[-1] - l[+1]) / (2 (l[-1] - 2 l[0] + l[+1]))``. For a
    sampled Gaussian (any sigma, any anisotropy) this is exact. The offset is clipped to ``[-0.5, 0.5]`` voxel, and
    the integer peak is kept along an axis where the peak touches the image border, where one of the three values
    is not positive, or where the three values are equal. Ties in the arg-max go to the first voxel in C order.

    Args:
        heatmaps: ``(B, K, *spatial)`` floating tensor, ``spatial`` of 2 or 3 axes in array order.
        min_confidence: coordinates become NaN where the confidence is below this value (or NaN). With the default
            0.0, an all-zero channel (an absent landmark rendered by :func:`render_gaussian_heatmaps`) still decodes
            to voxel 0 with confidence 0; pass a positive threshold to report it as absent.

    Returns:
        ``(coords_vox, confidence)``: ``(B, K, D)`` voxel indices in array order (dtype of ``heatmaps``, at least
        float32) and ``(B, K)`` confidence, the heatmap value at the integer peak voxel (1 for a rendered landmark
        exactly on a voxel centre, less off-centre).

    Raises:
        ValueError: on a non-floating tensor, a dimension other than 2 or 3, an empty spatial axis, or a
            non-finite ``min_confidence``.
    """
    if not isinstance(heatmaps, Tensor) or heatmaps.ndim - 2 not in _SUPPORTED_DIMENSIONS:
        got = tuple(heatmaps.shape) if isinstance(heatmaps, Tensor) else type(heatmaps).__name__
        raise ValueError(f"heatmaps must be a (B, K, *spatial) tensor with 2 or 3 spatial axes, got {got}")
    if not heatmaps.is_floating_point():
        raise ValueError(f"heatmaps must be a floating-point tensor, got dtype {heatmaps.dtype}")
    if not math.isfinite(min_confidence):
        raise ValueError(f"min_confidence must be finite, got {min_confidence}")
    shape = tuple(heatmaps.shape[2:])
    if min(shape) < 1:
        raise ValueError(f"heatmaps must have non-empty spatial axes, got spatial shape {shape}")

    work_dtype = torch.promote_types(heatmaps.dtype, torch.float32)
    flat = heatmaps.flatten(2).to(work_dtype)  # (B, K, N)
    peak_flat = flat.argmax(dim=-1, keepdim=True)  # (B, K, 1)
    confidence = flat.gather(-1, peak_flat)  # (B, K, 1)
    log_peak = torch.log(confidence)

    strides = [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]
    remainder = peak_flat
    coords = []
    for axis, (size, stride) in enumerate(zip(shape, strides)):
        peak_axis = torch.div(remainder, stride, rounding_mode="floor")
        remainder = remainder - peak_axis * stride
        interior = (peak_axis > 0) & (peak_axis < size - 1)
        before = flat.gather(-1, torch.where(interior, peak_flat - stride, peak_flat))
        after = flat.gather(-1, torch.where(interior, peak_flat + stride, peak_flat))
        log_before, log_after = torch.log(before), torch.log(after)
        curvature = log_before - 2.0 * log_peak + log_after
        usable = interior & (before > 0) & (after > 0) & (confidence > 0) & (curvature < 0)
        # Replace the denominator where the fit is unusable so no inf/NaN is ever produced.
        safe_curvature = torch.where(usable, curvature, -torch.ones_like(curvature))
        offset = torch.where(usable, (log_before - log_after) / (2.0 * safe_curvature), torch.zeros_like(curvature))
        coords.append(peak_axis.to(work_dtype) + offset.clamp(-0.5, 0.5))

    coords_vox = torch.cat(coords, dim=-1)  # (B, K, D)
    confidence = confidence.squeeze(-1)
    confident = confidence >= min_confidence  # False for NaN as well
    coords_vox = torch.where(confident.unsqueeze(-1), coords_vox, torch.full_like(coords_vox, math.nan))
    return coords_vox, confidence


def _positive_finite_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    """Validate a non-empty sequence of positive finite numbers."""
    try:
        result = tuple(float(value) for value in values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from error
    if not result or not all(math.isfinite(value) and value > 0 for value in result):
        raise ValueError(f"{name} must be positive and finite, got {values!r}")
    return result


def _spatial_shape_tuple(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a 2-D or 3-D shape of positive integers."""
    shape = tuple(int(size) for size in spatial_shape)
    if len(shape) not in _SUPPORTED_DIMENSIONS or min(shape) < 1 or shape != tuple(spatial_shape):
        raise ValueError(f"spatial_shape must be 2 or 3 positive integers, got {tuple(spatial_shape)!r}")
    return shape


def _sigma_tensor(
    sigma_vox: float | Sequence[float] | Tensor, dimension: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Turn a scalar or per-axis sigma into a validated ``(D,)`` tensor."""
    if isinstance(sigma_vox, Tensor):
        if sigma_vox.ndim > 1:
            raise ValueError(f"sigma_vox tensor must be 0-D or 1-D, got shape {tuple(sigma_vox.shape)}")
        values = tuple(sigma_vox.detach().reshape(-1).cpu().tolist())
    elif isinstance(sigma_vox, (int, float)):
        values = (float(sigma_vox),)
    else:
        values = tuple(sigma_vox)
    values = _positive_finite_tuple(values, "sigma_vox")
    if len(values) == 1:
        values = values * dimension
    if len(values) != dimension:
        raise ValueError(f"sigma_vox must have 1 or {dimension} values (one per axis), got {len(values)}")
    return torch.tensor(values, dtype=dtype, device=device)
