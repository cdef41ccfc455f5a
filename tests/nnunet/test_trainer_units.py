"""Trainer internals on the demo's preprocessed data: loader keypoints, partial-label masking, gradient routing."""

from __future__ import annotations

import dataclasses
import math
import json

import pytest
import torch

from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.babloss.losses import SegmentationGate
from nnunet_babloss.trainers import BaBLossTrainer, HeatmapTrainer
from nnunet_babloss.nnunet.plans import landmark_spec_from_plans
from nnunet_babloss.nnunet.mirroring import nnUNetTrainerNoLateralMirroring

pytestmark = pytest.mark.e2e


def _trainer(cls, work_dir, **attributes):
    dataset = "Dataset987_BabSynthetic"
    plans = json.loads((work_dir / "nnUNet_preprocessed" / dataset / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # nnUNetTrainer.__init__ pops this key (set by run_training)
    dataset_json = json.loads((work_dir / "nnUNet_preprocessed" / dataset / "dataset.json").read_text())
    variant = type(f"{cls.__name__}_test", (cls,), {"schedule_iterations_per_epoch": 1, **attributes})
    trainer = variant(plans, "2d", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    return trainer


def test_plans_round_trip_the_landmark_spec(nnunet_paths) -> None:
    trainer = _trainer(HeatmapTrainer, nnunet_paths)
    spec = landmark_spec_from_plans(json.loads(json.dumps(trainer.plans_manager.plans)))
    assert spec == trainer.landmark_spec


def test_loader_keypoints_lie_on_the_boundaries_in_the_patch(nnunet_paths) -> None:
    """Without augmentation, keypoints of cases with both annotations land on their organ's boundary."""
    trainer = _trainer(HeatmapTrainer, nnunet_paths)
    trainer.get_training_transforms = staticmethod(lambda *args, **kwargs: trainer.get_validation_transforms(None))
    trainer.enable_deep_supervision = False
    train_loader, _ = trainer.get_dataloaders()
    loader = train_loader.data_loader
    annotations = trainer.dataset_json["annotations"]
    checked = 0
    for _ in range(12):
        batch = loader.generate_train_batch()
        for sample, key in enumerate(batch["keys"]):
            if annotations[key] != "both":
                continue
            labels = batch["target"][sample, 0]
            for landmark, point in enumerate(batch["keypoints"][sample]):
                if torch.isnan(point).any() or ((point < 0) | (point > torch.tensor(labels.shape) - 1)).any():
                    continue
                organ = 1 if trainer.landmark_spec.names[landmark].startswith("disc") else 2
                proximity = boundary_proximity_map((labels == organ)[None, None], 2.0, trainer.patch_spacing_mm)[0, 0]
                row, col = (int(round(float(value))) for value in point)
                assert proximity[row, col] >= 0.45, (key, landmark)  # within ~1 mm of the boundary
                checked += 1
        assert batch["has_mask"].tolist() == [annotations[key] != "landmark_only" for key in batch["keys"]]
        assert batch["has_landmarks"].tolist() == [annotations[key] != "mask_only" for key in batch["keys"]]
    assert checked > 0


def test_mask_less_batch_trains_and_gradients_reach_the_intended_heads(nnunet_paths) -> None:
    trainer = _trainer(BaBLossTrainer, nnunet_paths, heatmap_loss_weight=0.0, bab_weight=1.0)
    network = trainer._unwrapped_network()
    train_loader, _ = trainer.get_dataloaders()
    batch = next(train_loader)
    while not batch["has_mask"].any():  # the heatmap direction needs a sample with a mask
        batch = next(train_loader)
    data, target, keypoints, has_mask, has_landmarks = trainer._batch_to_device(batch)

    def gradients(**directions) -> tuple[float, float]:
        trainer.network.zero_grad(set_to_none=True)
        for name, value in directions.items():
            setattr(trainer, name, value)
        losses = trainer.compute_losses(trainer.network(data), target, keypoints, has_mask, has_landmarks)
        losses["bab"].backward()
        assert torch.isfinite(losses["total"])
        seg = network.decoder.seg_layers[-1].weight.grad
        head = network.heatmap_head[-1].weight.grad
        return (0.0 if seg is None else seg.abs().sum().item(), 0.0 if head is None else head.abs().sum().item())

    # Heatmap direction only (mask cases): gradient reaches the heatmap head, not the segmentation layer.
    seg_grad, head_grad = gradients(bab_heatmap_direction=True, bab_segmentation_direction=False)
    assert head_grad > 0 and seg_grad == 0
    # Segmentation direction only (landmark cases): the reverse. Every sample gets a landmark in the patch centre;
    # the soft-boundary gate has a gradient even before any organ is predicted (the paper's probability gate has
    # none until the hard mask exists, see tests/babloss/test_losses.py).
    has_landmarks[:] = True
    keypoints[:] = torch.tensor(data.shape[2:], dtype=keypoints.dtype) / 2
    seg_grad, head_grad = gradients(
        bab_heatmap_direction=False, bab_segmentation_direction=True, bab_segmentation_gate=SegmentationGate.SOFT_BOUNDARY
    )
    assert seg_grad > 0 and head_grad == 0
    # A batch without any mask still trains: the segmentation loss is zero, the total finite.
    has_mask[:] = False
    target = [torch.full_like(level, trainer.label_manager.ignore_label) for level in target]
    losses = trainer.compute_losses(trainer.network(data), target, keypoints, has_mask, has_landmarks)
    assert torch.isfinite(losses["total"])
    losses["total"].backward()


def test_heatmap_loss_kind_selects_the_loss_and_rejects_unknown_kinds(nnunet_paths) -> None:
    trainer = _trainer(HeatmapTrainer, nnunet_paths)
    train_loader, _ = trainer.get_dataloaders()
    batch = next(train_loader)
    while not batch["has_landmarks"].any():  # a heatmap loss needs a sample with landmarks
        batch = next(train_loader)
    data, target, keypoints, has_mask, has_landmarks = trainer._batch_to_device(batch)
    with torch.no_grad():
        output = trainer.network(data)
        values = {}
        for kind in ("mse", "bce"):
            trainer.heatmap_loss_kind = kind
            values[kind] = trainer.compute_losses(output, target, keypoints, has_mask, has_landmarks)["heatmap"].item()
    assert values["mse"] > 0 and values["bce"] > 0 and values["mse"] != values["bce"]
    with pytest.raises(ValueError, match="heatmap_loss_kind"):
        _trainer(HeatmapTrainer, nnunet_paths, heatmap_loss_kind="l1")
    trainer.heatmap_loss_kind = "l1"  # changed after __init__: still an error, never a silent fallback
    with pytest.raises(ValueError, match="heatmap_loss_kind"):
        trainer.compute_losses(output, target, keypoints, has_mask, has_landmarks)


@pytest.mark.parametrize("only_lateral", [True, False])
@pytest.mark.parametrize("drop_pairs", [False, True])
def test_lateral_mirroring_is_off_exactly_when_sided_landmarks_have_no_pairs(nnunet_paths, drop_pairs, only_lateral) -> None:
    """The demo's landmarks are paired. By default only the left-right axis (columns) flips, and only with pairs; with
    ``mirror_only_lateral = False`` every axis mirrors except the left-right one without pairs. Training and the
    inference axes stored in the checkpoint agree."""
    trainer = _trainer(HeatmapTrainer, nnunet_paths, mirror_only_lateral=only_lateral)
    if drop_pairs:
        trainer.landmark_spec = dataclasses.replace(trainer.landmark_spec, mirror_pairs=())
    mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]
    expected = {(False, True): (1,), (True, True): (), (False, False): (0, 1), (True, False): (0,)}[(drop_pairs, only_lateral)]
    assert tuple(mirror_axes) == expected
    assert tuple(trainer.inference_allowed_mirroring_axes or ()) == expected
    if not expected:  # nnU-Net's predictors read None as "no mirroring" (and fail on an empty tuple)
        assert trainer.inference_allowed_mirroring_axes is None


def test_landmark_augmentation_is_bounded_and_overridable(nnunet_paths) -> None:
    """Default rotation +-10 deg and scaling 0.9-1.1 reach the SpatialTransform; ``None`` restores nnU-Net's."""
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_babloss.nnunet.upright_augmentation import walk_transforms

    for rotation_deg, scaling, expected_rotation, expected_scaling in (
        (10.0, (0.9, 1.1), math.radians(10), (0.9, 1.1)),
        (None, None, math.pi, (0.7, 1.4)),
    ):
        trainer = _trainer(HeatmapTrainer, nnunet_paths, landmark_rotation_deg=rotation_deg, landmark_scaling=scaling)
        rotation, dummy_2d, initial, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert rotation[1] == pytest.approx(expected_rotation)
        transforms = trainer.get_training_transforms_with_landmark_scaling(
            trainer.configuration_manager.patch_size, rotation, None, mirror_axes, dummy_2d,
        )
        spatial = [t for t in walk_transforms(transforms) if isinstance(t, SpatialTransform)]
        assert len(spatial) == 1 and tuple(spatial[0].scaling) == pytest.approx(expected_scaling)
        assert tuple(spatial[0].rotation) == pytest.approx((-expected_rotation, expected_rotation))


def test_upright_segmentation_trainer_has_the_landmark_trainers_augmentation(nnunet_paths) -> None:
    """The JSRT study's segmentation-only reference must differ from the landmark trainers only by the landmark
    task: rotation +-10 deg, scaling 0.9-1.1 in its SpatialTransform, no flips in training nor at test time."""
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_babloss.nnunet.upright_augmentation import nnUNetTrainerUprightAugmentation, walk_transforms

    trainer = _trainer(nnUNetTrainerUprightAugmentation, nnunet_paths)
    landmark_trainer = _trainer(HeatmapTrainer, nnunet_paths, mirror_only_lateral=True)
    landmark_trainer.landmark_spec = dataclasses.replace(landmark_trainer.landmark_spec, mirror_pairs=())
    rotation, dummy_2d, initial, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    landmark_rotation, _, landmark_initial, landmark_axes = (
        landmark_trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    )
    assert (rotation, list(initial), tuple(mirror_axes)) == (landmark_rotation, list(landmark_initial), tuple(landmark_axes))
    assert rotation[1] == pytest.approx(math.radians(10)) and tuple(mirror_axes) == ()
    assert trainer.inference_allowed_mirroring_axes is None
    transforms = trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None, mirror_axes, dummy_2d)
    spatial = [t for t in walk_transforms(transforms) if isinstance(t, SpatialTransform)]
    assert len(spatial) == 1 and tuple(spatial[0].scaling) == pytest.approx((0.9, 1.1))


def test_stock_trainer_without_lateral_mirroring_keeps_the_other_axes(nnunet_paths) -> None:
    trainer = _trainer(nnUNetTrainerNoLateralMirroring, nnunet_paths)
    assert tuple(trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]) == (0,)
