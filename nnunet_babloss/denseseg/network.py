"""DenseSeg's two-head network: the heatmap network's second head, predicting per-structure uv maps instead."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from nnunet_babloss.core.network import SegmentationHeatmapNetwork, SegmentationHeatmapOutput

__all__ = ["SegmentationUVOutput", "SegmentationUVNetwork"]


class SegmentationUVOutput(NamedTuple):
    """Outputs of :class:`SegmentationUVNetwork` with its second head on.

    Attributes:
        segmentation: as in :class:`SegmentationHeatmapOutput`.
        uv: ``(B, 2S, *spatial)`` full-resolution uv maps (no activation); structure ``s`` owns channels ``2s``
            (u) and ``2s + 1`` (v).
    """

    segmentation: Tensor | list[Tensor]
    uv: Tensor


class SegmentationUVNetwork(SegmentationHeatmapNetwork):
    """DenseSeg's two-head U-Net: the same second head on the last decoder stage, predicting per-structure uv maps.

    Reuses :class:`SegmentationHeatmapNetwork`'s head and feature capture (its state-dict keys, ``heatmap_head.*``,
    and its ``output_heatmaps`` switch, which here turns the uv output on), with ``2 * num_structures`` linear
    output channels instead of heatmap logits.

    Args:
        unet: as for :class:`SegmentationHeatmapNetwork`.
        num_structures: number of structures ``S`` (>= 1).
        output_heatmaps: if ``True``, ``forward`` returns :class:`SegmentationUVOutput`.
    """

    def __init__(self, unet: nn.Module, num_structures: int, output_heatmaps: bool = False) -> None:
        if num_structures < 1:
            raise ValueError(f"num_structures must be >= 1, got {num_structures}")
        super().__init__(unet, 2 * num_structures, output_heatmaps)
        self.num_structures = num_structures

    def forward(self, x: Tensor) -> Tensor | list[Tensor] | SegmentationUVOutput:
        output = super().forward(x)
        if isinstance(output, SegmentationHeatmapOutput):
            return SegmentationUVOutput(output.segmentation, output.heatmap_logits)
        return output

    @torch.no_grad()
    def initialize_uv_bias(self, value: float = 0.5) -> None:
        """Start every uv output at ``value`` (the centre of the canonical frame)."""
        final = self.heatmap_head[-1]
        final.bias.fill_(value)
