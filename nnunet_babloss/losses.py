"""Heatmap losses and BaBLoss, the Boundary-as-Bridge loss ("Boundary as the Bridge", seed document 000).

BaBLoss rewards agreement between a landmark heatmap and the boundary-proximity map (:mod:`nnunet_babloss.boundary`)
of the organs the landmark lies on. It works in two directions, both on the same image:

* heatmap direction (a case **with a mask**): proximity map of the *reference* organ vs the *predicted* heatmap —
  teaches the heatmap head to stay on boundaries on images without landmarks;
* segmentation direction (a case **with landmarks**): the *predicted* organ vs the *reference* heatmap — teaches the
  segmentation head where boundaries are on images without masks.

Landmarks are grouped by the set of labels they lie on (their "bridge"); each group's organ map is computed once
and compared with all of its landmarks' heatmaps, so no ``(B, K, *spatial)`` organ tensor is ever materialised.

Similarities (:class:`Similarity`), for a heatmap ``H >= 0`` and a proximity map ``D`` in [0, 1]:

* ``expected_proximity`` (default): ``sum(H D) / sum(H)``, the mean boundary proximity under the heatmap seen as
  a distribution. It is maximal (1) for any heatmap lying on the boundary, a point included, and falls steadily with
  displacement (see ``shared/design/method.md`` section 2 for measurements on JSRT).
* ``cosine``: the paper's figure, ``sum(H D) / (|H| |D|)``; its optimum is a heatmap shaped like the whole boundary
  band, so applied to predicted heatmaps it pulls them toward a band. For reproduction.
* ``released``: the authors' released code, ``sum(H D) / count_nonzero(H)``; nearly constant for Gaussian targets.
  For reproduction only.

Every loss is ``1 - similarity`` averaged over valid (case, landmark) pairs; masking (not subsetting) keeps every
head in the graph and the batch shape fixed, as DDP needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

import torch
from torch import Tensor

from nnunet_babloss.boundary import boundary_proximity_map

__all__ = [
    "Similarity",
    "SegmentationGate",
    "masked_heatmap_mse",
    "masked_heatmap_bce",
    "HEATMAP_LOSS_KINDS",
    "gaussian_mass_vox",
    "ignore_unannotated_targets",
    "heatmap_boundary_similarity",
    "bab_heatmap_direction_loss",
    "bab_segmentation_direction_loss",
    "group_organ_masks",
    "log_cosh",
    "mixing_weight",
    "mixed_mse_logcosh_loss",
]

_EPSILON = 1e-6

#: Heatmap losses a trainer can use: :func:`masked_heatmap_mse` on sigmoid outputs, :func:`masked_heatmap_bce` on logits.
HEATMAP_LOSS_KINDS = ("mse", "bce")


class Similarity(str, Enum):
    """How a heatmap is compared with a boundary-proximity map."""

    EXPECTED_PROXIMITY = "expected_proximity"
    COSINE = "cosine"
    RELEASED = "released"


class SegmentationGate(str, Enum):
    """How the predicted segmentation becomes a differentiable boundary map in the segmentation direction."""

    PROBABILITY = "probability"  # paper: proximity map of the detached hard mask, gated by the soft probability
    SOFT_BOUNDARY = "soft_boundary"  # 4 P (1 - P): largest where P = 0.5, so its gradient moves the boundary


def _masked_mean(values: Tensor, valid: Tensor, anchor: Tensor) -> Tensor:
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
    return _masked_mean(per_pair, valid, prediction)


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
    clamped = target.clamp(_EPSILON, 1.0 - _EPSILON)
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


def heatmap_boundary_similarity(
    heatmaps: Tensor, group_maps: Tensor, landmark_groups: Sequence[int] | Tensor, similarity: Similarity | str
) -> Tensor:
    """Similarity of each landmark's heatmap with the proximity map of its group of organs.

    Args:
        heatmaps: ``(B, K, *spatial)`` non-negative heatmaps.
        group_maps: ``(B, G, *spatial)`` maps in [0, 1] (boundary proximity, or a gated/soft boundary).
        landmark_groups: ``(K,)`` group index of each landmark, ``-1`` for landmarks without a bridge.
        similarity: one of :class:`Similarity`.

    Returns:
        ``(B, K)`` similarities in [0, 1]; 0 for landmarks without a bridge. Computed in (at least) float32, also for
        float16 inputs.

    Raises:
        ValueError: on an unknown similarity, mismatched shapes or a group index out of range.
    """
    similarity = Similarity(similarity)
    groups = torch.as_tensor(landmark_groups, dtype=torch.long).tolist()
    if heatmaps.shape[0] != group_maps.shape[0] or heatmaps.shape[2:] != group_maps.shape[2:]:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} and group maps {tuple(group_maps.shape)} differ")
    if len(groups) != heatmaps.shape[1]:
        raise ValueError(f"{len(groups)} group indices for {heatmaps.shape[1]} heatmaps")
    if any(group >= group_maps.shape[1] or group < -1 for group in groups):
        raise ValueError(f"group index out of range 0..{group_maps.shape[1] - 1}: {groups}")
    # Sums over a whole patch overflow float16 (65504) and the epsilon underflows it: work in at least float32,
    # whatever autocast handed us.
    work_dtype = torch.promote_types(torch.promote_types(heatmaps.dtype, group_maps.dtype), torch.float32)
    heatmaps, group_maps = heatmaps.to(work_dtype), group_maps.to(work_dtype)
    result = heatmaps.new_zeros(heatmaps.shape[:2])
    for group in sorted(set(groups) - {-1}):
        members = [index for index, value in enumerate(groups) if value == group]
        h = heatmaps[:, members].flatten(2)  # (B, k, N)
        d = group_maps[:, group : group + 1].flatten(2)  # (B, 1, N)
        overlap = (h * d).sum(-1)
        if similarity is Similarity.EXPECTED_PROXIMITY:
            value = overlap / (h.sum(-1) + _EPSILON)
        elif similarity is Similarity.COSINE:
            value = overlap / (h.norm(dim=-1) * d.norm(dim=-1) + _EPSILON)
        elif similarity is Similarity.RELEASED:
            value = overlap / ((h != 0).sum(-1).to(h.dtype) + _EPSILON)
        else:  # pragma: no cover - Similarity() above already rejects unknown names
            raise ValueError(f"unknown similarity {similarity!r}")
        result[:, members] = value
    return result


def group_organ_masks(labels: Tensor, group_label_values: Sequence[Sequence[int]]) -> Tensor:
    """Binary masks of each group's organs from a label map.

    Args:
        labels: ``(B, 1, *spatial)`` integer label map.
        group_label_values: per group, the label values that make up its organs.

    Returns:
        ``(B, G, *spatial)`` bool masks.
    """
    masks = [torch.isin(labels[:, 0], torch.as_tensor(list(values), device=labels.device)) for values in group_label_values]
    return torch.stack(masks, dim=1)


def bab_heatmap_direction_loss(
    predicted_heatmaps: Tensor,
    reference_group_masks: Tensor,
    landmark_groups: Sequence[int] | Tensor,
    valid: Tensor,
    range_mm: float,
    spacing_mm: Sequence[float],
    similarity: Similarity | str = Similarity.EXPECTED_PROXIMITY,
) -> Tensor:
    """BaBLoss on cases with a mask: reference organ boundaries vs predicted heatmaps.

    Args:
        predicted_heatmaps: ``(B, K, *spatial)`` non-negative predicted heatmaps (e.g. after a sigmoid).
        reference_group_masks: ``(B, G, *spatial)`` bool reference organ masks per group (no gradient).
        landmark_groups: ``(K,)`` group per landmark, ``-1`` for landmarks without a bridge.
        valid: ``(B, K)`` bool: the case has a mask (and the landmark a bridge).
        range_mm: boundary range ``n`` in mm.
        spacing_mm: voxel spacing in array order.
        similarity: see :class:`Similarity`.

    Returns:
        Scalar ``mean(1 - similarity)`` over valid pairs (zero, in the graph, if none).
    """
    with torch.no_grad():
        proximity = boundary_proximity_map(reference_group_masks, range_mm, spacing_mm).to(predicted_heatmaps.dtype)
    similarities = heatmap_boundary_similarity(predicted_heatmaps, proximity, landmark_groups, similarity)
    has_bridge = torch.as_tensor(landmark_groups, device=valid.device) >= 0
    return _masked_mean(1.0 - similarities, valid & has_bridge[None], predicted_heatmaps)


def bab_segmentation_direction_loss(
    group_probabilities: Tensor,
    reference_heatmaps: Tensor,
    landmark_groups: Sequence[int] | Tensor,
    valid: Tensor,
    range_mm: float,
    spacing_mm: Sequence[float],
    gate: SegmentationGate | str = SegmentationGate.PROBABILITY,
    similarity: Similarity | str = Similarity.EXPECTED_PROXIMITY,
) -> Tensor:
    """BaBLoss on cases with landmarks: predicted organ boundaries vs reference heatmaps.

    Args:
        group_probabilities: ``(B, G, *spatial)`` predicted probability of each group's organs (sum of the softmax
            probabilities of its labels), differentiable.
        reference_heatmaps: ``(B, K, *spatial)`` reference Gaussian heatmaps (no gradient).
        landmark_groups: ``(K,)`` group per landmark, ``-1`` for landmarks without a bridge.
        valid: ``(B, K)`` bool: the case has this landmark annotated (and the landmark a bridge).
        range_mm: boundary range ``n`` in mm.
        spacing_mm: voxel spacing in array order.
        gate: ``probability`` (proximity of the detached hard mask ``P > 0.5`` times ``P``) or ``soft_boundary``
            (``4 P (1 - P)``).
        similarity: see :class:`Similarity`.

    Returns:
        Scalar ``mean(1 - similarity)`` over valid pairs (zero, in the graph, if none).

    Raises:
        ValueError: on an unknown gate.
    """
    gate = SegmentationGate(gate)
    if gate is SegmentationGate.PROBABILITY:
        with torch.no_grad():
            proximity = boundary_proximity_map(group_probabilities.detach() > 0.5, range_mm, spacing_mm)
        group_maps = proximity.to(group_probabilities.dtype) * group_probabilities
    else:
        group_maps = 4.0 * group_probabilities * (1.0 - group_probabilities)
    similarities = heatmap_boundary_similarity(reference_heatmaps.detach(), group_maps, landmark_groups, similarity)
    has_bridge = torch.as_tensor(landmark_groups, device=valid.device) >= 0
    return _masked_mean(1.0 - similarities, valid & has_bridge[None], group_probabilities)


def log_cosh(residual: Tensor) -> Tensor:
    """Elementwise ``log(cosh(x))``, computed as ``|x| + log1p(exp(-2|x|)) - log 2`` (no overflow for large ``|x|``).

    It is ``x^2 / 2`` for small residuals and ``|x| - log 2`` for large ones: quadratic near the optimum, robust
    (L1-like) against large errors.
    """
    magnitude = residual.abs()
    return magnitude + torch.log1p(torch.exp(-2.0 * magnitude)) - math.log(2.0)


def mixing_weight(epoch: int, num_epochs: int) -> float:
    """The weight ``t`` of the MSE term in epoch ``epoch`` (zero-based) of ``num_epochs``: ``t = (epoch + 1) / num_epochs``.

    This is boundary-aware pre-training's schedule ``t = (epoch + 1) / (max_epoch + 1)`` (seed document 003) with
    ``max_epoch = num_epochs - 1`` the last zero-based epoch: ``t`` rises linearly from ``1 / num_epochs`` to exactly 1
    (pure MSE) in the last epoch, so training starts robust (mostly LogCosh) and ends on MSE. (The authors' released
    loop counts epochs from 1 and so uses ``(epoch + 2) / (num_epochs + 1)``, which differs by less than
    ``1 / num_epochs``.)

    Raises:
        ValueError: if ``num_epochs < 1`` or ``epoch`` is outside ``0 .. num_epochs - 1``.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive integer, got {num_epochs!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < num_epochs:
        raise ValueError(f"epoch must be an integer in 0..{num_epochs - 1} (zero-based), got {epoch!r}")
    return (epoch + 1) / num_epochs


def mixed_mse_logcosh_loss(
    predicted: Tensor, target: Tensor, mix_t: float, valid: Tensor | None = None, residual_scale: float = 1.0
) -> Tensor:
    """Boundary-aware pre-training's mixing loss ``t * MSE + (1 - t) * LogCosh``, averaged per map, masked per pair.

    With ``r = residual_scale * (predicted - target)``, each ``(case, channel)`` pair scores
    ``t * mean(r^2) + (1 - t) * mean(log cosh r)`` over its voxels, and the result is the mean over the valid pairs.
    ``residual_scale`` sets where LogCosh turns from quadratic to linear (at ``|r|`` of about 1): for maps in [0, 1]
    and a scale of 1 every residual stays in the quadratic zone, so LogCosh is about ``MSE / 2`` and the mixture is a
    rescaled MSE; the authors' released code regresses maps scaled to 0..255, i.e. a scale of 255.

    Args:
        predicted: ``(B, C, *spatial)`` predicted maps.
        target: ``(B, C, *spatial)`` target maps (e.g. boundary-proximity maps in [0, 1]).
        mix_t: the weight ``t`` of the MSE term, in [0, 1] (see :func:`mixing_weight`).
        valid: optional ``(B, C)`` bool; pairs marked ``False`` contribute nothing. ``None``: every pair counts.
        residual_scale: positive factor applied to the residual before both terms.

    Returns:
        Scalar loss; exactly zero (with a graph to ``predicted``) when no pair is valid.

    Raises:
        ValueError: on mismatched shapes, ``mix_t`` outside [0, 1] or a non-positive ``residual_scale``.

    Example:
        >>> predicted, target = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)
        >>> round(mixed_mse_logcosh_loss(predicted, target, mix_t=1.0).item(), 4)  # pure MSE: 0.5^2
        0.25
    """
    if predicted.shape != target.shape or predicted.ndim < 3:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must have the same (B, C, *spatial) shape"
        )
    if valid is not None and tuple(valid.shape) != tuple(predicted.shape[:2]):
        raise ValueError(f"valid must have shape {tuple(predicted.shape[:2])} (B, C), got {tuple(valid.shape)}")
    if not 0.0 <= float(mix_t) <= 1.0:
        raise ValueError(f"mix_t must be in [0, 1], got {mix_t!r}")
    if not (math.isfinite(residual_scale) and residual_scale > 0):
        raise ValueError(f"residual_scale must be a positive finite number, got {residual_scale!r}")
    residual = (residual_scale * (predicted - target)).flatten(2)
    per_pair = float(mix_t) * (residual**2).mean(-1) + (1.0 - float(mix_t)) * log_cosh(residual).mean(-1)
    if valid is None:
        valid = torch.ones(per_pair.shape, dtype=torch.bool, device=per_pair.device)
    return _masked_mean(per_pair, valid.to(per_pair.device), predicted)
