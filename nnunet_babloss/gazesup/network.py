"""The GazeSup network: nnU-Net's planned U-Net with one output channel per gaze level.

With deep supervision on (training and the trainer's per-epoch validation), ``forward`` returns exactly what the
U-Net returns: a list (full resolution first) of ``(B, L, *spatial)`` level logits. With deep supervision off — how
nnU-Net's stock predictor builds every network, and how the trainer's final validation runs it — ``forward``
returns the GazeSup prediction instead: the logit of the mean level probability, repeated in all ``L`` channels
(:func:`nnunet_babloss.gazesup.losses.mean_of_levels_logits`). nnU-Net's label manager thresholds each region channel
at probability 0.5 and writes the highest region that passes, so the stock ``nnUNetv2_predict`` writes label ``L``
where ``mean_k p_k > 0.5`` and 0 elsewhere.

The wrapper keeps the U-Net's ``encoder``/``decoder`` attributes and state-dict keys (checkpoints are
interchangeable with a plain U-Net of ``L`` outputs, and nnU-Net's deep-supervision switch keeps working).
"""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_babloss.gazesup.losses import mean_of_levels_logits

__all__ = ["GazeLevelNetwork"]


class GazeLevelNetwork(nn.Module):
    """U-Net whose ``L`` output channels are gaze levels; mean-of-levels output when deep supervision is off.

    Args:
        unet: a ``dynamic_network_architectures`` U-Net (``encoder``, ``decoder`` with ``deep_supervision``) built
            with ``L`` output channels.

    Raises:
        ValueError: the U-Net lacks ``encoder``/``decoder.deep_supervision``.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        if not hasattr(unet, "encoder") or not hasattr(getattr(unet, "decoder", None), "deep_supervision"):
            raise ValueError(f"{type(unet).__name__} has no encoder/decoder.deep_supervision: not an nnU-Net U-Net")
        self.encoder = unet.encoder
        self.decoder = unet.decoder

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        output = self.decoder(self.encoder(x))
        if self.decoder.deep_supervision:
            return output
        return mean_of_levels_logits(output)

    def compute_conv_feature_map_size(self, input_size: list[int]) -> int:
        """nnU-Net's VRAM estimate of the U-Net (the wrapper adds nothing)."""
        return self.encoder.compute_conv_feature_map_size(input_size) + self.decoder.compute_conv_feature_map_size(
            input_size
        )
