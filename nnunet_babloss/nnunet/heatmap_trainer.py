"""``HeatmapTrainer``: nnU-Net's planned U-Net with a landmark heatmap head, trained on partial labels.

The baseline of the heterogeneous partially-labelled setting (a multi-head network without the bridge loss):

* cases without a mask carry the ignore label and are ignored by the segmentation loss at every deep-supervision
  level, padding included; cases without landmarks contribute no heatmap loss; a batch with no masks or no
  landmarks still trains (losses are masked, never subset, so DDP cannot deadlock and every head stays in the graph);
* landmarks follow augmentation exactly and heatmaps are rendered on the training device from the keypoints;
* a 2D configuration on 3D volumes trains each slice against the slice of every annotated landmark's 3D Gaussian
  (``heatmap_slice_sigma_vox``): a landmark on another slice asks for (about) no peak here, and the predictor reads
  the stacked slices as one 3D heatmap;
* validation logs landmark MRE and SDR next to nnU-Net's pseudo Dice, and selects ``checkpoint_best`` on a score
  that still works when a fold has no masks or no landmarks.

Settings are class attributes; variants are subclasses (nnU-Net rebuilds trainers from their ``__init__``
arguments, so ``__init__`` takes exactly nnU-Net's).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import Tensor, autocast, nn

from nnunet_babloss.core.heatmaps import decode_heatmaps, render_gaussian_heatmaps, sigma_mm_to_vox, through_plane_factors
from nnunet_babloss.core.landmarks.io import read_landmarks
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.losses import (
    HEATMAP_LOSS_KINDS,
    gaussian_mass_vox,
    ignore_unannotated_targets,
    masked_heatmap_bce,
    masked_heatmap_mse,
)
from nnunet_babloss.core.network import SegmentationHeatmapNetwork, SegmentationHeatmapOutput, unwrap_network
from nnunet_babloss.nnunet.keypoint_transforms import make_keypoint_aware
from nnunet_babloss.nnunet.landmark_loader import LandmarkDataLoader
from nnunet_babloss.nnunet.landmark_logging import LandmarkLocalLogger
from nnunet_babloss.nnunet.plans import landmark_spec_from_plans, store_landmark_spec, store_side_swapping_tta
from nnunet_babloss.nnunet.checkpoint_selection import SelectionScoreCheckpointing
from nnunet_babloss.nnunet.mirroring import LateralMirroringGuard
from nnunet_babloss.nnunet.schedules import ScheduleSettings
from nnunet_babloss.nnunet.upright_augmentation import bounded_rotation, with_spatial_scaling

__all__ = [
    "NO_MIRROR_PAIRS_PROBLEM",
    "HeatmapTrainer",
]

NO_MIRROR_PAIRS_PROBLEM = (
    "the landmarks have no landmarks.mirror_pairs, so a flip cannot say which landmark a sided one becomes "
    "(declare the left/right partners in mirror_pairs if they exist)"
)
LANDMARK_FOLDER = "landmarksTr"


class HeatmapTrainer(LateralMirroringGuard, SelectionScoreCheckpointing, ScheduleSettings, nnUNetTrainer):
    """Segmentation + landmark heatmaps on heterogeneous partial labels, without the bridge loss."""

    heatmap_loss_weight: float = 1.0
    heatmap_foreground_weight: float = 1.0
    #: "bce" (cross-entropy of the logits against the Gaussian targets, see losses.masked_heatmap_bce) or "mse" (the
    #: paper: squared error of sigmoid heatmaps), both normalised by one Gaussian's mass. Default "bce": with "mse"
    #: the sigmoid's slope (~0.01 while the head predicts background) damps the gradient at the peaks, and the
    #: Hamedan 400-iteration run stayed at chance (README, "Choosing the landmark defaults").
    heatmap_loss_kind: str = "bce"
    #: Lower bound of the heatmap Gaussian's sigma, in voxels of the network output (the training patch spacing);
    #: the dataset's ``sigma_mm`` is used when it is wider. A 2-voxel Gaussian is too narrow for the head to find
    #: on a short schedule (JSRT at 2.8 mm/px: 98.5 mm vs 10.3 mm at 5 voxels, design/landmarks.md). 4 is the
    #: value of the sweep (README, "Choosing the landmark defaults") that is best on average on both real datasets:
    #: JSRT 6.79 mm over 3 seeds (3: 7.02, 5: 7.35), Hamedan 17.1 px (3: 15.3, 5: 20.4). ``0`` uses the
    #: dataset's ``sigma_mm`` as it is.
    heatmap_min_sigma_vox: float = 4.0
    #: Through-plane sigma, in slices, of the targets of a 2D configuration on 3D volumes: each slice is trained
    #: against the slice of the landmark's 3D Gaussian, so a landmark 4 or more slices away asks for a peak below
    #: 0.0004 ("no landmark here") and the stacked slice outputs form a 3D Gaussian that the predictor decodes with
    #: sub-slice accuracy. In slices, not mm: nnU-Net's 2D configurations keep every case's own slice spacing and
    #: the network sees one slice at a time. One slice keeps both neighbours of the peak slice well above zero
    #: (0.61), which the decoder's through-plane refinement needs, and gives nearly identical neighbouring slices
    #: no contradictory 1-versus-0 targets; the in-plane floor of 4 voxels would still ask for 0.6 four slices away.
    heatmap_slice_sigma_vox: float = 1.0
    #: Probability that a patch of a case with a mask *and* landmarks is centred on a landmark (landmark-only cases
    #: always are) — along patch axes that do not cover the image; see ``image_centred_patches``.
    landmark_centred_probability: float = 0.33
    #: Along every axis where the patch covers the whole (preprocessed) image, take it centred on the image: no
    #: landmark-centred crop and no random shift, which would only move the anatomy inside an empty canvas and
    #: destroy position, the strongest landmark cue (JSRT: 66.95 mm with, 7.65 mm without, design/landmarks.md).
    image_centred_patches: bool = True
    #: Rotation range of the augmentation, degrees (``None``: nnU-Net's, up to +-180 for square 2D patches, which is
    #: wrong for upright radiographs and, with an up-down flip, amounts to a left-right flip).
    landmark_rotation_deg: float | None = 10.0
    #: Scaling range of the augmentation (``None``: nnU-Net's 0.7-1.4, +-40 % anatomy size at a fixed Gaussian width).
    landmark_scaling: tuple[float, float] | None = (0.9, 1.1)
    #: Flip only along the patient's left-right axis, and only when mirror pairs say how landmarks swap (``False``:
    #: nnU-Net's axes, minus the lateral one without pairs). Up-down or front-back flips show anatomy no test image
    #: has. Test-time mirroring uses the same axes.
    mirror_only_lateral: bool = True
    sdr_thresholds_mm: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)
    selection_sdr_threshold_mm: float = 4.0
    selection_description = "selection score (EMA of the mean of pseudo Dice and SDR@4 mm, of the trained tasks)"
    #: Heatmap peak below which the final validation writes a landmark as absent (``nnUNetv2_bab_predict``'s
    #: ``--landmark-threshold``); 0 always reports the argmax, e.g. for benchmarks that score every landmark.
    validation_landmark_threshold: float = 0.3
    #: Keep nnU-Net's left-right flips whatever the guard finds (sided landmarks without mirror pairs, sided labels
    #: without label_mirror_pairs; see nnunet/mirroring.py).
    mirror_lateral_without_pairs: bool = False

    def __init__(
        self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_schedule_settings()
        if self.heatmap_loss_kind not in HEATMAP_LOSS_KINDS:
            raise ValueError(f"heatmap_loss_kind must be one of {HEATMAP_LOSS_KINDS}, got {self.heatmap_loss_kind!r}")
        self.landmark_spec = LandmarkSpec.from_dataset_json(dataset_json)
        if self.label_manager.has_regions:
            raise ValueError(
                f"{type(self).__name__} does not support region-based labels yet; use an exclusive label map"
            )
        # Stored in the plans so that build_network_architecture (also called by nnU-Net's stock predictor, which
        # sees only the plans) can rebuild the heatmap head.
        store_landmark_spec(self.plans_manager.plans, self.landmark_spec, dataset_json["labels"])
        self.logger.local_logger = LandmarkLocalLogger(sdr_thresholds_mm=self.sdr_thresholds_mm)
        spacing = list(self.configuration_manager.spacing)
        self.patch_spacing_mm = tuple(float(value) for value in spacing)
        self.sigma_vox = tuple(
            max(value, float(self.heatmap_min_sigma_vox))
            for value in sigma_mm_to_vox(self.landmark_spec.sigma_mm, self.patch_spacing_mm)
        )
        # Which tasks the training cases teach (set when the data loaders are built): checkpoint selection and the
        # logs only use those.
        self.trains_segmentation = bool(self.label_manager.foreground_labels)
        self.trains_landmarks = self.landmark_spec.num_landmarks > 0

    # ------------------------------------------------------------------ network
    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """nnU-Net's planned U-Net wrapped with a heatmap head (heatmap output off: stock-predictor compatible)."""
        unet = nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )
        spec = landmark_spec_from_plans(plans_manager.plans)
        network = SegmentationHeatmapNetwork(unet, spec.num_landmarks)
        network.initialize_heatmap_bias()
        return network

    def _unwrapped_network(self) -> SegmentationHeatmapNetwork:
        return unwrap_network(self.network)

    def initialize(self) -> None:
        if not self.was_initialized:
            super().initialize()
            self._unwrapped_network().output_heatmaps = True

    def lateral_mirroring_problems(self) -> tuple[str, ...]:
        """Why left-right flips would teach wrong targets: landmarks without ``mirror_pairs``, or sided labels and
        bridges that ``label_mirror_pairs`` do not make consistent (:meth:`LandmarkSpec.lateral_flip_problems`)."""
        if self.mirror_lateral_without_pairs:
            return ()
        spec = self.landmark_spec
        problems = [NO_MIRROR_PAIRS_PROBLEM] if spec.num_landmarks > 0 and not spec.mirror_pairs else []
        problems.extend(spec.lateral_flip_problems(self.dataset_json["labels"]))
        return tuple(problems)

    # ------------------------------------------------------------------ data
    def _landmark_folder(self) -> Path:
        """``nnUNet_raw/<dataset>/landmarksTr``, else the copy next to the preprocessed data."""
        candidates = []
        if nnUNet_raw.is_set():
            candidates.append(Path(nnUNet_raw.get()) / self.plans_manager.dataset_name / LANDMARK_FOLDER)
        candidates.append(Path(self.preprocessed_dataset_folder_base) / LANDMARK_FOLDER)
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
        raise FileNotFoundError(
            f"no landmark folder found; looked for {' and '.join(str(path) for path in candidates)}"
        )

    def load_world_landmarks(self, case_identifiers: list[str]) -> dict[str, np.ndarray]:
        """World landmarks ``(K, D)`` of the given cases that have a landmark file."""
        folder = self._landmark_folder()
        landmarks = {}
        for case in case_identifiers:
            path = folder / f"{case}.json"
            if path.is_file():
                landmarks[case] = read_landmarks(path, self.landmark_spec).points_mm
        return landmarks

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        """nnU-Net's choice, then landmark-suited bounds: rotation ``landmark_rotation_deg`` and flips only along the
        lateral axis when mirror pairs exist (``mirror_only_lateral``); the loader's initial patch follows."""
        rotation, dummy_2d, initial_patch_size, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        patch_size = self.configuration_manager.patch_size
        if self.landmark_rotation_deg is not None:
            rotation, initial_patch_size = bounded_rotation(patch_size, self.landmark_rotation_deg, dummy_2d)
        lateral_axes = self._lateral_patch_axes()
        if self.mirror_only_lateral:
            mirror_axes = tuple(axis for axis in mirror_axes if axis in lateral_axes)
        # Flips that swap sided label values need the swap at test time too, which only our predictor does.
        swaps_labels = bool(self.landmark_spec.label_mirror_pairs) and any(axis in mirror_axes for axis in lateral_axes)
        store_side_swapping_tta(self.plans_manager.plans, swaps_labels)
        inference_axes = tuple(axis for axis in mirror_axes if not (swaps_labels and axis in lateral_axes))
        # ``None``, not ``()``, when nothing flips: nnU-Net's predictors take ``None`` as "no mirroring" but call
        # ``max()`` on an empty tuple.
        self.inference_allowed_mirroring_axes = inference_axes or None
        self.print_to_log_file(
            f"landmark augmentation: rotation +-{math.degrees(rotation[1]):.0f} deg, scaling "
            f"{self.landmark_scaling or 'nnU-Net default'}, mirror axes for training {mirror_axes}, for nnU-Net's "
            f"test-time mirroring {inference_axes}"
            + (f" (nnUNetv2_bab_predict also flips left-right, swapping {list(self.landmark_spec.label_mirror_pairs)})"
               if swaps_labels else "")
            + f", image-centred patches where the patch covers the image: {self.image_centred_patches}"
        )
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def get_training_transforms_with_landmark_scaling(self, *args, **kwargs) -> BasicTransform:
        """nnU-Net's training transforms with the scaling range set to ``landmark_scaling`` (when not ``None``)."""
        transforms = self.get_training_transforms(*args, **kwargs)
        return transforms if self.landmark_scaling is None else with_spatial_scaling(transforms, self.landmark_scaling)

    def _lateral_patch_axes(self) -> tuple[int, ...]:
        """Patch axes along which a flip exchanges left and right (empty without mirror pairs)."""
        if not self.landmark_spec.mirror_pairs:
            return ()
        patch_axis = self.dataset_lateral_patch_axis()
        return () if patch_axis is None else (patch_axis,)

    def get_dataloaders(self):
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        deep_supervision_scales = self._get_deep_supervision_scales()
        rotation, dummy_2d, initial_patch_size, mirror_axes = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        lateral_axes = self._lateral_patch_axes()
        pairing = self.landmark_spec.mirror_permutation()
        label_pairs = self.landmark_spec.label_value_pairs(self.dataset_json["labels"])
        common = dict(
            is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels,
            regions=None,
            ignore_label=self.label_manager.ignore_label,
        )
        train_transforms = make_keypoint_aware(
            self.get_training_transforms_with_landmark_scaling(
                patch_size, rotation, deep_supervision_scales, mirror_axes, dummy_2d,
                use_mask_for_norm=self.configuration_manager.use_mask_for_norm, **common,
            ),
            pairing,
            lateral_axes,
            label_value_pairs=label_pairs,
        )
        val_transforms = make_keypoint_aware(
            self.get_validation_transforms(deep_supervision_scales, **common), pairing, lateral_axes,
            label_value_pairs=label_pairs,
        )
        landmarks = self.load_world_landmarks(list(dataset_tr.identifiers) + list(dataset_val.identifiers))
        self.print_to_log_file(
            f"landmarks: {len(landmarks)} of {len(dataset_tr.identifiers) + len(dataset_val.identifiers)} cases have a "
            f"landmark file; heatmap sigma {tuple(round(s, 3) for s in self.sigma_vox)} voxels (dataset "
            f"{self.landmark_spec.sigma_mm} mm, at least {self.heatmap_min_sigma_vox} voxels); heatmap loss "
            f"{self.heatmap_loss_kind}; lateral patch axes for mirror pairs: {lateral_axes}; label values swapped with "
            f"them: {label_pairs}"
        )
        loader_options = dict(
            image_centred_patches=self.image_centred_patches,
            landmarks_world=landmarks,
            num_landmarks=self.landmark_spec.num_landmarks,
            transpose_forward=list(self.plans_manager.transpose_forward),
            ignore_label=self.label_manager.ignore_label,
            landmark_centred_probability=self.landmark_centred_probability,
            oversample_foreground_percent=self.oversample_foreground_percent,
            probabilistic_oversampling=self.probabilistic_oversampling,
        )
        loader_train = LandmarkDataLoader(
            dataset_tr, self.batch_size, initial_patch_size, patch_size, self.label_manager,
            transforms=train_transforms, **loader_options,
        )
        loader_val = LandmarkDataLoader(
            dataset_val, self.batch_size, patch_size, patch_size, self.label_manager,
            transforms=val_transforms, **loader_options,
        )
        self._record_trained_tasks(loader_train, landmarks)
        processes = get_allowed_n_proc_DA()
        if processes == 0:
            train, val = SingleThreadedAugmenter(loader_train, None), SingleThreadedAugmenter(loader_val, None)
        else:
            pin = self.device.type == "cuda"
            train = NonDetMultiThreadedAugmenter(loader_train, None, processes, max(6, processes // 2), None, pin, 0.002)
            val = NonDetMultiThreadedAugmenter(loader_val, None, max(1, processes // 2), max(3, processes // 4), None, pin, 0.002)
        _ = next(train)
        _ = next(val)
        return train, val

    def _record_trained_tasks(self, loader: LandmarkDataLoader, landmarks: dict[str, np.ndarray]) -> None:
        """Which heads the training cases teach: segmentation if some training case has a mask, landmarks if some
        has a landmark file. Checkpoint selection and the logs use only those tasks."""
        identifiers = list(loader.indices)
        self.trains_landmarks = self.landmark_spec.num_landmarks > 0 and any(case in landmarks for case in identifiers)
        self.trains_segmentation = bool(self.label_manager.foreground_labels) and any(
            loader.case_has_mask(case) for case in identifiers
        )
        self.print_to_log_file(
            f"trained tasks: segmentation {self.trains_segmentation}, landmarks {self.trains_landmarks} "
            "(checkpoint selection and logged losses use only these)"
        )

    # ------------------------------------------------------------------ losses
    def _batch_to_device(self, batch: dict) -> tuple[Tensor, list[Tensor] | Tensor, Tensor, Tensor, Tensor]:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [level.to(self.device, non_blocking=True) for level in target] if isinstance(target, list) else target.to(self.device, non_blocking=True)
        has_mask = batch["has_mask"].to(self.device)
        keypoints = batch["keypoints"].to(self.device, non_blocking=True)
        has_landmarks = batch["has_landmarks"].to(self.device)
        ignore = self.label_manager.ignore_label
        if ignore is not None:
            # Mask-less samples are ignored entirely, at every level and in the padding (which the loader's
            # RemoveLabelTansform turned into background).
            levels = ignore_unannotated_targets(target if isinstance(target, list) else [target], has_mask, ignore)
            target = levels if isinstance(target, list) else levels[0]
        return data, target, keypoints, has_mask, has_landmarks

    def landmark_validity(self, keypoints: Tensor, has_landmarks: Tensor) -> Tensor:
        """``(B, K)``: the landmark is annotated in this sample (absent/not annotated -> no heatmap loss). A landmark
        on another slice of a 2D patch is annotated: its target there is (about) zero, not nothing."""
        return has_landmarks[:, None] & ~torch.isnan(keypoints).any(-1)

    @staticmethod
    def keypoints_on_patch(keypoints: Tensor, slice_offsets_vox: Tensor | None) -> Tensor:
        """``keypoints`` with NaN rows for landmarks on another slice than the 2D patch (more than half a slice away):
        what the bridge loss and the patch-level errors may use. ``None`` offsets (3D patches, 2D images): unchanged."""
        if slice_offsets_vox is None:
            return keypoints
        off_slice = ~(slice_offsets_vox.abs() <= 0.5)  # NaN offsets (not annotated) are NaN keypoints already
        return torch.where(off_slice[..., None], torch.full_like(keypoints, math.nan), keypoints)

    def reference_heatmaps(
        self, keypoints: Tensor, slice_offsets_vox: Tensor | None, patch_shape: tuple[int, ...]
    ) -> Tensor:
        """``(B, K, *patch_shape)`` targets: each landmark's Gaussian, on a 2D slice of a 3D volume the slice of its
        3D Gaussian (in-plane Gaussian times :func:`~nnunet_babloss.core.heatmaps.through_plane_factors`)."""
        reference = render_gaussian_heatmaps(keypoints, patch_shape, self.sigma_vox)
        if slice_offsets_vox is None:
            return reference
        factors = through_plane_factors(slice_offsets_vox, self.heatmap_slice_sigma_vox).to(reference.dtype)
        return reference * factors.view(*factors.shape, *([1] * len(patch_shape)))

    def compute_losses(
        self, output: SegmentationHeatmapOutput, target, keypoints: Tensor, has_mask: Tensor, has_landmarks: Tensor,
        *, slice_offsets_vox: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Segmentation, heatmap and (in subclasses) bridge losses of one batch; ``total`` is what is optimised.

        ``slice_offsets_vox`` (``(B, K)``, the loader's): for 2D patches of 3D volumes, each landmark's offset from
        the slice; ``None`` means every landmark lies in the patch's plane (3D patches, 2D images).
        """
        if self.label_manager.foreground_labels:
            segmentation_loss = self.loss(output.segmentation, target)
        else:
            # No foreground label (a landmark-only dataset): nnU-Net's Dice would average an empty channel slice
            # (NaN); there is nothing to segment, so the term is zero, with the head kept in the graph.
            segmentation_loss = _zero_like_graph(output.segmentation)
        patch_shape = tuple(output.heatmap_logits.shape[2:])
        reference = self.reference_heatmaps(keypoints, slice_offsets_vox, patch_shape)
        logits = output.heatmap_logits.float()
        heatmaps = torch.sigmoid(logits)
        valid = self.landmark_validity(keypoints, has_landmarks)
        normalizer = gaussian_mass_vox(self.sigma_vox)
        if self.heatmap_loss_kind == "bce":
            heatmap_loss = masked_heatmap_bce(logits, reference, valid, self.heatmap_foreground_weight, normalizer)
        elif self.heatmap_loss_kind == "mse":
            heatmap_loss = masked_heatmap_mse(heatmaps, reference, valid, self.heatmap_foreground_weight, normalizer)
        else:  # also checked in __init__; an attribute changed later must not fall back silently
            raise ValueError(f"heatmap_loss_kind must be one of {HEATMAP_LOSS_KINDS}, got {self.heatmap_loss_kind!r}")
        # The bridge ties a landmark to the organ boundary of its own slice only.
        on_patch = self.keypoints_on_patch(keypoints, slice_offsets_vox)
        bab_loss = self.compute_bridge_loss(output, heatmaps, reference, target, on_patch, has_mask, valid)
        total = segmentation_loss + self.heatmap_loss_weight * heatmap_loss + bab_loss
        return {"total": total, "heatmap": heatmap_loss, "bab": bab_loss}

    def compute_bridge_loss(
        self, output: SegmentationHeatmapOutput, heatmaps: Tensor, reference_heatmaps: Tensor, target,
        keypoints: Tensor, has_mask: Tensor, valid: Tensor,
    ) -> Tensor:
        """No bridge between the tasks in the baseline; :class:`BaBLossTrainer` overrides this.

        ``keypoints`` are those on the patch (:meth:`keypoints_on_patch`: NaN for landmarks on other slices);
        ``valid`` marks every annotated landmark.
        """
        return heatmaps.sum() * 0.0

    def _backward_and_step(self, loss: Tensor) -> None:
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

    def _slice_offsets_to_device(self, batch: dict) -> Tensor | None:
        offsets = batch.get("slice_offsets_vox")
        return None if offsets is None else offsets.to(self.device, non_blocking=True)

    def train_step(self, batch: dict) -> dict:
        data, target, keypoints, has_mask, has_landmarks = self._batch_to_device(batch)
        slice_offsets = self._slice_offsets_to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            losses = self.compute_losses(
                self.network(data), target, keypoints, has_mask, has_landmarks, slice_offsets_vox=slice_offsets
            )
        self._backward_and_step(losses["total"])
        return {
            "loss": losses["total"].detach().cpu().numpy(),
            "heatmap_loss": losses["heatmap"].detach().cpu().numpy(),
            "bab_loss": losses["bab"].detach().cpu().numpy(),
        }

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        for key, log_key in (("heatmap_loss", "train_heatmap_losses"), ("bab_loss", "train_bab_losses")):
            self.logger.log(log_key, float(np.mean([output[key] for output in train_outputs])), self.current_epoch)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict) -> dict:
        data, target, keypoints, has_mask, has_landmarks = self._batch_to_device(batch)
        slice_offsets = self._slice_offsets_to_device(batch)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            losses = self.compute_losses(
                output, target, keypoints, has_mask, has_landmarks, slice_offsets_vox=slice_offsets
            )
        segmentation = output.segmentation[0] if isinstance(output.segmentation, list) else output.segmentation
        reference = target[0] if isinstance(target, list) else target
        axes = [0, *range(2, segmentation.ndim)]
        predicted = torch.zeros(segmentation.shape, device=segmentation.device, dtype=torch.float16)
        predicted.scatter_(1, segmentation.argmax(1, keepdim=True), 1)
        mask = None
        if self.label_manager.has_ignore_label:
            mask = (reference != self.label_manager.ignore_label).float()
            reference = torch.where(reference == self.label_manager.ignore_label, torch.zeros_like(reference), reference)
        tp, fp, fn, _ = get_tp_fp_fn_tn(predicted, reference, axes=axes, mask=mask)
        return {
            "loss": losses["total"].detach().cpu().numpy(),
            "tp_hard": tp.detach().cpu().numpy()[1:],
            "fp_hard": fp.detach().cpu().numpy()[1:],
            "fn_hard": fn.detach().cpu().numpy()[1:],
            # A 2D patch is scored on the landmarks of its own slice.
            **self.landmark_error_counts(output, self.keypoints_on_patch(keypoints, slice_offsets), has_landmarks),
        }

    def landmark_error_counts(self, output, keypoints: Tensor, has_landmarks: Tensor) -> dict:
        """Validation landmark errors of one batch from the network output (trainers with another landmark head,
        e.g. DenseSeg's uv maps, override this)."""
        return self._landmark_error_counts(output.heatmap_logits, keypoints, has_landmarks)

    def _landmark_error_counts(self, heatmap_logits: Tensor, keypoints: Tensor, has_landmarks: Tensor) -> dict:
        """Sum and count of radial errors (mm) and hits per SDR threshold, for landmarks inside the patch."""
        predicted, _ = decode_heatmaps(torch.sigmoid(heatmap_logits.float()))
        return self._radial_error_counts(predicted, tuple(heatmap_logits.shape[2:]), keypoints, has_landmarks)

    def _radial_error_counts(
        self, predicted: Tensor, patch_shape: tuple[int, ...], keypoints: Tensor, has_landmarks: Tensor
    ) -> dict:
        """Error sums of predicted patch positions ``(B, K, D)`` (NaN = not found, counted as no hit)."""
        shape = torch.tensor(patch_shape, device=keypoints.device, dtype=keypoints.dtype)
        inside = ((keypoints >= -0.5) & (keypoints <= shape - 0.5)).all(-1)
        valid = self.landmark_validity(keypoints, has_landmarks) & inside
        spacing = torch.tensor(self.patch_spacing_mm, device=keypoints.device, dtype=keypoints.dtype)
        errors = torch.linalg.vector_norm((predicted.to(keypoints.dtype) - keypoints) * spacing, dim=-1)[valid]
        thresholds = torch.tensor(self.sdr_thresholds_mm, device=errors.device, dtype=errors.dtype)
        return {
            "landmark_error_sum_mm": errors.sum().detach().cpu().numpy(),
            "landmark_count": np.asarray(float(errors.numel())),
            "landmark_hits": (errors[:, None] <= thresholds[None]).sum(0).float().detach().cpu().numpy(),
        }

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        super().on_validation_epoch_end(val_outputs)
        error_sum = sum(float(output["landmark_error_sum_mm"]) for output in val_outputs)
        count = sum(float(output["landmark_count"]) for output in val_outputs)
        hits = np.sum([output["landmark_hits"] for output in val_outputs], axis=0)
        if self.is_ddp:
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (error_sum, count, hits))
            error_sum = sum(item[0] for item in gathered)
            count = sum(item[1] for item in gathered)
            hits = np.sum([item[2] for item in gathered], axis=0)
        mre = error_sum / count if count else math.nan
        sdr = [float(value) / count if count else math.nan for value in hits]
        self.logger.log("val_mre_mm", mre, self.current_epoch)
        self.logger.log("val_sdr", sdr, self.current_epoch)
        self._repair_dice_ema()
        self._log_selection_score(sdr)

    def _repair_dice_ema(self) -> None:
        """nnU-Net's EMA of the pseudo Dice turns NaN forever after one epoch without masks; skip such epochs."""
        log = self.logger.local_logger.my_fantastic_logging
        emas, dice = log["ema_fg_dice"], log["mean_fg_dice"][-1]
        previous = next((value for value in reversed(emas[:-1]) if not math.isnan(value)), math.nan)
        if math.isnan(dice):
            emas[-1] = previous
        elif math.isnan(previous):
            emas[-1] = dice
        else:
            emas[-1] = previous * self.selection_ema_momentum + (1 - self.selection_ema_momentum) * dice

    def _log_selection_score(self, sdr: list[float]) -> None:
        """EMA of the mean of the available parts of the *trained* tasks: pseudo Dice (if some training case has a
        mask) and SDR at ``selection_sdr_threshold_mm`` (if some has landmarks). An untrained head's score is noise."""
        log = self.logger.local_logger.my_fantastic_logging
        sdr_at = sdr[list(self.sdr_thresholds_mm).index(self.selection_sdr_threshold_mm)] if sdr else math.nan
        candidates = []
        if self.trains_segmentation:
            candidates.append(log["mean_fg_dice"][-1])
        if self.trains_landmarks:
            candidates.append(sdr_at)
        parts = [value for value in candidates if not math.isnan(value)]
        self.log_selection_score(float(np.mean(parts)) if parts else math.nan)

    def on_epoch_end(self) -> None:
        """Log the landmark metrics; ``checkpoint_best`` follows the selection score (see checkpoint_selection.py)."""
        log = self.logger.local_logger.my_fantastic_logging
        mre, sdr = log["val_mre_mm"][-1], log["val_sdr"][-1]
        self.print_to_log_file(
            f"Landmarks: MRE {mre:.3f} mm, SDR " + ", ".join(f"{t:g} mm {s:.3f}" for t, s in zip(self.sdr_thresholds_mm, sdr))
        )
        super().on_epoch_end()

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's validation of the segmentation, then the landmarks of the fold (see :meth:`validate_landmarks`).

        During nnU-Net's pass the network answers like a plain U-Net, so the segmentations and ``summary.json`` are
        exactly nnU-Net's.
        """
        network = self._unwrapped_network()
        if self.label_manager.foreground_labels:
            network.output_heatmaps = False
            try:
                super().perform_actual_validation(save_probabilities)
            finally:
                network.output_heatmaps = True
        else:  # landmark-only dataset (labels: background and ignore): nnU-Net's metrics have nothing to score
            self.print_to_log_file("No foreground labels: nnU-Net's segmentation validation skipped")
        if self.local_rank == 0:
            self.validate_landmarks()

    def validate_landmarks(self) -> dict | None:
        """Predict the landmarks of every validation case and score them against the reference landmarks.

        A second sliding-window pass (same settings as nnU-Net's validation, mirroring included) with
        :class:`~nnunet_babloss.nnunet.predictor.nnUNetLandmarkPredictor` writes ``validation/<case>.json``; the
        validation cases with a reference landmark file are scored into ``validation/landmark_evaluation/``
        (``summary.json``, ``landmarks_per_case.csv``, ``landmarks_per_landmark.csv``).

        Returns:
            The landmark summary, or ``None`` when no validation case has reference landmarks.
        """
        from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot

        from nnunet_babloss.core.evaluation import evaluate_folders
        from nnunet_babloss.nnunet.predictor import nnUNetLandmarkPredictor

        folder = Path(self.output_folder) / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        predictor = nnUNetLandmarkPredictor(
            tile_step_size=0.5, use_gaussian=True, use_mirroring=True, perform_everything_on_device=True,
            device=self.device, verbose=False, verbose_preprocessing=False, allow_tqdm=False,
            landmark_threshold=self.validation_landmark_threshold,
        )
        predictor.manual_initialization(
            self.network, self.plans_manager, self.configuration_manager, None, self.dataset_json,
            type(self).__name__, self.inference_allowed_mirroring_axes,
        )
        _, validation_keys = self.do_split()
        dataset = self.dataset_class(
            self.preprocessed_dataset_folder, validation_keys,
            folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage,
        )
        self.set_deep_supervision_enabled(False)
        self.network.eval()
        try:
            for key in dataset.identifiers:
                data, _, previous_stage, properties = dataset.load_case(key)
                data = np.array(data[:])
                if self.is_cascaded:
                    one_hot = convert_labelmap_to_one_hot(
                        previous_stage[:], self.label_manager.foreground_labels, output_dtype=data.dtype
                    )
                    data = np.vstack((data, one_hot))
                predictor.predict_preprocessed_case(torch.from_numpy(data), properties, folder / key)
        finally:
            self.set_deep_supervision_enabled(True)
        try:
            references = self._landmark_folder()
        except FileNotFoundError as error:
            self.print_to_log_file(f"Validation landmarks written to {folder}; not scored: {error}")
            return None
        scored = [key for key in dataset.identifiers if (references / f"{key}.json").is_file()]
        if not scored:
            self.print_to_log_file(f"Validation landmarks written to {folder}; no validation case has reference landmarks")
            return None
        summary = evaluate_folders(
            folder, self.dataset_json, reference_landmarks_folder=references,
            output_folder=folder / "landmark_evaluation", cases=scored,
        ).summary["landmarks"]
        sdr_text = ", ".join(f"{t} mm {'n/a' if v is None else f'{v:.3f}'}" for t, v in summary["sdr"].items())
        mre_text = "n/a" if summary["mre_mm"] is None else f"{summary['mre_mm']:.3f} mm"
        self.print_to_log_file(
            f"Validation landmarks ({len(scored)} cases): MRE {mre_text}, SDR {sdr_text}; "
            f"{summary['n_missed']} missed, {summary['n_spurious']} spurious", also_print_to_console=True,
        )
        if summary["mre_mm"] is not None:
            self.logger.log_summary("final_val/landmark_mre_mm", summary["mre_mm"])
        return summary


def _zero_like_graph(output: Tensor | list[Tensor]) -> Tensor:
    """A zero loss that keeps ``output`` (a tensor or deep-supervision list) in the autograd graph."""
    tensors = output if isinstance(output, (list, tuple)) else [output]
    return sum(tensor.float().sum() for tensor in tensors) * 0.0
