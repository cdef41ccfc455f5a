"""``BaBLossTrainer``: :class:`HeatmapTrainer` plus the Boundary-as-Bridge loss (see :mod:`nnunet_babloss.core.losses`).

Both directions act on the same image: on cases with a mask, the reference organ boundaries pull the predicted
heatmaps onto boundaries; on cases with landmarks, the reference heatmaps pull the predicted organ boundaries through
the landmarks. The organs of each landmark come from the ``bridge`` table of ``dataset.json``; ``n`` and sigma are in
mm. Boundary maps are computed on the training device (no scipy on the hot path).

Variants are subclasses that change class attributes (similarity, gate, weight).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnunet_babloss.babloss.losses import (
    SegmentationGate,
    Similarity,
    bab_heatmap_direction_loss,
    bab_segmentation_direction_loss,
)
from nnunet_babloss.core.losses import group_organ_masks
from nnunet_babloss.core.network import SegmentationHeatmapOutput
from nnunet_babloss.nnunet.heatmap_trainer import HeatmapTrainer

__all__ = [
    "BaBLossTrainer",
    "BaBLossTrainer_cosine",
    "BaBLossTrainer_released",
    "BaBLossTrainer_softBoundary",
]


class BaBLossTrainer(HeatmapTrainer):
    """Multi-head network with BaBLoss in both directions (weight ``bab_weight``, range from ``dataset.json``)."""

    bab_weight: float = 0.5
    bab_similarity: Similarity = Similarity.EXPECTED_PROXIMITY
    bab_segmentation_gate: SegmentationGate = SegmentationGate.PROBABILITY
    bab_heatmap_direction: bool = True
    bab_segmentation_direction: bool = True

    def __init__(
        self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.group_label_values, self.landmark_groups = self.landmark_spec.bridge_groups(dataset_json["labels"])
        if not self.group_label_values:
            raise ValueError(
                "BaBLossTrainer needs a 'bridge' table in the dataset.json landmarks block (landmark -> labels it lies "
                "on); without it use HeatmapTrainer"
            )

    def compute_bridge_loss(
        self, output: SegmentationHeatmapOutput, heatmaps: Tensor, reference_heatmaps: Tensor, target,
        keypoints: Tensor, has_mask: Tensor, valid: Tensor,
    ) -> Tensor:
        range_mm = self.landmark_spec.boundary_range_mm
        spacing = self.patch_spacing_mm
        landmark_groups = torch.as_tensor(self.landmark_groups, device=heatmaps.device)
        bridged = landmark_groups >= 0
        loss = heatmaps.sum() * 0.0
        if self.bab_heatmap_direction:
            labels = target[0] if isinstance(target, list) else target
            organ_masks = group_organ_masks(labels, self.group_label_values)
            organ_in_patch = organ_masks.flatten(2).any(-1)[:, landmark_groups.clamp_min(0)]
            valid_heatmap = has_mask[:, None] & bridged[None] & organ_in_patch
            loss = loss + bab_heatmap_direction_loss(
                heatmaps, organ_masks, self.landmark_groups, valid_heatmap, range_mm, spacing, self.bab_similarity
            )
        if self.bab_segmentation_direction:
            segmentation = output.segmentation[0] if isinstance(output.segmentation, list) else output.segmentation
            probabilities = torch.softmax(segmentation.float(), dim=1)
            group_probabilities = torch.stack(
                [probabilities[:, list(values)].sum(1) for values in self.group_label_values], dim=1
            )
            shape = torch.tensor(heatmaps.shape[2:], device=keypoints.device, dtype=keypoints.dtype)
            inside = ((keypoints >= -0.5) & (keypoints <= shape - 0.5)).all(-1)
            loss = loss + bab_segmentation_direction_loss(
                group_probabilities, reference_heatmaps, self.landmark_groups, valid & inside & bridged[None],
                range_mm, spacing, self.bab_segmentation_gate, self.bab_similarity,
            )
        return self.bab_weight * loss


class BaBLossTrainer_cosine(BaBLossTrainer):
    """The paper's figure: whole-image cosine similarity between heatmap and boundary map (for reproduction)."""

    bab_similarity = Similarity.COSINE


class BaBLossTrainer_released(BaBLossTrainer):
    """The authors' released normalisation, sum(H D) / count_nonzero(H) (for reproduction)."""

    bab_similarity = Similarity.RELEASED


class BaBLossTrainer_softBoundary(BaBLossTrainer):
    """Segmentation direction through the soft boundary 4 P (1 - P), which can move the predicted boundary."""

    bab_segmentation_gate = SegmentationGate.SOFT_BOUNDARY
