"""``DenseSegTrainer``: DenseSeg's dense image-to-shape representation as an nnU-Net trainer (2D only).

The second head of the network predicts, per structure, a ``uv`` map: each pixel's coordinate in the canonical frame
of the structure's mean shape (see :mod:`nnunet_babloss.denseseg.uvmaps`). Landmarks are read out by nearest-uv soft matching
inside the predicted structure, so landmarks defined after training can be queried by their canonical ``uv``.

What comes from :class:`HeatmapTrainer`: landmark loading, landmark-centred patches, exact keypoint augmentation,
partial labels (mask-only and landmark-only cases), validation MRE/SDR and checkpoint selection, the landmark
validation pass through :class:`~nnunet_babloss.nnunet.predictor.nnUNetLandmarkPredictor`.

What differs:

* **Structures**: a landmark bridged (``dataset.json`` ``landmarks.bridge``) to exactly one label belongs to that
  label's structure; other landmarks are not predicted (written as ``null``).
* **Template**: the mean shape of every structure is computed once from the landmarks of *all* training cases
  (``imagesTr``; fold-independent, so fold ensembles share one canonical frame; test cases are never seen) in the
  preprocessed patch frame, and stored in the plans under ``"bab_denseseg"`` for inference.
* **Ground-truth uv maps** are rendered on the fly from the *augmented* keypoints of each patch (so they follow the
  augmentation exactly) and supervised inside the structure: its reference mask where the case has one, united with
  the filled polygon of its landmarks where they form a simple polygon (landmark-only cases get a dense target too).
* **Losses** (the paper's weights 0.1333 BCE : 0.6667 uv L1 (mask and landmarks averaged) : 0.2 TV, rescaled so
  nnU-Net's own segmentation loss keeps weight 1): ``seg + 2.5 L1_region + 2.5 L1_landmarks + 1.5 TV``.
* **No mirroring** (training or test time): uv maps are not mirror-equivariant (a flipped structure has a flipped
  parametrisation), and the data it targets (chest X-rays, hands) has a fixed orientation.
* **2D only**: a 3D configuration, or 2D training on 3D volumes, is refused with a ``ValueError``.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import Tensor, nn

from nnunet_babloss.denseseg.losses import landmark_uv_l1, masked_uv_l1, uv_total_variation
from nnunet_babloss.denseseg.network import SegmentationUVNetwork, SegmentationUVOutput
from nnunet_babloss.denseseg.uvmaps import (
    DenseSegTemplate,
    build_structure_template,
    dense_uv_map,
    denseseg_structures,
    dilate_region,
    polygon_mask,
    soft_match_uv,
)
from nnunet_babloss.nnunet.heatmap_trainer import HeatmapTrainer
from nnunet_babloss.nnunet.landmark_loader import preprocessed_keypoints
from nnunet_babloss.nnunet.plans import (
    PLANS_DENSESEG_KEY,
    denseseg_block_from_plans,
    labels_from_plans,
    landmark_spec_from_plans,
    store_side_swapping_tta,
)

__all__ = ["DenseSegTrainer", "denseseg_template_from_plans", "structures_from_plans"]


def structures_from_plans(plans: dict) -> list[tuple[str, int, tuple[int, ...]]]:
    """The DenseSeg structures ``(label name, value, landmark rows)`` implied by the landmark spec in the plans."""
    spec = landmark_spec_from_plans(plans)
    return denseseg_structures(spec, labels_from_plans(plans))


def denseseg_template_from_plans(plans: dict) -> DenseSegTemplate | None:
    """The DenseSeg template stored in the plans by :class:`DenseSegTrainer`, or ``None`` for other models."""
    block = denseseg_block_from_plans(plans)
    return None if block is None else DenseSegTemplate.from_json(block)


class DenseSegTrainer(HeatmapTrainer):
    """Segmentation + per-structure uv maps (DenseSeg) on heterogeneous partial labels; 2D configurations only."""

    segmentation_loss_weight: float = 1.0
    uv_region_loss_weight: float = 2.5
    uv_landmark_loss_weight: float = 2.5
    uv_total_variation_weight: float = 1.5
    uv_polygon_region: bool = True
    match_k: int = 5
    match_tau: float = 1e-4
    match_margin_mm: float = 0.0

    def __init__(
        self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        patch_size = list(self.configuration_manager.patch_size)
        if len(patch_size) != 2:
            raise ValueError(
                f"{type(self).__name__} is defined for 2D configurations only (DenseSeg's uv maps parametrise 2D "
                f"shapes); configuration {configuration!r} has a {len(patch_size)}D patch {patch_size}. Train the "
                "'2d' configuration of a 2D-image dataset, or use HeatmapTrainer/BaBLossTrainer for 3D."
            )
        self.structures = denseseg_structures(self.landmark_spec, dataset_json["labels"])
        self.denseseg_template: DenseSegTemplate | None = denseseg_template_from_plans(self.plans_manager.plans)
        landmark_structure = np.full(self.landmark_spec.num_landmarks, -1, dtype=np.int64)
        for index, (_, _, rows) in enumerate(self.structures):
            landmark_structure[list(rows)] = index
        self.landmark_structure = torch.from_numpy(landmark_structure)

    # ------------------------------------------------------------------ network
    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        """nnU-Net's planned U-Net with a uv head (uv output off: stock-predictor compatible)."""
        unet = nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )
        network = SegmentationUVNetwork(unet, len(structures_from_plans(plans_manager.plans)))
        network.initialize_uv_bias()
        return network

    def initialize(self) -> None:
        if not self.was_initialized:
            self.denseseg_template = self.build_template()
            # Saved with the plans by on_train_start: the predictor rebuilds the read-out from it.
            self.plans_manager.plans[PLANS_DENSESEG_KEY] = self.denseseg_template.to_json()
            super().initialize()

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        """nnU-Net's settings without mirroring (training and test time): uv maps are not mirror-equivariant."""
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        store_side_swapping_tta(self.plans_manager.plans, False)
        return rotation, dummy_2d, initial_patch_size, None

    # ------------------------------------------------------------------ template
    def build_template(self) -> DenseSegTemplate:
        """Mean shapes of the structures from every training case with landmarks, in the patch frame (mm).

        Raises:
            ValueError: a case is a 3D volume, or a structure has no case with >= 2 of its landmarks.
            FileNotFoundError: no landmark folder.
        """
        dataset_class = self.dataset_class or infer_dataset_class(self.preprocessed_dataset_folder)
        dataset = dataset_class(self.preprocessed_dataset_folder)
        identifiers = sorted(dataset.identifiers)
        landmarks = self.load_world_landmarks(identifiers)
        spacing = np.asarray(self.patch_spacing_mm, dtype=np.float64)
        shapes: dict[int, list[np.ndarray]] = {index: [] for index in range(len(self.structures))}
        for case in sorted(landmarks):
            data, _, _, properties = dataset.load_case(case)
            shape = tuple(data.shape[1:])
            if shape[0] != 1:
                raise ValueError(
                    f"{type(self).__name__} needs 2D images; case {case!r} is a volume with preprocessed shape {shape}"
                )
            points = preprocessed_keypoints(landmarks[case], properties, list(self.plans_manager.transpose_forward), shape)
            points_mm = points[:, 1:] * spacing
            for index, (_, _, rows) in enumerate(self.structures):
                structure_points = points_mm[list(rows)]
                if (~np.isnan(structure_points).any(1)).sum() >= 2:
                    shapes[index].append(structure_points)
        templates = []
        for index, (label_name, value, rows) in enumerate(self.structures):
            if not shapes[index]:
                raise ValueError(f"structure {label_name!r}: no training case has >= 2 of its landmarks")
            templates.append(
                build_structure_template(label_name, value, [self.landmark_spec.names[row] for row in rows], rows, shapes[index])
            )
        self.print_to_log_file(
            f"DenseSeg template from {len(landmarks)} cases with landmarks: "
            + ", ".join(f"{t.label_name} ({t.num_landmarks} landmarks, {len(shapes[i])} shapes)" for i, t in enumerate(templates))
        )
        return DenseSegTemplate(
            structures=tuple(templates), spacing_mm=tuple(float(value) for value in spacing),  # type: ignore[arg-type]
            match_k=self.match_k, match_tau=self.match_tau, match_margin_mm=self.match_margin_mm,
        )

    def _require_template(self) -> DenseSegTemplate:
        if self.denseseg_template is None:
            raise RuntimeError("the DenseSeg template is built in initialize(); call it first")
        return self.denseseg_template

    # ------------------------------------------------------------------ targets and losses
    def uv_targets(
        self, keypoints: Tensor, labels: Tensor, has_mask: Tensor, has_landmarks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Ground-truth uv maps of a batch and where they are supervised.

        Args:
            keypoints: ``(B, K, 2)`` landmark positions in the patch (NaN = absent).
            labels: ``(B, 1, H, W)`` full-resolution reference labels (ignore label for mask-less samples).
            has_mask, has_landmarks: ``(B,)`` bool.

        Returns:
            ``(uv (B, 2S, H, W), uv_region (B, S, H, W), structure_region (B, S, H, W))``: the rendered maps,
            where they are supervised (structure region and the map defined), and the structure region (reference
            mask united with the landmark polygon) used by the total variation.
        """
        template = self._require_template()
        batch, height, width = labels.shape[0], labels.shape[-2], labels.shape[-1]
        device = labels.device
        count = len(template.structures)
        uv = torch.zeros((batch, 2 * count, height, width), device=device)
        defined = torch.zeros((batch, count), dtype=torch.bool, device=device)
        region = torch.zeros((batch, count, height, width), dtype=torch.bool, device=device)
        points_all = keypoints.detach().double().cpu().numpy()
        for index, structure in enumerate(template.structures):
            region[:, index] = (labels[:, 0] == structure.label_value) & has_mask[:, None, None]
            for sample in range(batch):
                if not bool(has_landmarks[sample]):
                    continue
                points = points_all[sample, list(structure.landmark_indices)]
                if (~np.isnan(points).any(1)).sum() < 2:
                    continue
                if self.uv_polygon_region and structure.polygon_order:
                    polygon = points[list(structure.polygon_order)]
                    if np.isfinite(polygon).all():
                        region[sample, index] |= polygon_mask(polygon, (height, width), device=device)
                # Rendered only where it is supervised (the structure region), which saves most of the cost.
                field = dense_uv_map(points, structure, self.patch_spacing_mm, (height, width), device, region[sample, index])
                if field is None:
                    continue
                uv[sample, 2 * index : 2 * index + 2] = field
                defined[sample, index] = True
        return uv, region & defined[:, :, None, None], region

    def compute_losses(
        self, output: SegmentationUVOutput, target, keypoints: Tensor, has_mask: Tensor, has_landmarks: Tensor,
        *, slice_offsets_vox: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Segmentation loss plus the DenseSeg uv losses; ``heatmap`` holds the (weighted) uv part for logging.

        uv maps describe the structures of the slice itself: landmarks on other slices (``slice_offsets_vox``, see
        :meth:`HeatmapTrainer.compute_losses`) take no part.
        """
        template = self._require_template()
        keypoints = self.keypoints_on_patch(keypoints, slice_offsets_vox)
        segmentation_loss = self.loss(output.segmentation, target)
        labels = target[0] if isinstance(target, list) else target
        predicted = output.uv.float()
        reference, uv_region, structure_region = self.uv_targets(keypoints, labels, has_mask, has_landmarks)
        shape = torch.tensor(predicted.shape[2:], device=keypoints.device, dtype=keypoints.dtype)
        inside = ((keypoints >= -0.5) & (keypoints <= shape - 0.5)).all(-1)
        valid = self.landmark_validity(keypoints, has_landmarks) & inside
        canonical = torch.zeros((self.landmark_spec.num_landmarks, 2), device=predicted.device)
        for structure in template.structures:
            canonical[list(structure.landmark_indices)] = torch.as_tensor(structure.canonical_uv, dtype=torch.float32, device=predicted.device)
        region_loss = masked_uv_l1(predicted, reference, uv_region)
        landmark_loss = landmark_uv_l1(predicted, keypoints, self.landmark_structure.to(predicted.device), canonical, valid)
        total_variation = uv_total_variation(predicted, structure_region)
        uv_loss = (
            self.uv_region_loss_weight * region_loss
            + self.uv_landmark_loss_weight * landmark_loss
            + self.uv_total_variation_weight * total_variation
        )
        total = self.segmentation_loss_weight * segmentation_loss + uv_loss
        return {"total": total, "heatmap": uv_loss, "bab": predicted.sum() * 0.0}

    # ------------------------------------------------------------------ validation
    def landmark_error_counts(self, output: SegmentationUVOutput, keypoints: Tensor, has_landmarks: Tensor) -> dict:
        """Radial errors of landmarks read out of the predicted uv maps inside the predicted structures."""
        template = self._require_template()
        segmentation = output.segmentation[0] if isinstance(output.segmentation, list) else output.segmentation
        predicted_labels = segmentation.argmax(1)
        uv = output.uv.float()
        positions = torch.full(keypoints.shape, float("nan"), device=keypoints.device, dtype=keypoints.dtype)
        radius = [round(self.match_margin_mm / spacing) for spacing in self.patch_spacing_mm]
        for index, structure in enumerate(template.structures):
            regions = dilate_region(predicted_labels == structure.label_value, radius)
            queries = torch.as_tensor(structure.canonical_uv, dtype=torch.float32, device=uv.device)
            for sample in range(uv.shape[0]):
                found, _ = soft_match_uv(uv[sample, 2 * index : 2 * index + 2], regions[sample], queries, self.match_k, self.match_tau)
                positions[sample, list(structure.landmark_indices)] = found.to(positions.dtype)
        # A structure not predicted in the patch yields no position: those landmarks are not scored here.
        keypoints = torch.where(torch.isnan(positions), torch.full_like(keypoints, float("nan")), keypoints)
        return self._radial_error_counts(positions, tuple(uv.shape[2:]), keypoints, has_landmarks)
