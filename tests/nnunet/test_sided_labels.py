"""Issue 16, item 1: a left-right flip swaps sided labels (``label_mirror_pairs``) together with paired landmarks.

The constructed case: a 2D sample with a right and a left lung and one contour landmark on each, paired in
``mirror_pairs`` and bridged to their own lung. A flip along the lateral axis swaps the landmark rows; before the fix it
kept the label values, so the landmark now called "left apex" sat on the voxels still labelled right lung while its
bridge named the left lung, far away: BaBLoss's expected proximity of a perfect heatmap fell to 0. Every test here
runs in milliseconds, without nnU-Net data.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_babloss.core.boundary import boundary_proximity_map, boundary_voxels
from nnunet_babloss.core.heatmaps import render_gaussian_heatmaps
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.babloss.losses import Similarity, heatmap_boundary_similarity
from nnunet_babloss.core.losses import group_organ_masks
from nnunet_babloss.core.network import SegmentationHeatmapNetwork
from nnunet_babloss.nnunet.keypoint_transforms import make_keypoint_aware
from nnunet_babloss.nnunet.predictor import label_channel_permutation, nnUNetLandmarkPredictor
from nnunet_babloss.trainers import BaBLossTrainer, HeatmapTrainer
from nnunet_babloss.nnunet.plans import PLANS_SIDE_SWAPPING_TTA_KEY

LABELS = {"background": 0, "right_lung": 1, "left_lung": 2, "heart": 3}
HEIGHT, WIDTH = 32, 48
LATERAL_AXIS = 1  # spatial axis of the (H, W) sample along which a flip exchanges left and right
RANGE_MM, SPACING_MM, SIGMA_VOX = 4.0, (1.0, 1.0), 1.5


def _block(**overrides) -> dict:
    block = {
        "names": ["R_apex", "L_apex", "heart_tip"],
        "mirror_pairs": [["R_apex", "L_apex"]],
        "bridge": {"R_apex": ["right_lung"], "L_apex": ["left_lung"], "heart_tip": ["heart"]},
        "label_mirror_pairs": [["right_lung", "left_lung"]],
    }
    block.update(overrides)
    return {"labels": dict(LABELS), "landmarks": block}


def _sample() -> dict:
    """Lungs in columns 6-17 (right) and 30-41 (left), mirror images of each other (47 - 6 = 41); the heart in the
    middle. Each landmark is on a boundary voxel of its bridged label: the apices on the lungs' top rows."""
    segmentation = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.int16)
    segmentation[0, 8:24, 6:18] = LABELS["right_lung"]
    segmentation[0, 8:24, 30:42] = LABELS["left_lung"]
    segmentation[0, 20:28, 21:27] = LABELS["heart"]
    image = torch.linspace(0, 1, WIDTH).expand(1, HEIGHT, WIDTH).clone()  # asymmetric: shows that it flipped
    keypoints = torch.tensor([[8.0, 11.0], [8.0, 36.0], [27.0, 23.0]])
    return {"image": image, "segmentation": segmentation, "keypoints": keypoints}


def _flip(spec: LandmarkSpec, sample: dict, label_value_pairs) -> dict:
    """The training pipeline's mirror step, converted as the trainer converts it, with the flip drawn."""
    transform = make_keypoint_aware(
        MirrorTransform(allowed_axes=(LATERAL_AXIS,)), spec.mirror_permutation(), (LATERAL_AXIS,),
        label_value_pairs=label_value_pairs,
    )
    torch.manual_seed(0)  # torch.rand(1) = 0.496 < 0.5: MirrorTransform flips the axis
    flipped = transform(**{key: value.clone() for key, value in sample.items()})
    assert torch.equal(flipped["image"], torch.flip(sample["image"], (2,))), "the flip was not drawn"
    return flipped


def _bridge_consistency(spec: LandmarkSpec, sample: dict) -> tuple[list[bool], torch.Tensor]:
    """Per landmark: on a boundary voxel of its bridged labels? And BaBLoss's expected proximity of a perfect heatmap
    (a Gaussian at the landmark itself), the heatmap-direction similarity the trainer optimises."""
    groups, landmark_groups = spec.bridge_groups(LABELS)
    masks = group_organ_masks(sample["segmentation"][None].long(), groups)  # (1, G, H, W)
    boundaries = boundary_voxels(masks)[0]
    on_boundary = [
        bool(boundaries[group, int(round(float(row))), int(round(float(column)))])
        for group, (row, column) in zip(landmark_groups, sample["keypoints"])
    ]
    heatmaps = render_gaussian_heatmaps(sample["keypoints"][None], (HEIGHT, WIDTH), SIGMA_VOX)
    proximity = boundary_proximity_map(masks, RANGE_MM, SPACING_MM)
    similarity = heatmap_boundary_similarity(heatmaps, proximity, landmark_groups, Similarity.EXPECTED_PROXIMITY)[0]
    return on_boundary, similarity


def test_a_flip_keeps_every_landmark_on_the_boundary_of_its_bridged_label() -> None:
    """The regression test of issue 16 item 1 (fails before the fix: no label_mirror_pairs, labels kept)."""
    spec = LandmarkSpec.from_dataset_json(_block())
    sample = _sample()
    on_boundary, before = _bridge_consistency(spec, sample)
    assert all(on_boundary) and bool((before > 0.5).all())
    flipped = _flip(spec, sample, spec.label_value_pairs(LABELS))
    on_boundary, after = _bridge_consistency(spec, flipped)
    assert all(on_boundary)
    # Flip equivariance: the mirrored sample is the same anatomy, so BaBLoss sees the same proximities.
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    # The label values swapped with the landmark rows (the right lung's voxels now read "left lung").
    assert torch.equal(
        flipped["segmentation"], _swap(torch.flip(sample["segmentation"], (2,)), LABELS["right_lung"], LABELS["left_lung"])
    )


def test_without_the_label_swap_the_flip_breaks_the_bridge() -> None:
    """What the issue measured: landmark rows swapped, label values kept, so both apices lose their lung."""
    spec = LandmarkSpec.from_dataset_json(_block())
    _, before = _bridge_consistency(spec, _sample())
    on_boundary, after = _bridge_consistency(spec, _flip(spec, _sample(), label_value_pairs=()))
    assert on_boundary == [False, False, True]
    assert float(after[:2].max()) < 1e-6 < 0.5 < float(before[:2].min())  # the Gaussian's far tail only
    assert float(after[2]) == pytest.approx(float(before[2]), abs=1e-5)  # the heart is not sided


def _swap(segmentation: torch.Tensor, left: int, right: int) -> torch.Tensor:
    swapped = segmentation.clone()
    swapped[segmentation == left], swapped[segmentation == right] = right, left
    return swapped


# ---------------------------------------------------------------------------------------------------------------
# The trainers' guard: flips off, loudly, when sided labels are not paired
# ---------------------------------------------------------------------------------------------------------------
class _Trainer:
    """The attributes the mirroring code of a heatmap trainer reads, on a preprocessed folder of 2D upright cases
    (array columns = patient left-right = patch axis 1 of a 2D patch); nnU-Net's ``__init__`` is not run."""

    def __new__(cls, trainer_class: type, folder: Path, dataset_json: dict):
        trainer = object.__new__(type(f"{trainer_class.__name__}_stub", (trainer_class,), {}))
        trainer.dataset_json = dataset_json
        trainer.landmark_spec = LandmarkSpec.from_dataset_json(dataset_json)
        trainer.dataset_class = None
        trainer.preprocessed_dataset_folder = str(folder)
        trainer.plans_manager = SimpleNamespace(transpose_forward=[0, 1, 2], plans={})
        trainer.configuration_manager = SimpleNamespace(patch_size=[32, 48])
        trainer.logged = []
        trainer.print_to_log_file = lambda *args, **kwargs: trainer.logged.append(" ".join(map(str, args)))
        return trainer


@pytest.fixture()
def upright_cases(tmp_path: Path) -> Path:
    for case in ("case_0", "case_1"):
        (tmp_path / f"{case}.b2nd").write_bytes(b"")
        properties = {"sitk_stuff": {"spacing": (1.0, 1.0), "origin": (0.0, 0.0), "direction": (1.0, 0.0, 0.0, 1.0)}}
        (tmp_path / f"{case}.pkl").write_bytes(pickle.dumps(properties))
    return tmp_path


@pytest.mark.parametrize("trainer_class", [HeatmapTrainer, BaBLossTrainer])
def test_landmark_pairs_without_label_pairs_switch_lateral_flips_off_with_a_warning(upright_cases, trainer_class) -> None:
    """Before the fix the landmark pairs alone kept the lateral flip (axes (1,)) and the labels did not swap."""
    dataset_json = _block()
    del dataset_json["landmarks"]["label_mirror_pairs"]
    trainer = _Trainer(trainer_class, upright_cases, dataset_json)
    with pytest.warns(UserWarning, match=r"left-right mirroring off.*label_mirror_pairs"):
        mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]
    assert tuple(mirror_axes) == ()
    assert trainer.inference_allowed_mirroring_axes is None
    assert trainer.plans_manager.plans[PLANS_SIDE_SWAPPING_TTA_KEY] is False
    assert any("right_lung" in line and "label_mirror_pairs" in line for line in trainer.logged)


def test_with_label_pairs_the_flip_is_trained_and_left_to_our_predictor_at_test_time(upright_cases) -> None:
    """Flips swap labels in training; nnU-Net's stock predictor cannot swap channels, so the checkpoint's axes leave
    the lateral one out and the plans tell nnUNetv2_bab_predict to add it with the swap."""
    trainer = _Trainer(BaBLossTrainer, upright_cases, _block())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]
    assert tuple(mirror_axes) == (LATERAL_AXIS,)
    assert trainer.inference_allowed_mirroring_axes is None
    assert trainer.plans_manager.plans[PLANS_SIDE_SWAPPING_TTA_KEY] is True


def test_a_bridge_that_does_not_swap_with_its_landmarks_switches_flips_off(upright_cases) -> None:
    """Label pairs declared, but the left apex is bridged to the right lung: the flip cannot be consistent."""
    dataset_json = _block(bridge={"R_apex": ["right_lung"], "L_apex": ["right_lung"]})
    trainer = _Trainer(HeatmapTrainer, upright_cases, dataset_json)
    with pytest.warns(UserWarning, match=r"'R_apex' and 'L_apex'.*bridge"):
        assert tuple(trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3]) == ()


# ---------------------------------------------------------------------------------------------------------------
# Test-time mirroring swaps the paired segmentation channels
# ---------------------------------------------------------------------------------------------------------------
def test_label_channel_permutation_follows_the_label_manager_channels() -> None:
    assert label_channel_permutation(((1, 2),), (0, 1, 2, 3)) == (0, 2, 1, 3)
    assert label_channel_permutation(((3, 5),), (0, 3, 5)) == (0, 2, 1)
    with pytest.raises(ValueError, match="channels"):
        label_channel_permutation(((1, 9),), (0, 1, 2))


def test_mirror_tta_makes_sided_segmentations_flip_equivariant_with_labels_swapped() -> None:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    spec = LandmarkSpec.from_dataset_json(_block())
    torch.manual_seed(3)
    unet = PlainConvUNet(
        1, 3, (8, 16, 32), torch.nn.Conv2d, 3, (1, 2, 2), 2, 4, (2, 2), False, torch.nn.InstanceNorm2d,
        {"affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=False,
    )
    network = SegmentationHeatmapNetwork(unet, num_heatmaps=spec.num_landmarks, output_heatmaps=True).eval()
    predictor = nnUNetLandmarkPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.network = network
    predictor.use_mirroring = True
    predictor.allowed_mirroring_axes = None  # what the checkpoint stores: the lateral flip is ours to add
    predictor.configuration_manager = SimpleNamespace(patch_size=[32, 32])
    predictor.label_manager = LabelManager(LABELS, None)
    predictor.list_of_parameters = None
    predictor.landmark_spec = spec
    predictor._mirror_channels = torch.tensor(spec.mirror_permutation())
    predictor._mirror_label_channels = torch.tensor(
        label_channel_permutation(spec.label_value_pairs(LABELS), predictor.label_manager.all_labels)
    )
    predictor._lateral_tensor_axis = 3
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    output = predictor._internal_maybe_mirror_and_predict(x)
    mirrored = predictor._internal_maybe_mirror_and_predict(torch.flip(x, (3,)))
    channels = list(predictor._mirror_label_channels) + [4 + k for k in spec.mirror_permutation()]
    torch.testing.assert_close(mirrored, torch.flip(output, (3,))[:, channels], atol=1e-5, rtol=0)
    assert not torch.allclose(mirrored[:, :4], torch.flip(output, (3,))[:, :4], atol=1e-3)
