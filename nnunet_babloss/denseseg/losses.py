"""DenseSeg's uv-map losses: L1 inside the structure, L1 at the landmarks, total variation inside the structure.

Shapes: ``uv`` maps are ``(B, 2S, H, W)`` (structure ``s`` owns channels ``2s`` = u and ``2s + 1`` = v); regions
``(B, S, H, W)`` bool. Each loss is a mean over the supervised elements and is ``0`` (still in the graph) when
there are none, so a batch without landmarks or masks trains the other terms without special cases.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional

__all__ = ["landmark_uv_l1", "masked_uv_l1", "sample_uv_at_points", "uv_total_variation"]


def _per_structure(uv: Tensor) -> Tensor:
    """``(B, 2S, H, W)`` -> ``(B, S, 2, H, W)``."""
    if uv.ndim != 4 or uv.shape[1] % 2:
        raise ValueError(f"uv maps must be (B, 2S, H, W), got {tuple(uv.shape)}")
    return uv.reshape(uv.shape[0], uv.shape[1] // 2, 2, *uv.shape[2:])


def masked_uv_l1(predicted: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """Mean ``|uv_pred - uv_ref|`` over the region's pixels (both channels).

    Args:
        predicted, target: ``(B, 2S, H, W)``.
        region: ``(B, S, H, W)`` bool, where ``target`` is defined.
    """
    difference = (_per_structure(predicted.float()) - _per_structure(target.float())).abs().sum(2)
    mask = region.to(difference.dtype)
    return (difference * mask).sum() / (2 * mask.sum()).clamp_min(1.0)


def sample_uv_at_points(uv: Tensor, points_vox: Tensor) -> Tensor:
    """Bilinear samples of uv maps at voxel coordinates.

    Args:
        uv: ``(B, C, H, W)``.
        points_vox: ``(B, N, 2)`` (row, col) voxel coordinates (NaN allowed: sampled as 0).

    Returns:
        ``(B, N, C)``.
    """
    height, width = uv.shape[2:]
    points = torch.nan_to_num(points_vox.float())
    # grid_sample's (x, y) in [-1, 1] with align_corners=True: -1 and 1 are the first and last voxel centres.
    grid = torch.stack(
        (points[..., 1] * 2 / max(width - 1, 1) - 1, points[..., 0] * 2 / max(height - 1, 1) - 1), dim=-1
    )
    sampled = functional.grid_sample(uv.float(), grid[:, :, None], mode="bilinear", align_corners=True)
    return sampled[..., 0].transpose(1, 2)


def landmark_uv_l1(
    predicted: Tensor, keypoints_vox: Tensor, landmark_structure: Tensor, canonical_uv: Tensor, valid: Tensor
) -> Tensor:
    """Mean ``|uv_pred(landmark) - canonical uv|`` over valid landmarks (bilinear sampling at sub-voxel positions).

    Args:
        predicted: ``(B, 2S, H, W)``.
        keypoints_vox: ``(B, K, 2)`` landmark positions in the patch (voxels).
        landmark_structure: ``(K,)`` long, each landmark's structure index (``-1``: none).
        canonical_uv: ``(K, 2)`` canonical uv of each landmark.
        valid: ``(B, K)`` bool, annotated and inside the patch.
    """
    sampled = sample_uv_at_points(predicted, keypoints_vox)  # (B, K, 2S)
    structure = landmark_structure.clamp_min(0)
    channels = torch.stack((2 * structure, 2 * structure + 1), dim=1)  # (K, 2)
    index = channels[None].expand(sampled.shape[0], -1, -1)
    uv_at_landmarks = torch.gather(sampled, 2, index)
    difference = (uv_at_landmarks - canonical_uv[None].to(sampled)).abs().sum(-1)
    mask = (valid & (landmark_structure >= 0)[None]).to(difference.dtype)
    return (difference * mask).sum() / (2 * mask.sum()).clamp_min(1.0)


def uv_total_variation(predicted: Tensor, region: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring uv values, over neighbour pairs that both lie in the region."""
    uv = _per_structure(predicted.float())
    mask = region.to(uv.dtype)[:, :, None]
    rows = (uv[..., 1:, :] - uv[..., :-1, :]).abs() * (mask[..., 1:, :] * mask[..., :-1, :])
    cols = (uv[..., :, 1:] - uv[..., :, :-1]).abs() * (mask[..., :, 1:] * mask[..., :, :-1])
    pairs = (mask[..., 1:, :] * mask[..., :-1, :]).sum() + (mask[..., :, 1:] * mask[..., :, :-1]).sum()
    return (rows.sum() + cols.sum()) / (2 * pairs).clamp_min(1.0)
