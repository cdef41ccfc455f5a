"""Heatmap losses and BaBLoss, the Boundary-as-Bridge loss ("Boundary as the Bridge", seed document 000).

BaBLoss rewards agreement between a landmark heatmap and the boundary-proximity map (:mod:`nnunet_babloss.core.boundary`)
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

from collections.abc import Sequence
from enum import Enum

import torch
from torch import Tensor

from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.core.losses import EPSILON, masked_mean

__all__ = [
    "Similarity",
    "SegmentationGate",
    "heatmap_boundary_similarity",
    "bab_heatmap_direction_loss",
    "bab_segmentation_direction_loss",
]


class Similarity(str, Enum):
    """How a heatmap is compared with a boundary-proximity map."""

    EXPECTED_PROXIMITY = "expected_proximity"
    COSINE = "cosine"
    RELEASED = "released"



class SegmentationGate(str, Enum):
    """How the predicted segmentation becomes a differentiable boundary map in the segmentation direction."""

    PROBABILITY = "probability"  # paper: proximity map of the detached hard mask, gated by the soft probability
    SOFT_BOUNDARY = "soft_boundary"  # 4 P (1 - P): largest where P = 0.5, so its gradient moves the boundary



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
    # whatever autocast handed us (and keep autocast from casting the product below back to float16).
    work_dtype = torch.promote_types(torch.promote_types(heatmaps.dtype, group_maps.dtype), torch.float32)
    h = heatmaps.to(work_dtype).flatten(2)  # (B, K, N)
    d = group_maps.to(work_dtype).flatten(2)  # (B, G, N)
    if similarity is Similarity.EXPECTED_PROXIMITY:
        # A row of ones makes the same product return each heatmap's mass: one pass over the heatmaps in all.
        d = torch.cat([d, d.new_ones(d.shape[0], 1, d.shape[2])], dim=1)
    with torch.autocast(h.device.type, enabled=False):
        # Every heatmap against every group map in one batched product, (B, K, G(+1)); K x G is small next to N,
        # and neither direction of the product copies the heatmaps (gathering a group's rows did, for 166 landmarks).
        products = torch.bmm(h, d.transpose(1, 2))
    index = torch.as_tensor(groups, device=h.device).clamp_min(0)
    overlap = products[:, torch.arange(len(groups), device=h.device), index]  # (B, K)
    if similarity is Similarity.EXPECTED_PROXIMITY:
        denominator = products[..., -1]
    elif similarity is Similarity.COSINE:
        denominator = h.norm(dim=-1) * d.norm(dim=-1)[:, index]
    elif similarity is Similarity.RELEASED:
        denominator = (h != 0).sum(-1).to(h.dtype)
    else:  # pragma: no cover - Similarity() above already rejects unknown names
        raise ValueError(f"unknown similarity {similarity!r}")
    bridged = torch.as_tensor([group >= 0 for group in groups], device=h.device)
    return torch.where(bridged, overlap / (denominator + EPSILON), torch.zeros((), dtype=h.dtype, device=h.device))



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
    return masked_mean(1.0 - similarities, valid & has_bridge[None], predicted_heatmaps)



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
    return masked_mean(1.0 - similarities, valid & has_bridge[None], group_probabilities)

