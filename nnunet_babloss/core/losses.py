"""Generic losses of the two-head network: masked heatmap losses, and the masking helpers every method shares.

Losses are averaged over valid (case, landmark) pairs; masking (not subsetting) keeps every head in the graph and the
batch shape fixed, as DDP needs. The method-specific losses live with their method: BaBLoss in
:mod:`nnunet_babloss.babloss.losses`, the pre-training mixing loss in :mod:`nnunet_babloss.pretraining.losses`,
DenseSeg's uv losses in :mod:`nnunet_babloss.denseseg.losses`, GazeSup's in :mod:`nnunet_babloss.gazesup.losses`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EPSILON",
    "HEATMAP_LOSS_KINDS",
    "gaussian_mass_vox",
    "group_organ_masks",
    "ignore_unannotated_targets",
    "masked_heatmap_bce",
    "masked_heatmap_mse",
    "masked_mean",
]

#: Guards divisions and logarithms against zero.
EPSILON = 1e-6

#: Heatmap losses a trainer can use: :func:`masked_heatmap_mse` on sigmoid outputs, :func:`masked_heatmap_bce` on logits.
HEATMAP_LOSS_KINDS = ("mse", "bce")


def masked_mean(values: Tensor, valid: Tensor, anchor: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid``; a zero that keeps ``anchor`` in the graph when nothing is valid."""
    valid = valid.to(values.dtype)
    # clamp instead of branching: no host-device sync, and an all-invalid batch gives an exact 0 in the graph.
    return (values * valid).sum() / valid.sum().clamp_min(1.0) + anchor.sum() * 0.0


def ignore_unannotated_targets(targets: Sequence[Tensor], has_mask: Tensor, ignore_label: int) -> list[Tensor]:
    """Set every deep-supervision target of samples without a mask entirely to the ignore label.


    The loader pads patches with -1, which nnU-Net's augmentation turns into background: without this step a
    mask-less patch that touches the image border would teach "background" there.


    Args:
        targets: per deep-supervision level, ``(B, 1, *spatial)`` label maps.
        has_mask: ``(B,)`` bool.
        ignore_label: the dataset's ignore label.


    Returns:
        New target tensors (the inputs are not modified).
    """
    result = []
    for level in targets:
        keep = has_mask.view(-1, *([1] * (level.ndim - 1)))
        result.append(torch.where(keep, level, torch.full_like(level, ignore_label)))
    return result


def masked_heatmap_mse(
    predicted: Tensor, target: Tensor, valid: Tensor, foreground_weight: float = 1.0, normalizer: float | None = None
) -> Tensor:
    """Mean squared error of heatmaps over the valid (case, landmark) pairs only.


    Args:
        predicted: ``(B, K, *spatial)`` predicted heatmaps.
        target: ``(B, K, *spatial)`` reference heatmaps (zeros for absent landmarks).
        valid: ``(B, K)`` bool; ``False`` for cases without landmark annotation and for absent landmarks.
        foreground_weight: extra weight ``1 + (w - 1) * target`` on voxels near the landmark (1 = plain MSE).
        normalizer: if given, each pair's *sum* of weighted squared errors is divided by it instead of taking the
            mean over voxels. Passing the mass of one full Gaussian (:func:`gaussian_mass_vox`) makes the loss
            independent of the patch size: predicting all zeros then costs 1/2 in 2D, whatever the patch, whereas
            the voxel mean shrinks with the patch (a Gaussian covers a tiny part of a large patch).


    Returns:
        Scalar loss; exactly zero (with a graph to ``predicted``) when no pair is valid.


    Raises:
        ValueError: on mismatched shapes or a foreground weight < 1.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"shapes differ: prediction {tuple(predicted.shape)}, target {tuple(target.shape)}")
    return _reduce_heatmap_loss((predicted - target) ** 2, predicted, target, valid, foreground_weight, normalizer)


def _reduce_heatmap_loss(
    per_voxel: Tensor, prediction: Tensor, target: Tensor, valid: Tensor, foreground_weight: float,
    normalizer: float | None,
) -> Tensor:
    """Foreground-weighted per-voxel losses -> mean (or sum / normalizer) per pair -> mean over valid pairs."""
    if prediction.shape != target.shape or prediction.shape[:2] != valid.shape:
        raise ValueError(f"shapes differ: prediction {tuple(prediction.shape)}, target {tuple(target.shape)}, valid {tuple(valid.shape)}")
    if foreground_weight < 1.0:
        raise ValueError(f"foreground_weight must be >= 1, got {foreground_weight}")
    if normalizer is not None and not normalizer > 0:
        raise ValueError(f"normalizer must be positive, got {normalizer}")
    weighted = ((1.0 + (foreground_weight - 1.0) * target) * per_voxel).flatten(2)
    per_pair = weighted.mean(-1) if normalizer is None else weighted.sum(-1) / normalizer
    return masked_mean(per_pair, valid, prediction)


def masked_heatmap_bce(
    logits: Tensor, target: Tensor, valid: Tensor, foreground_weight: float = 1.0, normalizer: float | None = None
) -> Tensor:
    """Binary cross-entropy of heatmap *logits* against soft Gaussian targets, over the valid pairs only.


    The alternative to :func:`masked_heatmap_mse` on sigmoid outputs: there the gradient at a peak voxel carries
    the sigmoid's slope ``p (1 - p)``, about 0.01 while the head still predicts background (bias prior 0.01), so a
    head with many landmarks leaves chance level slowly. Here the gradient with respect to the logit is ``p - t``.
    The target's own entropy is subtracted per voxel, so a perfect prediction costs exactly 0 (the value is the
    Kullback-Leibler divergence of the per-voxel Bernoulli distributions); gradients are unchanged by this.


    Args:
        logits: ``(B, K, *spatial)`` heatmap logits (before the sigmoid).
        target, valid, foreground_weight, normalizer: as in :func:`masked_heatmap_mse`; with ``normalizer`` the
            loss of predicting background is independent of the patch size.


    Returns:
        Scalar loss; exactly zero (with a graph to ``logits``) when no pair is valid.


    Raises:
        ValueError: on mismatched shapes, a foreground weight < 1 or a non-positive normalizer.
    """
    if logits.shape != target.shape:
        raise ValueError(f"shapes differ: prediction {tuple(logits.shape)}, target {tuple(target.shape)}")
    target = target.to(logits.dtype)
    cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    clamped = target.clamp(EPSILON, 1.0 - EPSILON)
    entropy = -(clamped * torch.log(clamped) + (1.0 - clamped) * torch.log1p(-clamped))
    entropy = torch.where((target > 0) & (target < 1), entropy, torch.zeros_like(entropy))
    return _reduce_heatmap_loss(cross_entropy - entropy, logits, target, valid, foreground_weight, normalizer)


def gaussian_mass_vox(sigma_vox: Sequence[float]) -> float:
    """Sum of an unnormalised Gaussian ``exp(-|x|^2 / 2 sigma^2)`` over an infinite voxel grid, ``prod sqrt(2 pi) sigma``."""
    mass = 1.0
    for sigma in sigma_vox:
        if not sigma > 0:
            raise ValueError(f"sigma_vox must be positive, got {tuple(sigma_vox)}")
        mass *= math.sqrt(2.0 * math.pi) * sigma
    return mass


def group_organ_masks(labels: Tensor, group_label_values: Sequence[Sequence[int]]) -> Tensor:
    """Binary masks of each group's organs from a label map.


    Args:
        labels: ``(B, 1, *spatial)`` integer label map.
        group_label_values: per group, the label values that make up its organs.


    Returns:
        ``(B, G, *spatial)`` bool masks.
    """
    label_map = labels[:, 0]
    # A few equality tests per group: torch.isin sorts on the CPU and cost ~8 ms per group on a 4 x 128^2 batch.
    masks = [functools.reduce(torch.logical_or, [label_map == value for value in values]) if values
             else torch.zeros_like(label_map, dtype=torch.bool) for values in group_label_values]
    return torch.stack(masks, dim=1)
