"""DenseSeg's uv losses: zero at the optimum, masked where they should be, finite gradients."""

from __future__ import annotations

import pytest
import torch

from nnunet_babloss.denseseg.losses import landmark_uv_l1, masked_uv_l1, sample_uv_at_points, uv_total_variation


def _affine_uv(height: int = 16, width: int = 20) -> torch.Tensor:
    """``(1, 2, H, W)``: u = row / 20, v = col / 40 (bilinear sampling reproduces an affine map exactly)."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    return torch.stack((rows / 20, cols / 40))[None]


def test_region_l1_is_zero_at_the_target_and_ignores_pixels_outside() -> None:
    target = _affine_uv()
    region = torch.zeros(1, 1, 16, 20, dtype=torch.bool)
    region[..., 4:8, 4:8] = True
    assert float(masked_uv_l1(target, target, region)) == 0.0
    shifted = target + 0.1
    assert float(masked_uv_l1(shifted, target, region)) == pytest.approx(0.1)
    outside = target.clone()
    outside[..., 10:, 10:] += 5.0  # garbage outside the region costs nothing
    assert float(masked_uv_l1(outside, target, region)) == 0.0
    predicted = target.clone().requires_grad_(True)
    loss = masked_uv_l1(predicted, target + 1, torch.zeros_like(region))
    loss.backward()  # an empty region gives 0, still in the graph
    assert float(loss.detach()) == 0.0 and predicted.grad is not None


def test_landmark_l1_samples_sub_voxel_positions() -> None:
    uv = _affine_uv()
    keypoints = torch.tensor([[[3.25, 7.5], [10.0, 0.5], [float("nan"), float("nan")]]])
    canonical = torch.tensor([[3.25 / 20, 7.5 / 40], [10.0 / 20, 0.5 / 40], [0.0, 0.0]])
    valid = torch.tensor([[True, True, False]])
    structure = torch.tensor([0, 0, 0])
    assert float(landmark_uv_l1(uv, keypoints, structure, canonical, valid)) == pytest.approx(0.0, abs=1e-6)
    wrong = canonical + torch.tensor([0.2, 0.0])
    assert float(landmark_uv_l1(uv, keypoints, structure, wrong, valid)) == pytest.approx(0.1, abs=1e-6)
    # A landmark of no structure (-1) is not scored.
    assert float(landmark_uv_l1(uv, keypoints, torch.tensor([-1, -1, -1]), wrong, valid)) == 0.0
    # Second structure's channels are used for its landmarks.
    two = torch.cat((uv + 9, uv), dim=1)
    assert float(landmark_uv_l1(two, keypoints, torch.tensor([1, 1, 1]), canonical, valid)) == pytest.approx(0.0, abs=1e-6)
    np_sample = sample_uv_at_points(uv, keypoints[:, :2])
    torch.testing.assert_close(np_sample[0], canonical[:2], atol=1e-6, rtol=0)


def test_total_variation_is_zero_for_constant_and_the_slope_for_a_ramp() -> None:
    region = torch.ones(1, 1, 16, 20, dtype=torch.bool)
    assert float(uv_total_variation(torch.full((1, 2, 16, 20), 0.3), region)) == 0.0
    # u changes by 1/20 per row, v by 1/40 per column; each channel contributes its steps along both axes.
    expected_sum = 15 * 20 * (1 / 20) + 16 * 19 * (1 / 40)
    pairs = 15 * 20 + 16 * 19
    assert float(uv_total_variation(_affine_uv(), region)) == pytest.approx(expected_sum / (2 * pairs), rel=1e-5)
    # Only neighbour pairs inside the region count.
    tiny = torch.zeros_like(region)
    tiny[..., 0, 0] = True
    assert float(uv_total_variation(_affine_uv(), tiny)) == 0.0
