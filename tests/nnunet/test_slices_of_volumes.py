"""2D configurations on 3D volumes (issue 16, item 2): a landmark on another slice is annotated, not missing.

The loader runs for real on an in-memory volume (no nnU-Net run); the trainer's target and loss code runs on a shell
holding only the attributes it reads. Prediction (the slice stack decoded in 3D) is in ``test_predictor.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_babloss.core.heatmaps import through_plane_factors
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.core.network import SegmentationHeatmapOutput
from nnunet_babloss.nnunet.keypoint_transforms import KEYPOINT_SLICE_OFFSETS_KEY, KeypointMirrorTransform
from nnunet_babloss.nnunet.landmark_loader import LandmarkDataLoader
from nnunet_babloss.trainers import BaBLossTrainer, HeatmapTrainer

SLICES, ROWS, COLUMNS = 8, 12, 12
SPACING_XYZ = (1.0, 1.0, 2.5)
# Voxel (slice, row, column) of each landmark; "c" is not annotated in the file (NaN).
ON_SLICE_2 = (2.0, 4.0, 5.0)
ON_SLICE_6 = (6.0, 7.0, 3.0)


class _Volume:
    """One preprocessed 3D case whose image value is its slice index (so a 2D sample tells its slice)."""

    identifiers = ["case"]

    def load_case(self, key: str):
        data = np.broadcast_to(np.arange(SLICES, dtype=np.float32)[:, None, None], (SLICES, ROWS, COLUMNS))[None].copy()
        seg = np.zeros((1, SLICES, ROWS, COLUMNS), dtype=np.int16)
        shape = [SLICES, ROWS, COLUMNS]
        properties = {
            "sitk_stuff": {"spacing": SPACING_XYZ, "origin": (0.0, 0.0, 0.0), "direction": tuple(np.eye(3).ravel())},
            "spacing": list(SPACING_XYZ[::-1]),
            "shape_before_cropping": shape,
            "bbox_used_for_cropping": [[0, size] for size in shape],
            "shape_after_cropping_and_before_resampling": shape,
            "class_locations": {1: np.zeros((0, 4), dtype=np.int64)},
        }
        return data, seg, None, properties


def _world(voxel: tuple[float, float, float]) -> list[float]:
    """World mm (x, y, z) of a voxel (slice, row, column): identity direction, origin 0."""
    return [voxel[2] * SPACING_XYZ[0], voxel[1] * SPACING_XYZ[1], voxel[0] * SPACING_XYZ[2]]


def _slice_batch(batch_size: int = 24) -> dict:
    """A batch of 2D slices of the volume, one per random slice."""
    np.random.seed(0)
    landmarks = np.array([_world(ON_SLICE_2), _world(ON_SLICE_6), [np.nan] * 3])
    loader = LandmarkDataLoader(
        _Volume(), batch_size, (ROWS, COLUMNS), (ROWS, COLUMNS),
        LabelManager({"background": 0, "organ": 1}, regions_class_order=None),
        landmarks_world={"case": landmarks}, num_landmarks=3, transpose_forward=[0, 1, 2], ignore_label=None,
        landmark_centred_probability=0.0,
    )
    return loader.generate_train_batch()


def _sampled_slices(batch: dict) -> np.ndarray:
    return batch["data"][:, 0, 0, 0].numpy().astype(int)


def _trainer_shell(cls=HeatmapTrainer, **attributes):
    """A trainer with only what ``compute_losses`` reads (no nnU-Net plans, no network)."""
    trainer = object.__new__(cls)
    trainer.sigma_vox = (2.0, 2.0)
    trainer.label_manager = SimpleNamespace(foreground_labels=[])  # no segmentation loss: landmarks only
    for name, value in attributes.items():
        setattr(trainer, name, value)
    return trainer


def test_a_landmark_on_another_slice_keeps_its_position_and_offset_and_an_unannotated_one_stays_nan() -> None:
    batch = _slice_batch()
    slices = _sampled_slices(batch)
    assert batch["keypoints"].shape == (len(slices), 3, 2) and batch["slice_offsets_vox"].shape == (len(slices), 3)
    assert len(set(slices.tolist())) > 3  # the batch covers slices with and without landmarks
    for sample, slice_index in enumerate(slices):
        keypoints, offsets = batch["keypoints"][sample], batch["slice_offsets_vox"][sample]
        # Annotated landmarks keep their in-plane position on every slice, with their signed slice offset.
        torch.testing.assert_close(keypoints[0], torch.tensor(ON_SLICE_2[1:]))
        torch.testing.assert_close(keypoints[1], torch.tensor(ON_SLICE_6[1:]))
        torch.testing.assert_close(offsets[:2], torch.tensor([ON_SLICE_2[0], ON_SLICE_6[0]]) - float(slice_index))
        # Not annotated: NaN, on every slice.
        assert torch.isnan(keypoints[2]).all() and torch.isnan(offsets[2])


def test_off_slice_targets_are_zero_and_count_in_the_loss_mask_while_unannotated_landmarks_are_masked() -> None:
    batch = _slice_batch()
    trainer = _trainer_shell(heatmap_slice_sigma_vox=1.0)
    keypoints, offsets = batch["keypoints"], batch["slice_offsets_vox"]
    targets = trainer.reference_heatmaps(keypoints, offsets, (ROWS, COLUMNS))
    valid = trainer.landmark_validity(keypoints, batch["has_landmarks"])
    assert valid[:, :2].all() and not valid[:, 2].any()  # annotated (on this slice or not) vs not annotated
    assert float(targets[:, 2].abs().max()) == 0.0
    for sample, slice_index in enumerate(_sampled_slices(batch)):
        for landmark, (landmark_slice, row, column) in enumerate((ON_SLICE_2, ON_SLICE_6)):
            target = targets[sample, landmark]
            distance = abs(landmark_slice - slice_index)
            # The slice of its 3D Gaussian: peak exp(-d^2 / 2) at the landmark's in-plane position (1 on its own
            # slice), below 4e-4 from 4 slices on ("no landmark here").
            assert float(target[int(row), int(column)]) == float(target.max())
            assert float(target.max()) == pytest.approx(float(np.exp(-0.5 * distance**2)), rel=1e-5)
            if distance >= 4:
                assert float(target.max()) < 4e-4


def _logits_with_peak(row: float, column: float, height: float = 16.0) -> torch.Tensor:
    """``(ROWS, COLUMNS)`` logits: background (-8) with a confident peak (+8) around ``(row, column)``."""
    grid_rows, grid_columns = torch.meshgrid(torch.arange(ROWS), torch.arange(COLUMNS), indexing="ij")
    bump = torch.exp(-((grid_rows - row) ** 2 + (grid_columns - column) ** 2) / (2 * 2.0**2))
    return -8.0 + height * bump


@pytest.mark.parametrize("loss_kind", ["bce", "mse"])
def test_a_peak_on_a_slice_without_the_landmark_is_penalised(loss_kind: str) -> None:
    """The bug: on a slice 4+ slices from landmark 'b', a confident peak at its in-plane position cost nothing (the
    landmark was NaN, masked). Now it costs more than predicting background; on its own slice the peak is right."""
    batch = _slice_batch()
    slices = _sampled_slices(batch)
    far = int(np.flatnonzero(np.abs(slices - ON_SLICE_6[0]) >= 4)[0])
    own = int(np.flatnonzero(slices == ON_SLICE_6[0])[0])
    trainer = _trainer_shell(
        heatmap_slice_sigma_vox=1.0, heatmap_loss_kind=loss_kind, heatmap_foreground_weight=1.0, heatmap_loss_weight=1.0
    )

    def heatmap_loss(sample: int, peak_on_b: bool) -> float:
        logits = torch.full((1, 3, ROWS, COLUMNS), -8.0)
        if peak_on_b:
            logits[0, 1] = _logits_with_peak(*ON_SLICE_6[1:])
        output = SegmentationHeatmapOutput(torch.zeros(1, 2, ROWS, COLUMNS, requires_grad=True), logits)
        one = slice(sample, sample + 1)
        losses = trainer.compute_losses(
            output, None, batch["keypoints"][one], batch["has_mask"][one], batch["has_landmarks"][one],
            slice_offsets_vox=batch["slice_offsets_vox"][one],
        )
        return float(losses["heatmap"])

    assert heatmap_loss(far, peak_on_b=True) > heatmap_loss(far, peak_on_b=False) + 0.1
    assert heatmap_loss(own, peak_on_b=True) < heatmap_loss(own, peak_on_b=False)


def test_the_bridge_sees_only_the_landmarks_of_the_slice() -> None:
    """The boundary bridge ties a landmark to organ boundaries of its own slice: a landmark far from the slice drops
    out of the segmentation direction (with its all-but-zero target the expected-proximity similarity would be
    0/eps or scale-free noise), and the loss stays finite with zero targets."""
    spec = LandmarkSpec(names=("a", "b", "c"), bridge=(("a", ("organ",)), ("b", ("organ",))), boundary_range_mm=3.0)
    trainer = _trainer_shell(
        BaBLossTrainer, heatmap_slice_sigma_vox=1.0, heatmap_loss_kind="bce", heatmap_foreground_weight=1.0,
        heatmap_loss_weight=0.0, landmark_spec=spec, patch_spacing_mm=(1.0, 1.0), bab_weight=1.0,
        group_label_values=[(1,)], landmark_groups=[0, 0, -1], bab_heatmap_direction=True,
        bab_segmentation_direction=True,
    )
    labels = torch.zeros(1, 1, ROWS, COLUMNS, dtype=torch.long)
    labels[..., 3:9, 2:8] = 1  # an organ whose boundary passes both landmarks' in-plane positions
    has = torch.tensor([True])
    nan = float("nan")

    def bridge_loss(keypoints: list[list[float]], offsets: list[float]) -> torch.Tensor:
        segmentation = torch.stack([torch.zeros(ROWS, COLUMNS), 10.0 * (labels[0, 0].float() - 0.5)])[None]
        heatmap_logits = torch.randn(1, 3, ROWS, COLUMNS, generator=torch.Generator().manual_seed(1))
        output = SegmentationHeatmapOutput(segmentation.requires_grad_(), heatmap_logits)
        losses = trainer.compute_losses(
            output, labels, torch.tensor([keypoints]), has, has, slice_offsets_vox=torch.tensor([offsets])
        )
        assert torch.isfinite(losses["total"]) and torch.isfinite(losses["bab"])
        return losses["bab"]

    b_far = bridge_loss([[4.0, 5.0], [7.0, 3.0], [nan, nan]], [0.0, 5.0, nan])
    # 'b' five slices away weighs in the bridge exactly as if it were not annotated at all ...
    torch.testing.assert_close(b_far, bridge_loss([[4.0, 5.0], [nan, nan], [nan, nan]], [0.0, nan, nan]))
    # ... and counts once it is on the slice.
    assert not torch.equal(b_far, bridge_loss([[4.0, 5.0], [7.0, 3.0], [nan, nan]], [0.0, 0.0, nan]))
    keypoints = torch.tensor([[[4.0, 5.0], [7.0, 3.0], [nan, nan]]])
    on_patch = HeatmapTrainer.keypoints_on_patch(keypoints, torch.tensor([[0.4, -0.6, nan]]))
    assert torch.isfinite(on_patch[0, 0]).all() and torch.isnan(on_patch[0, 1:]).all()


def test_mirror_pair_swaps_carry_the_slice_offsets_with_their_landmarks() -> None:
    transform = KeypointMirrorTransform((1,), pair_permutation=(1, 0, 2), lateral_axes=(1,))
    torch.manual_seed(0)
    offsets = torch.tensor([3.0, -2.0, float("nan")])
    keypoints = torch.tensor([[4.0, 2.0], [4.0, 8.0], [float("nan")] * 2])  # not mirror images of each other
    flips = 0
    for _ in range(20):
        sample = {"image": torch.zeros(1, ROWS, COLUMNS), "keypoints": keypoints.clone()}
        out = transform(**sample, **{KEYPOINT_SLICE_OFFSETS_KEY: offsets.clone()})
        flipped = bool(out["keypoints"][0, 1] != keypoints[0, 1])
        flips += flipped
        expected = offsets[[1, 0, 2]] if flipped else offsets
        torch.testing.assert_close(out[KEYPOINT_SLICE_OFFSETS_KEY], expected, equal_nan=True)
    assert 0 < flips < 20


def test_through_plane_factors_are_the_slices_of_a_gaussian() -> None:
    offsets = torch.tensor([[0.0, 0.5, -1.0, 4.0, float("nan")]])
    expected = torch.exp(-0.5 * torch.tensor([0.0, 0.25, 1.0, 16.0]) / 1.5**2)
    torch.testing.assert_close(through_plane_factors(offsets, 1.5)[0, :4], expected)
    assert through_plane_factors(offsets, 1.5)[0, 4] == 0.0
    with pytest.raises(ValueError, match="sigma_vox"):
        through_plane_factors(offsets, 0.0)
