"""The two-head network wraps nnU-Net's U-Net without changing it; stock trainer lookup finds our trainers."""

from __future__ import annotations

import pickle
import subprocess
import sys

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from nnunet_babloss.ext_trainers_path import EXT_TRAINER_DIR
from nnunet_babloss.core.network import SegmentationHeatmapNetwork, SegmentationHeatmapOutput


def _unet(deep_supervision: bool) -> PlainConvUNet:
    return PlainConvUNet(
        1, 3, (8, 16, 32), torch.nn.Conv2d, 3, (1, 2, 2), 2, 3, (2, 2), False, torch.nn.InstanceNorm2d,
        {"affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=deep_supervision,
    )


def test_without_heatmaps_the_output_equals_the_plain_unet() -> None:
    torch.manual_seed(0)
    unet = _unet(deep_supervision=False).eval()
    reference = unet.state_dict()
    network = SegmentationHeatmapNetwork(unet, num_heatmaps=4).eval()
    # Same keys for the U-Net part: nnU-Net checkpoints and -pretrained_weights keep working.
    assert set(reference) <= set(network.state_dict())
    assert {key for key in network.state_dict() if key not in reference} == {
        key for key in network.state_dict() if key.startswith("heatmap_head.")
    }
    x = torch.rand(2, 1, 32, 32)
    plain = _unet(deep_supervision=False).eval()
    plain.load_state_dict(reference)
    assert torch.equal(network(x), plain(x))


def test_with_heatmaps_the_output_is_named_and_full_resolution() -> None:
    network = SegmentationHeatmapNetwork(_unet(deep_supervision=True), num_heatmaps=5, output_heatmaps=True)
    output = network(torch.rand(2, 1, 32, 32))
    assert isinstance(output, SegmentationHeatmapOutput)
    assert [tuple(level.shape) for level in output.segmentation] == [(2, 3, 32, 32), (2, 3, 16, 16)]  # 3 stages: 2 decoder outputs
    assert output.heatmap_logits.shape == (2, 5, 32, 32)
    loss = output.heatmap_logits.sum()
    loss.backward()
    assert network.heatmap_head[0].weight.grad is not None and network.encoder.stages[0][0].convs[0].conv.weight.grad is not None


def test_network_pickles() -> None:
    network = SegmentationHeatmapNetwork(_unet(deep_supervision=False), num_heatmaps=2, output_heatmaps=True)
    restored = pickle.loads(pickle.dumps(network))
    assert restored(torch.rand(1, 1, 32, 32)).heatmap_logits.shape == (1, 2, 32, 32)


def test_stock_trainer_lookup_finds_our_trainer_through_the_shim() -> None:
    code = (
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find;"
        "import pickle; cls = find('nnUNetTrainer_BabDemo');"
        "print(cls.__module__); assert pickle.loads(pickle.dumps(cls)) is cls"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**__import__("os").environ, "nnUNet_extTrainer": str(EXT_TRAINER_DIR)},
    )
    assert completed.returncode == 0, completed.stderr
    # The class comes from the installed package, not from a top-level copy of the shim module.
    assert completed.stdout.strip().splitlines()[-1] == "nnunet_babloss.trainers"


def test_trainer_dir_command_prints_the_shim_folder() -> None:
    from nnunet_babloss.cli.trainer_dir import main

    assert main([]) == 0
