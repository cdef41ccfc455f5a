"""GazeSupTrainer: nnU-Net training on multi-level gaze pseudo masks (GazeSup, Zhong et al., MICCAI 2024).

The dataset is one written by ``nnUNetv2_bab_gaze_pseudo_labels``: each label map holds the nested gaze levels
(value = number of thresholds exceeded), ``dataset.json`` declares level ``k`` as the nnU-Net *region* of values
``k..L`` and carries a ``"gaze_levels"`` block (:mod:`nnunet_babloss.gazesup.levels`). So nnU-Net's own data pipeline
(``ConvertSegmentationToRegionsTransform`` before the deep-supervision downsampling) already delivers the ``L``
nested binary targets at every scale, and the label manager asks for ``L`` sigmoid output channels. Nothing in the
loader or the augmentation changes; this trainer only swaps

* the network: :class:`~nnunet_babloss.gazesup.network.GazeLevelNetwork` — nnU-Net's planned U-Net with one output
  channel per level, which returns the mean-of-levels prediction when deep supervision is off (inference);
* the loss: BCE per level + ``consistency_weight`` × cross-level consistency (the gradient flows only into the
  level being pulled, the others are detached; :mod:`nnunet_babloss.gazesup.losses`), weighted over the
  deep-supervision scales exactly like nnU-Net's own loss.

**One shared network with L output channels, not L networks or L heavier heads.** The published method trains one
output per level; a level channel of nnU-Net's U-Net is a 1×1 convolution on the shared decoder features at each
deep-supervision stage, so each extra level costs ``C_stage + 1`` parameters per stage and one extra output map —
nothing measurable next to the encoder/decoder — and all levels come out of a single forward pass (the consistency
term needs all of them for every sample). Separate networks per level would multiply parameters, FLOPs and
activation memory by ``L``; separate deeper heads (e.g. a duplicated last decoder stage per level) would add the
cost of that stage ``L − 1`` times (the full-resolution stage is the most expensive one in activations) for
levels whose targets differ only by a threshold. ``benchmarks/gaze_study.py`` reports the measured parameter counts.

**What stock ``nnUNetv2_predict -tr GazeSupTrainer`` writes.** The predictor builds the network with deep
supervision off, so every level channel holds the logit of the mean level probability; nnU-Net thresholds each
region channel at 0.5 and writes the last region that passes, so the output is label ``L`` (the value of the
strictest level, i.e. every region) where ``mean_k p_k > 0.5`` and 0 elsewhere: the GazeSup prediction, binary.
``--save_probabilities`` stores that mean probability (the same in each channel). The trainer's final validation
(``perform_actual_validation``) runs the same way and scores that mask against every level's pseudo mask.

Settings are class attributes (``consistency_weight``; schedule via :class:`ScheduleSettings`); variants are
subclasses (``GazeSupTrainer_BabDemo``).
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_babloss.gazesup.levels import GazeLevelSpec
from nnunet_babloss.gazesup.losses import GazeSupLoss
from nnunet_babloss.gazesup.network import GazeLevelNetwork
from nnunet_babloss.nnunet.checkpoint_selection import WeightsOnlyCheckpointLoading
from nnunet_babloss.nnunet.schedules import ScheduleSettings

__all__ = ["GazeSupTrainer"]


class GazeSupTrainer(WeightsOnlyCheckpointLoading, ScheduleSettings, nnUNetTrainer):
    """nnU-Net trainer for nested gaze-level pseudo masks: BCE per level + cross-level consistency.

    Attributes:
        consistency_weight: weight of the cross-level consistency term (3, as published).
    """

    consistency_weight: float = 3.0

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_schedule_settings()
        self.gaze_levels = GazeLevelSpec.from_dataset_json(
            dataset_json, source=f"dataset.json of {self.plans_manager.dataset_name}"
        )
        if self.label_manager.has_ignore_label:
            raise ValueError(
                f"{type(self).__name__}: dataset {self.plans_manager.dataset_name} has an ignore label; gaze-level "
                "datasets have none (every training case needs gaze)"
            )
        if self.label_manager.num_segmentation_heads != self.gaze_levels.num_levels:
            raise ValueError(
                f"{type(self).__name__}: {self.label_manager.num_segmentation_heads} region outputs but "
                f"{self.gaze_levels.num_levels} gaze levels in dataset.json"
            )

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """nnU-Net's planned U-Net with one channel per level (``num_output_channels`` = ``L`` regions), wrapped so
        that it returns the mean-of-levels prediction when deep supervision is off."""
        unet = nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )
        return GazeLevelNetwork(unet)

    def initialize(self) -> None:
        if not self.was_initialized and not self.enable_deep_supervision:
            raise ValueError(
                f"{type(self).__name__} needs deep supervision on: with it off the network returns the "
                "mean-of-levels prediction, which is for inference only"
            )
        super().initialize()

    def _build_loss(self) -> nn.Module:
        """nnU-Net's deep-supervision weighting around :class:`GazeSupLoss` (instead of Dice + BCE)."""
        wrapper = super()._build_loss()
        wrapper.loss = GazeSupLoss(self.consistency_weight)
        return wrapper
