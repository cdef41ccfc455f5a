"""``BoundaryPretrainer``: boundary-aware pre-training of the heatmap head on a mask-only dataset (seed document 003).

Stage 1 of "Domain Generalized Medical Landmark Detection via Robust Boundary-aware Pre-training": on a
*segmentation* dataset, every heatmap channel regresses the truncated boundary-proximity map
(:func:`nnunet_babloss.core.boundary.boundary_proximity_map`, range ``n`` = ``boundary_range_mm`` of the landmark block)
of the structure(s) its landmark lies on, with the mixing loss ``t * MSE + (1 - t) * LogCosh`` and
``t = (epoch + 1) / num_epochs`` (:func:`nnunet_babloss.pretraining.losses.mixing_weight`). Stage 2 is ordinary landmark
training that starts from this checkpoint::

    nnUNetv2_train PRETRAIN_DATASET 2d 0 -tr BoundaryPretrainer
    nnUNetv2_train LANDMARK_DATASET 2d 0 -tr HeatmapTrainer \\
        -pretrained_weights $nnUNet_results/<PRETRAIN_DATASET>/BoundaryPretrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth

The fine-tuning trainer loads ``-pretrained_weights`` weights-only (nnU-Net's ``load_pretrained_weights`` runs inside
:func:`~nnunet_babloss.nnunet.checkpoint_loading.weights_only_loading`, see
:class:`~nnunet_babloss.nnunet.checkpoint_selection.WeightsOnlyCheckpointLoading`): a pre-training output
from elsewhere can carry weights, not code.

Why no surgery is needed: the network is exactly :class:`HeatmapTrainer`'s (nnU-Net's planned U-Net plus a heatmap
head with one channel per landmark). nnU-Net's ``load_pretrained_weights`` requires every key except those containing
``.seg_layers.`` (the 1x1 segmentation outputs, which it skips) to exist with the same shape, so the two datasets
need the same plans (``nnUNetv2_move_plans_between_datasets``, or one dataset for both stages) and the same landmark
list. The pre-training dataset's ``dataset.json`` therefore carries the fine-tuning dataset's ``"landmarks"`` block:
``names`` (the heatmap channels) and ``bridge`` (landmark -> label names, which say which structure's boundary each
channel regresses). No landmark files are needed; a dataset.json without the block, or without any bridged
landmark, is refused with a message saying what to add.

Which samples count: only those with a complete mask in the patch. A patch containing the ignore label (a
landmark-only case of a heterogeneous dataset, or a partial annotation) is left out of the loss, since the
boundary of a structure next to unknown voxels is unknown. Landmarks without a bridge get no target (their channels
are not pre-trained). The segmentation head is not trained by default (``segmentation_loss_weight = 0``, as in the
paper); set the weight to also learn the masks.

The heatmap head's output goes through the same sigmoid as in :class:`HeatmapTrainer`, so after pre-training each
channel predicts the boundary band of its structure in [0, 1] and fine-tuning only has to narrow it to the landmark.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from nnunetv2.training.logging.nnunet_logger import LocalLogger
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import Tensor, autocast, nn

from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.core.landmarks.spec import LandmarkSpec, has_landmarks_block
from nnunet_babloss.core.losses import group_organ_masks
from nnunet_babloss.core.network import SegmentationHeatmapNetwork, SegmentationHeatmapOutput, unwrap_network
from nnunet_babloss.nnunet.heatmap_trainer import NO_MIRROR_PAIRS_PROBLEM, HeatmapTrainer
from nnunet_babloss.nnunet.checkpoint_selection import SelectionScoreCheckpointing
from nnunet_babloss.nnunet.mirroring import LateralMirroringGuard
from nnunet_babloss.nnunet.plans import store_landmark_spec
from nnunet_babloss.nnunet.schedules import ScheduleSettings
from nnunet_babloss.pretraining.losses import mixed_mse_logcosh_loss, mixing_weight

__all__ = [
    "BOUNDARY_PRETRAINING_LOG_KEYS",
    "BoundaryPretrainer",
    "BoundaryPretrainer_released",
    "BoundaryPretrainingLogger",
    "pretraining_landmark_spec",
]

BOUNDARY_PRETRAINING_LOG_KEYS = ("train_boundary_losses", "val_boundary_mae", "mixing_t", "ema_selection_score")


def pretraining_landmark_spec(dataset_json: dict, dataset_name: str = "this dataset") -> LandmarkSpec:
    """The landmark block of a pre-training dataset, checked to bridge at least one landmark to a label.

    Raises:
        ValueError: no ``"landmarks"`` block, or no landmark with a ``bridge`` entry (the message says what to add).
        LandmarkSpecError: an invalid block (unknown label in ``bridge``, ...).
    """
    advice = (
        "Boundary-aware pre-training regresses, in each heatmap channel, the boundary-proximity map of the "
        "structure(s) that channel's landmark lies on. Copy the 'landmarks' block of the dataset you will fine-tune "
        "on into this dataset.json: 'names' (the heatmap channels; they must equal the fine-tuning dataset's for "
        "-pretrained_weights to load) and 'bridge' (landmark -> label names of this dataset); no landmark files are "
        "needed."
    )
    if not has_landmarks_block(dataset_json):
        raise ValueError(f"dataset.json of {dataset_name} has no 'landmarks' block. {advice}")
    spec = LandmarkSpec.from_dataset_json(dataset_json)
    if not spec.bridge:
        raise ValueError(f"dataset.json of {dataset_name}: the 'landmarks' block has no 'bridge' entry. {advice}")
    return spec


class BoundaryPretrainingLogger(LocalLogger):
    """nnU-Net's ``LocalLogger`` plus the pre-training's keys (logged every epoch, so the stock plot keeps working)."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__(verbose)
        for key in BOUNDARY_PRETRAINING_LOG_KEYS:
            self.my_fantastic_logging[key] = []

    def load_checkpoint(self, checkpoint: dict) -> None:
        super().load_checkpoint(checkpoint)
        epochs = len(self.my_fantastic_logging.get("train_losses", []))
        for key in BOUNDARY_PRETRAINING_LOG_KEYS:
            self.my_fantastic_logging.setdefault(key, [math.nan] * epochs)


class BoundaryPretrainer(LateralMirroringGuard, SelectionScoreCheckpointing, ScheduleSettings, nnUNetTrainer):
    """Pre-trains encoder, decoder and heatmap head to regress boundary-proximity maps of the bridged structures.

    Class attributes:
        mixing_residual_scale: residual scale of the mixing loss (see
            :func:`~nnunet_babloss.core.losses.mixed_mse_logcosh_loss`): 1 keeps the loss on maps in [0, 1] (LogCosh is
            then nearly MSE / 2); :class:`BoundaryPretrainer_released` uses 255, the released code's map scale.
        segmentation_loss_weight: weight of nnU-Net's segmentation loss on the masks (0: heatmap head only).
        selection_ema_momentum: momentum of the EMA of ``1 - validation MAE`` that selects ``checkpoint_best``.
        mirror_lateral_without_pairs: keep left-right flips although the landmarks have no mirror pairs. Off by
            default, as in :class:`HeatmapTrainer`: a channel bridged to a sided structure (right lung) must not
            see it flipped to the other side, and pre-training should augment like the fine-tuning it prepares.
    """

    mixing_residual_scale: float = 1.0
    segmentation_loss_weight: float = 0.0
    selection_ema_momentum: float = 0.9
    selection_description = "selection score (EMA of 1 - boundary-map MAE)"
    mirror_lateral_without_pairs: bool = False

    def __init__(
        self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_schedule_settings()
        self.landmark_spec = pretraining_landmark_spec(dataset_json, self.plans_manager.dataset_name)
        if self.label_manager.has_regions:
            raise ValueError(f"{type(self).__name__} does not support region-based labels yet; use an exclusive label map")
        self.group_label_values, self.landmark_groups = self.landmark_spec.bridge_groups(dataset_json["labels"])
        # The same plans entries as HeatmapTrainer: the network (and nnU-Net's predictor) is rebuilt from them.
        store_landmark_spec(self.plans_manager.plans, self.landmark_spec, dataset_json["labels"])
        self.logger.local_logger = BoundaryPretrainingLogger()
        self.patch_spacing_mm = tuple(float(value) for value in self.configuration_manager.spacing)

    # ------------------------------------------------------------------ network
    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """Exactly :class:`HeatmapTrainer`'s network, so the checkpoint loads into it key for key."""
        return HeatmapTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )

    def _unwrapped_network(self) -> SegmentationHeatmapNetwork:
        return unwrap_network(self.network)

    def initialize(self) -> None:
        if not self.was_initialized:
            super().initialize()
            self._unwrapped_network().output_heatmaps = True
            bridged = sum(group >= 0 for group in self.landmark_groups)
            self.print_to_log_file(
                f"Boundary-aware pre-training: {bridged} of {self.landmark_spec.num_landmarks} heatmap channels regress "
                f"the boundary-proximity map (range {self.landmark_spec.boundary_range_mm:g} mm) of "
                f"{len(self.group_label_values)} structure group(s) {self.group_label_values}; mixing loss "
                f"t MSE + (1 - t) LogCosh, t = (epoch + 1) / {self.num_epochs}, residual scale {self.mixing_residual_scale:g}; "
                f"segmentation loss weight {self.segmentation_loss_weight:g}"
            )

    def lateral_mirroring_problems(self) -> tuple[str, ...]:
        """:class:`HeatmapTrainer`'s rule, except that sided labels always stop left-right flips: the pre-training
        uses nnU-Net's own augmentation, which does not swap ``label_mirror_pairs``."""
        if self.mirror_lateral_without_pairs:
            return ()
        spec = self.landmark_spec
        problems = [] if spec.mirror_pairs else [NO_MIRROR_PAIRS_PROBLEM]
        label_problems = dataclasses.replace(spec, label_mirror_pairs=()).lateral_flip_problems(self.dataset_json["labels"])
        if label_problems and spec.label_mirror_pairs:
            problems.append(
                f"{type(self).__name__} does not swap the label values of landmarks.label_mirror_pairs "
                f"{[list(pair) for pair in spec.label_mirror_pairs]} under a flip (it uses nnU-Net's augmentation)"
            )
        else:
            problems.extend(label_problems)
        return tuple(problems)

    # ------------------------------------------------------------------ targets and losses
    def boundary_targets(self, target) -> tuple[Tensor, Tensor]:
        """Per-channel boundary-proximity targets of a batch and which ``(sample, channel)`` pairs they are valid for.

        Args:
            target: nnU-Net's segmentation target, ``(B, 1, *spatial)`` or a deep-supervision list (full resolution first).

        Returns:
            ``(targets (B, K, *spatial) float32 in [0, 1], valid (B, K) bool)``.
        """
        labels = target[0] if isinstance(target, list) else target
        ignore = self.label_manager.ignore_label
        if ignore is None:
            has_mask = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        else:
            has_mask = ~(labels == ignore).flatten(1).any(1)
        groups = torch.as_tensor(self.landmark_groups, device=labels.device)
        with torch.no_grad():
            organ_masks = group_organ_masks(labels, self.group_label_values)
            proximity = boundary_proximity_map(organ_masks, self.landmark_spec.boundary_range_mm, self.patch_spacing_mm)
        targets = proximity[:, groups.clamp_min(0)]
        valid = has_mask[:, None] & (groups >= 0)[None]
        return targets, valid

    def compute_losses(self, output: SegmentationHeatmapOutput, target, mix_t: float) -> dict[str, Tensor]:
        """Boundary-map regression (and optional segmentation) loss of one batch; ``total`` is what is optimised."""
        targets, valid = self.boundary_targets(target)
        maps = torch.sigmoid(output.heatmap_logits.float())
        boundary_loss = mixed_mse_logcosh_loss(maps, targets, mix_t, valid, self.mixing_residual_scale)
        segmentation = output.segmentation if isinstance(output.segmentation, list) else [output.segmentation]
        if self.segmentation_loss_weight > 0:
            segmentation_loss = self.loss(output.segmentation, target)
        else:
            # Keep every segmentation output in the graph (DDP expects all parameters to receive a gradient).
            segmentation_loss = sum(level.sum() for level in segmentation) * 0.0
        total = boundary_loss + self.segmentation_loss_weight * segmentation_loss
        return {"total": total, "boundary": boundary_loss, "maps": maps.detach(), "targets": targets, "valid": valid}

    def current_mixing_weight(self) -> float:
        """``t`` of the current epoch (see :func:`~nnunet_babloss.pretraining.losses.mixing_weight`)."""
        return mixing_weight(min(self.current_epoch, self.num_epochs - 1), self.num_epochs)

    def _to_device(self, batch: dict) -> tuple[Tensor, Tensor | list[Tensor]]:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            return data, [level.to(self.device, non_blocking=True) for level in target]
        return data, target.to(self.device, non_blocking=True)

    def train_step(self, batch: dict) -> dict:
        data, target = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            losses = self.compute_losses(self.network(data), target, self.current_mixing_weight())
        loss = losses["total"]
        HeatmapTrainer._backward_and_step(self, loss)  # nnU-Net's step (grad scaler, clipping at 12), shared
        return {"loss": loss.detach().cpu().numpy(), "boundary_loss": losses["boundary"].detach().cpu().numpy()}

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        self.logger.log("train_boundary_losses", float(np.mean([out["boundary_loss"] for out in train_outputs])), self.current_epoch)
        self.logger.log("mixing_t", self.current_mixing_weight(), self.current_epoch)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict) -> dict:
        data, target = self._to_device(batch)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            losses = self.compute_losses(output, target, self.current_mixing_weight())
        valid = losses["valid"]
        absolute = (losses["maps"] - losses["targets"]).abs().flatten(2).mean(-1)  # (B, K)
        # nnU-Net's pseudo Dice of the segmentation head (meaningful only if segmentation_loss_weight > 0).
        segmentation = output.segmentation[0] if isinstance(output.segmentation, list) else output.segmentation
        reference = target[0] if isinstance(target, list) else target
        predicted = torch.zeros(segmentation.shape, device=segmentation.device, dtype=torch.float16)
        predicted.scatter_(1, segmentation.argmax(1, keepdim=True), 1)
        mask = None
        if self.label_manager.has_ignore_label:
            mask = (reference != self.label_manager.ignore_label).float()
            reference = torch.where(reference == self.label_manager.ignore_label, torch.zeros_like(reference), reference)
        tp, fp, fn, _ = get_tp_fp_fn_tn(predicted, reference, axes=[0, *range(2, segmentation.ndim)], mask=mask)
        return {
            "loss": losses["total"].detach().cpu().numpy(),
            "tp_hard": tp.detach().cpu().numpy()[1:],
            "fp_hard": fp.detach().cpu().numpy()[1:],
            "fn_hard": fn.detach().cpu().numpy()[1:],
            "boundary_error_sum": float(absolute[valid].sum()),
            "boundary_pair_count": float(valid.sum()),
        }

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        super().on_validation_epoch_end(val_outputs)
        error_sum = sum(output["boundary_error_sum"] for output in val_outputs)
        count = sum(output["boundary_pair_count"] for output in val_outputs)
        if self.is_ddp:
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (error_sum, count))
            error_sum, count = sum(item[0] for item in gathered), sum(item[1] for item in gathered)
        mae = error_sum / count if count else math.nan
        self.logger.log("val_boundary_mae", mae, self.current_epoch)
        self.log_selection_score(1.0 - mae)

    def on_epoch_end(self) -> None:
        """Log the boundary-map error; ``checkpoint_best`` follows the EMA of ``1 - validation MAE``."""
        log = self.logger.local_logger.my_fantastic_logging
        self.print_to_log_file(
            f"Boundary maps: validation MAE {log['val_boundary_mae'][-1]:.4f}, t = {log['mixing_t'][-1]:.3f}, "
            f"train regression loss {log['train_boundary_losses'][-1]:.5f}"
        )
        super().on_epoch_end()

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's segmentation validation if the segmentation head was trained; otherwise nothing to validate."""
        if self.segmentation_loss_weight <= 0:
            self.print_to_log_file(
                "Boundary-aware pre-training trained no segmentation head (segmentation_loss_weight = 0): skipping "
                "nnU-Net's segmentation validation; the boundary-map MAE per epoch is in the training log",
                also_print_to_console=True,
            )
            return
        network = self._unwrapped_network()
        network.output_heatmaps = False
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            network.output_heatmaps = True


class BoundaryPretrainer_released(BoundaryPretrainer):
    """Residual scale 255, as the released code regresses maps scaled to 0..255 (LogCosh then acts like L1)."""

    mixing_residual_scale = 255.0
