"""The two-head network: nnU-Net's planned U-Net plus a landmark heatmap head on its last decoder stage.

The wrapped U-Net keeps its ``encoder`` and ``decoder`` attributes and its state-dict keys, so nnU-Net's deep
supervision switch, checkpoints and ``-pretrained_weights`` keep working. The heatmap head reads the features that
enter the decoder's last segmentation layer (captured by a forward pre-hook, so the decoder's code and keys are
untouched) and predicts one heatmap *logit* map per landmark at full resolution; apply a sigmoid to get heatmaps.

With ``output_heatmaps`` off (the default, and what nnU-Net's stock predictor builds), ``forward`` returns exactly
what the U-Net returns, so ``nnUNetv2_predict -tr <our trainer>`` produces the stock segmentation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["unwrap_network", "SegmentationHeatmapOutput", "SegmentationHeatmapNetwork"]


def unwrap_network(network: nn.Module) -> nn.Module:
    """The module under ``DistributedDataParallel`` and ``torch.compile`` wrappers (in either order)."""
    network = getattr(network, "_orig_mod", network)
    if isinstance(network, nn.parallel.DistributedDataParallel):
        network = network.module
    return getattr(network, "_orig_mod", network)


class SegmentationHeatmapOutput(NamedTuple):
    """Outputs of :class:`SegmentationHeatmapNetwork` with heatmaps on.

    Attributes:
        segmentation: ``(B, num_classes, *spatial)`` logits, or a list of them (deep supervision, full
            resolution first) exactly as nnU-Net's U-Net returns them.
        heatmap_logits: ``(B, K, *spatial)`` full-resolution heatmap logits.
    """

    segmentation: Tensor | list[Tensor]
    heatmap_logits: Tensor


class SegmentationHeatmapNetwork(nn.Module):
    """nnU-Net U-Net with a heatmap head beside the segmentation head.

    Args:
        unet: a ``dynamic_network_architectures`` U-Net (``encoder``, ``decoder`` with ``seg_layers``).
        num_heatmaps: number of landmarks ``K`` (>= 1).
        output_heatmaps: if ``True``, ``forward`` returns :class:`SegmentationHeatmapOutput`; if ``False`` it
            returns the U-Net's own output. Set once at construction (a flag read in ``forward`` would make
            ``torch.compile`` recompile per value).

    Raises:
        ValueError: if ``num_heatmaps`` < 1 or the U-Net lacks ``encoder``/``decoder.seg_layers``.
    """

    def __init__(self, unet: nn.Module, num_heatmaps: int, output_heatmaps: bool = False) -> None:
        super().__init__()
        if num_heatmaps < 1:
            raise ValueError(f"num_heatmaps must be >= 1, got {num_heatmaps}")
        if not hasattr(unet, "encoder") or not hasattr(getattr(unet, "decoder", None), "seg_layers"):
            raise ValueError(f"{type(unet).__name__} has no encoder/decoder.seg_layers: not an nnU-Net U-Net")
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.num_heatmaps = num_heatmaps
        self.output_heatmaps = output_heatmaps
        last_seg_layer = self.decoder.seg_layers[-1]
        features = last_seg_layer.in_channels
        conv_op = type(last_seg_layer)
        norm_op = nn.InstanceNorm3d if conv_op is nn.Conv3d else nn.InstanceNorm2d
        self.heatmap_head = nn.Sequential(
            conv_op(features, features, 3, 1, 1, bias=True),
            norm_op(features, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            conv_op(features, num_heatmaps, 1, 1, 0, bias=True),
        )
        self._features: Tensor | None = None
        last_seg_layer.register_forward_pre_hook(self._capture_features)

    def _capture_features(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self._features = inputs[0]

    def forward(self, x: Tensor) -> Tensor | list[Tensor] | SegmentationHeatmapOutput:
        segmentation = self.decoder(self.encoder(x))
        if not self.output_heatmaps:
            self._features = None
            return segmentation
        features, self._features = self._features, None
        if features is None:  # pragma: no cover - the decoder always calls its last seg layer
            raise RuntimeError("the decoder did not run its last segmentation layer")
        return SegmentationHeatmapOutput(segmentation, self.heatmap_head(features))

    def compute_conv_feature_map_size(self, input_size: list[int]) -> int:
        """nnU-Net's VRAM estimate of the U-Net (the head adds one decoder-stage-sized map)."""
        return self.encoder.compute_conv_feature_map_size(input_size) + self.decoder.compute_conv_feature_map_size(input_size)

    @torch.no_grad()
    def initialize_heatmap_bias(self, prior_probability: float = 0.01) -> None:
        """Start heatmap logits at ``logit(prior_probability)`` so early sigmoid outputs are near background."""
        final = self.heatmap_head[-1]
        final.bias.fill_(float(torch.logit(torch.tensor(prior_probability))))
