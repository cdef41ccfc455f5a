"""The GazeSup network under nnU-Net's label manager, and the trainer's class-level contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from torch import nn

import nnunet_babloss
from nnunet_babloss.gazesup.levels import GazeLevelSpec
from nnunet_babloss.gazesup.losses import GazeSupLoss, mean_of_levels_logits
from nnunet_babloss.gazesup.network import GazeLevelNetwork


def _network(levels: int, deep_supervision: bool) -> GazeLevelNetwork:
    unet = PlainConvUNet(
        input_channels=1, n_stages=3, features_per_stage=[4, 8, 16], conv_op=nn.Conv2d, kernel_sizes=3,
        strides=[1, 2, 2], n_conv_per_stage=1, num_classes=levels, n_conv_per_stage_decoder=1, conv_bias=True,
        norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        deep_supervision=deep_supervision,
    )
    return GazeLevelNetwork(unet)


def test_training_output_is_per_level_and_inference_output_is_the_mean_of_levels() -> None:
    torch.manual_seed(0)
    network = _network(levels=2, deep_supervision=True).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        per_level = network(x)
        assert isinstance(per_level, list) and per_level[0].shape == (1, 2, 32, 32)
        network.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled(False) does
        merged = network(x)
    assert merged.shape == (1, 2, 32, 32)
    expected = torch.sigmoid(per_level[0]).mean(dim=1)
    torch.testing.assert_close(torch.sigmoid(merged[:, 0]), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged[:, 0], merged[:, 1])
    # State-dict keys are those of the plain U-Net (checkpoints interchangeable).
    assert all(key.startswith(("encoder.", "decoder.")) for key in network.state_dict())


def test_stock_label_manager_writes_label_L_where_the_mean_of_levels_exceeds_one_half() -> None:
    spec = GazeLevelSpec("disc", (0.3, 0.5))
    block = spec.labels_block()
    manager = LabelManager(block["labels"], block["regions_class_order"])
    assert manager.has_regions and manager.num_segmentation_heads == 2
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = torch.linspace(-6, 6, 16).reshape(4, 4)
    logits[0, 1] = logits[0, 0] - 2.0  # the stricter level is less confident, as nested targets teach it
    merged = mean_of_levels_logits(logits)[0]
    segmentation = manager.convert_logits_to_segmentation(merged)
    mean_probability = torch.sigmoid(logits[0]).mean(dim=0)
    assert set(segmentation.unique().tolist()) == {0, 2}
    torch.testing.assert_close((segmentation == 2), mean_probability > 0.5)
    # Per-level logits (the training output) would give the level map 0/1/2 instead.
    assert set(manager.convert_logits_to_segmentation(logits[0]).unique().tolist()) == {0, 1, 2}


def test_trainer_is_exported_for_nnunet_and_keeps_its_settings_as_class_attributes() -> None:
    from nnunet_babloss.trainers import GazeSupTrainer, GazeSupTrainer_BabDemo

    assert GazeSupTrainer.consistency_weight == 3.0
    assert GazeSupTrainer_BabDemo.schedule_num_epochs == 3
    assert issubclass(GazeSupTrainer_BabDemo, GazeSupTrainer)
    shim = Path(nnunet_babloss.__file__).parent / "ext_trainers" / "babloss_trainers.py"
    spec = importlib.util.spec_from_file_location("babloss_trainers_probe", shim)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    assert module.GazeSupTrainer is GazeSupTrainer and module.GazeSupTrainer_BabDemo is GazeSupTrainer_BabDemo
    with pytest.raises(ValueError):
        GazeSupLoss(-0.5)
