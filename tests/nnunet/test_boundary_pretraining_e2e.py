"""End to end: BoundaryPretrainer_BabDemo pre-trains through stock nnUNetv2_train on the demo dataset, and its
checkpoint is what a HeatmapTrainer starts from under ``-pretrained_weights`` (nnU-Net's own loading code)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.ext_trainers_path import with_ext_trainer_dir
from nnunet_babloss.pretraining.trainer import BoundaryPretrainer, pretraining_landmark_spec

pytestmark = pytest.mark.e2e

TRAINER = "BoundaryPretrainer_BabDemo"


@pytest.fixture(scope="module")
def pretrained_checkpoint(train_on_demo_dataset) -> Path:
    """Pre-train fold 0 on the demo's preprocessed dataset; returns checkpoint_final.pth."""
    return train_on_demo_dataset(TRAINER) / "fold_0" / "checkpoint_final.pth"


def test_pretraining_regressed_boundary_maps_on_the_scheduled_mixing_weight(pretrained_checkpoint: Path) -> None:
    checkpoint = torch.load(pretrained_checkpoint, map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == TRAINER
    log = checkpoint["logging"]
    # DemoSchedule: 3 epochs, t = (epoch + 1) / 3.
    assert log["mixing_t"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert len(log["train_boundary_losses"]) == 3 and all(math.isfinite(value) for value in log["train_boundary_losses"])
    assert all(0.0 <= value <= 1.0 for value in log["val_boundary_mae"])
    # One heatmap channel per landmark of the dataset.json block: exactly HeatmapTrainer's head.
    assert checkpoint["network_weights"]["heatmap_head.3.weight"].shape[0] == 6
    plans = json.loads((pretrained_checkpoint.parents[1] / "plans.json").read_text())
    assert plans["bab_landmarks"]["bridge"]["bar_left_end"] == ["bar"]
    text = "\n".join(path.read_text() for path in pretrained_checkpoint.parent.glob("training_log_*.txt"))
    assert "6 of 6 heatmap channels regress" in text
    assert text.count("Boundary maps: validation MAE") == 3
    assert "skipping nnU-Net's segmentation validation" in text


def test_finetuning_starts_from_the_pretrained_weights(pretrained_checkpoint: Path, nnunet_paths: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    monkeypatch.setenv("nnUNet_extTrainer", with_ext_trainer_dir(os.environ)["nnUNet_extTrainer"])
    trainer = get_trainer_from_args("987", "2d", 0, "HeatmapTrainer_BabDemo", device=torch.device("cpu"))
    trainer.initialize()
    before = {key: value.clone() for key, value in trainer.network.state_dict().items()}
    # Exactly what `nnUNetv2_train ... -pretrained_weights CHECKPOINT` runs before training.
    maybe_load_checkpoint(trainer, False, False, str(pretrained_checkpoint))
    after = trainer.network.state_dict()
    pretrained = torch.load(pretrained_checkpoint, map_location="cpu", weights_only=False)["network_weights"]

    transferred = [key for key in after if ".seg_layers." not in key]
    assert any(key.startswith("encoder.") for key in transferred)
    assert any(key.startswith("heatmap_head.") for key in transferred)
    for key in transferred:
        assert torch.equal(after[key], pretrained[key]), key
    first_conv = "encoder.stages.0.0.convs.0.conv.weight"
    assert not torch.equal(before[first_conv], after[first_conv])  # the load replaced the fresh initialisation
    for key in (key for key in after if ".seg_layers." in key):
        assert torch.equal(after[key], before[key]), key  # nnU-Net skips the segmentation outputs by design


def _pretrainer(work_dir: Path) -> BoundaryPretrainer:
    dataset = "Dataset987_BabSynthetic"
    plans = json.loads((work_dir / "nnUNet_preprocessed" / dataset / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((work_dir / "nnUNet_preprocessed" / dataset / "dataset.json").read_text())
    return BoundaryPretrainer(plans, "2d", 0, dataset_json, torch.device("cpu"))


def test_each_channel_regresses_its_structures_boundary_and_ignore_patches_are_left_out(nnunet_paths: Path) -> None:
    trainer = _pretrainer(nnunet_paths)
    labels = torch.zeros(2, 1, 32, 40, dtype=torch.int16)
    labels[:, :, 4:14, 8:30] = 1  # disc
    labels[:, :, 20:26, 5:35] = 2  # bar
    labels[1, :, 0, 0] = 3  # one ignore voxel: the boundary next to unknown voxels is unknown
    targets, valid = trainer.boundary_targets([labels, labels[:, :, ::2, ::2]])
    spacing, range_mm = trainer.patch_spacing_mm, trainer.landmark_spec.boundary_range_mm
    disc = boundary_proximity_map(labels == 1, range_mm, spacing)
    bar = boundary_proximity_map(labels == 2, range_mm, spacing)
    for channel, name in enumerate(trainer.landmark_spec.names):
        expected = disc if name.startswith("disc") else bar
        assert torch.equal(targets[:, channel], expected[:, 0]), name
    assert valid.tolist() == [[True] * 6, [False] * 6]


def test_a_dataset_without_bridged_landmarks_is_refused_with_what_to_add() -> None:
    labels = {"background": 0, "lung": 1}
    with pytest.raises(ValueError, match="no 'landmarks' block.*Copy the 'landmarks' block"):
        pretraining_landmark_spec({"labels": labels}, "Dataset001_Masks")
    with pytest.raises(ValueError, match="no 'bridge' entry"):
        pretraining_landmark_spec({"labels": labels, "landmarks": {"names": ["apex"]}}, "Dataset001_Masks")
    spec = pretraining_landmark_spec({"labels": labels, "landmarks": {"names": ["apex"], "bridge": {"apex": ["lung"]}}})
    assert spec.bridge_map() == {"apex": ("lung",)}
