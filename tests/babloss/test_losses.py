"""Heatmap loss and BaBLoss: zero at the optimum, masking, gradients reach only the intended head."""

from __future__ import annotations

import pytest
import torch

from nnunet_babloss.babloss.losses import (
    SegmentationGate,
    Similarity,
    bab_heatmap_direction_loss,
    bab_segmentation_direction_loss,
    heatmap_boundary_similarity,
)
from nnunet_babloss.core.boundary import boundary_proximity_map
from nnunet_babloss.core.heatmaps import render_gaussian_heatmaps
from nnunet_babloss.core.losses import group_organ_masks, masked_heatmap_bce, masked_heatmap_mse

SPACING = (1.0, 1.0)


def _disc(shape=(48, 48), centre=(24.0, 24.0), radius=10.0) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) <= radius**2


def _heatmaps_at(points: list[tuple[float, float]], shape=(48, 48), sigma=1.5) -> torch.Tensor:
    coords = torch.tensor([points], dtype=torch.float32)
    return render_gaussian_heatmaps(coords, shape, sigma)


def test_masked_mse_is_zero_at_the_optimum_and_ignores_invalid_pairs() -> None:
    target = _heatmaps_at([(14.0, 24.0), (34.0, 24.0)])
    predicted = target.clone()
    predicted[0, 1] += 5.0  # wrong, but its pair is invalid
    valid = torch.tensor([[True, False]])
    assert masked_heatmap_mse(predicted, target, valid).item() == 0.0
    assert masked_heatmap_mse(predicted, target, torch.tensor([[True, True]])).item() > 0.0


def test_masked_mse_with_nothing_valid_is_zero_and_keeps_the_graph() -> None:
    predicted = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss = masked_heatmap_mse(predicted, torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert predicted.grad is not None and torch.count_nonzero(predicted.grad) == 0


def test_heatmap_bce_is_zero_at_the_optimum_ignores_invalid_pairs_and_keeps_the_graph() -> None:
    target = _heatmaps_at([(14.0, 24.0), (34.0, 24.0)])
    logits = torch.logit(target.clamp(1e-6, 1 - 1e-6))
    logits[0, 1] += 5.0  # wrong, but its pair is invalid
    assert masked_heatmap_bce(logits, target, torch.tensor([[True, False]])).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_heatmap_bce(logits, target, torch.tensor([[True, True]])).item() > 1e-3
    free = torch.zeros(2, 3, 8, 8, requires_grad=True)
    loss = masked_heatmap_bce(free, torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(free.grad) == 0
    with pytest.raises(ValueError, match="shapes differ"):
        masked_heatmap_bce(logits[:, :1], target, torch.tensor([[True, True]]))


def test_heatmap_bce_gradient_at_the_peak_does_not_vanish_when_the_head_predicts_background() -> None:
    """The reason for the BCE option: at the bias prior (p = 0.01) the squared error of sigmoid outputs passes the
    sigmoid's slope (~0.01) to the peak logit; cross-entropy passes p - t (~ -1)."""
    from nnunet_babloss.core.losses import gaussian_mass_vox

    sigma = 2.0
    target = _heatmaps_at([(24.0, 24.0)], sigma=sigma)
    normalizer = gaussian_mass_vox((sigma, sigma))
    peak_gradients = {}
    for kind in ("mse", "bce"):
        logits = torch.full_like(target, float(torch.logit(torch.tensor(0.01)))).requires_grad_(True)
        valid = torch.tensor([[True]])
        if kind == "mse":
            loss = masked_heatmap_mse(torch.sigmoid(logits), target, valid, normalizer=normalizer)
        else:
            loss = masked_heatmap_bce(logits, target, valid, normalizer=normalizer)
        loss.backward()
        peak_gradients[kind] = logits.grad[0, 0, 24, 24].item()
        assert peak_gradients[kind] < 0  # both raise the peak
    assert peak_gradients["bce"] / peak_gradients["mse"] > 40  # (1 - 0.01) / (2 * 0.99 * 0.0099) ~ 50


def test_expected_proximity_is_maximal_on_the_boundary_and_falls_with_displacement() -> None:
    mask = _disc()[None, None]
    proximity = boundary_proximity_map(mask, 5.0, SPACING)
    # Landmark on the boundary (radius 10 from the centre along a row), then moved inward by 2, 4, 6 pixels.
    similarities = [
        heatmap_boundary_similarity(_heatmaps_at([(24.0, 34.0 - shift)]), proximity, [0], Similarity.EXPECTED_PROXIMITY).item()
        for shift in (0, 2, 4, 6)
    ]
    assert similarities[0] > 0.7
    assert all(a > b for a, b in zip(similarities, similarities[1:])), similarities


def test_cosine_prefers_a_band_over_a_correct_point() -> None:
    """Why the paper's cosine is not our default: the boundary band itself beats a correctly placed Gaussian."""
    proximity = boundary_proximity_map(_disc()[None, None], 5.0, SPACING)
    point = _heatmaps_at([(24.0, 34.0)])
    cosine_point = heatmap_boundary_similarity(point, proximity, [0], Similarity.COSINE).item()
    cosine_band = heatmap_boundary_similarity(proximity, proximity, [0], Similarity.COSINE).item()
    assert cosine_band > 0.99 > cosine_point


def test_released_similarity_is_nearly_constant_under_displacement() -> None:
    proximity = boundary_proximity_map(_disc()[None, None], 5.0, SPACING)
    on, off = (_heatmaps_at([(24.0, 34.0 - shift)]) for shift in (0, 6))
    released = [heatmap_boundary_similarity(h, proximity, [0], "released").item() for h in (on, off)]
    expected = [heatmap_boundary_similarity(h, proximity, [0], "expected_proximity").item() for h in (on, off)]
    # The released normalisation divides by the (huge) support of the Gaussian: tiny values, tiny differences.
    assert abs(released[0] - released[1]) < 0.1 * abs(expected[0] - expected[1])


def test_heatmap_direction_gradient_reaches_only_the_heatmaps() -> None:
    mask = _disc()[None, None]
    logits = torch.randn(1, 1, 48, 48, requires_grad=True)
    loss = bab_heatmap_direction_loss(torch.sigmoid(logits), mask, [0], torch.tensor([[True]]), 5.0, SPACING)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= loss.item() <= 1.0
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_heatmap_direction_is_low_for_a_heatmap_on_the_boundary() -> None:
    mask = _disc()[None, None]
    on_boundary = _heatmaps_at([(24.0, 34.0)])
    inside = _heatmaps_at([(24.0, 24.0)])
    valid = torch.tensor([[True]])
    loss_on = bab_heatmap_direction_loss(on_boundary, mask, [0], valid, 5.0, SPACING).item()
    loss_inside = bab_heatmap_direction_loss(inside, mask, [0], valid, 5.0, SPACING).item()
    assert loss_on < 0.3 and loss_inside > 0.95  # the centre is 10 mm from the boundary, beyond the 5 mm range


@pytest.mark.parametrize("gate", list(SegmentationGate))
def test_segmentation_direction_gradient_reaches_only_the_segmentation(gate: SegmentationGate) -> None:
    seg_logits = torch.randn(1, 1, 48, 48, requires_grad=True)
    reference_heatmaps = _heatmaps_at([(24.0, 34.0)]).requires_grad_(True)
    probabilities = torch.sigmoid(seg_logits + 4.0 * (_disc().float() - 0.5))
    loss = bab_segmentation_direction_loss(probabilities, reference_heatmaps, [0], torch.tensor([[True]]), 5.0, SPACING, gate)
    loss.backward()
    assert torch.isfinite(loss)
    assert seg_logits.grad is not None and seg_logits.grad.abs().sum() > 0
    assert reference_heatmaps.grad is None or torch.count_nonzero(reference_heatmaps.grad) == 0


def test_soft_boundary_loss_is_lowest_when_the_predicted_boundary_passes_through_the_landmark() -> None:
    heatmap = _heatmaps_at([(24.0, 34.0)])
    valid = torch.tensor([[True]])
    losses = []
    for radius in (10.0, 7.0, 4.0):
        distance = torch.sqrt(sum((g - c) ** 2 for g, c in zip(torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij"), (24.0, 24.0))))
        probabilities = torch.sigmoid(radius - distance)[None, None]  # soft disc of that radius
        losses.append(bab_segmentation_direction_loss(probabilities, heatmap, [0], valid, 5.0, SPACING, "soft_boundary").item())
    assert losses[0] < losses[1] < losses[2]


def test_landmarks_without_bridge_or_invalid_pairs_contribute_nothing() -> None:
    mask = _disc()[None, None]
    heatmaps = _heatmaps_at([(24.0, 24.0), (24.0, 24.0)])  # both far from the boundary
    only_unbridged = bab_heatmap_direction_loss(heatmaps, mask, [-1, -1], torch.tensor([[True, True]]), 5.0, SPACING)
    only_invalid = bab_heatmap_direction_loss(heatmaps, mask, [0, 0], torch.tensor([[False, False]]), 5.0, SPACING)
    assert only_unbridged.item() == 0.0 and only_invalid.item() == 0.0


def test_group_organ_masks_unions_the_labels_of_each_group() -> None:
    labels = torch.tensor([[[[0, 1, 2, 3]]]])
    masks = group_organ_masks(labels, [[1], [2, 3]])
    assert masks.shape == (1, 2, 1, 4)
    assert masks[0, 0, 0].tolist() == [False, True, False, False]
    assert masks[0, 1, 0].tolist() == [False, False, True, True]


def test_unknown_similarity_and_gate_are_rejected() -> None:
    heatmaps = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError):
        heatmap_boundary_similarity(heatmaps, heatmaps, [0], "dot")
    with pytest.raises(ValueError):
        bab_segmentation_direction_loss(heatmaps, heatmaps, [0], torch.tensor([[True]]), 1.0, SPACING, "hard")


@pytest.mark.parametrize("shape", [(32, 32), (96, 96)])
def test_mass_normalised_loss_of_predicting_zeros_is_one_half_whatever_the_patch(shape) -> None:
    """sum(t^2) / sum(t) for a sampled 2D Gaussian: (pi sigma^2) / (2 pi sigma^2) = 1/2."""
    from nnunet_babloss.core.losses import gaussian_mass_vox

    sigma = 2.5
    target = render_gaussian_heatmaps(torch.tensor([[[shape[0] / 2, shape[1] / 2]]]), shape, sigma)
    loss = masked_heatmap_mse(torch.zeros_like(target), target, torch.tensor([[True]]), normalizer=gaussian_mass_vox((sigma, sigma)))
    assert loss.item() == pytest.approx(0.5, rel=1e-3)


def test_unannotated_samples_are_ignored_at_every_level_including_padding() -> None:
    from nnunet_babloss.core.losses import ignore_unannotated_targets

    full = torch.tensor([[[[0, 1], [2, 0]]], [[[0, 0], [0, 0]]]])  # sample 1: padding turned into background
    half = full[:, :, :1, :1].clone()
    result = ignore_unannotated_targets([full, half], torch.tensor([True, False]), ignore_label=3)
    assert torch.equal(result[0][0], full[0]) and torch.equal(result[1][0], half[0])  # annotated: unchanged
    assert (result[0][1] == 3).all() and (result[1][1] == 3).all()  # mask-less: ignored everywhere
    assert full[1].sum() == 0  # inputs untouched


@pytest.mark.parametrize("similarity", ["expected_proximity", "cosine", "released"])
def test_similarity_is_safe_in_float16_outside_the_trainers(similarity: str) -> None:
    """Called on float16 tensors (e.g. under autocast) the patch sums exceed float16's 65504 and the epsilon
    underflows; the function itself must compute in float32 and agree with the float32 result (issue 16 item 7)."""
    heatmaps = torch.full((1, 2, 300, 300), 0.9)  # sum 81000 > 65504
    heatmaps[:, 1] = 0.0  # an empty heatmap: 0 / (0 + epsilon), not 0 / 0
    group_maps = torch.rand((1, 1, 300, 300), generator=torch.Generator().manual_seed(0))
    reference = heatmap_boundary_similarity(heatmaps, group_maps, [0, 0], similarity)
    half = heatmap_boundary_similarity(heatmaps.half(), group_maps.half(), [0, 0], similarity)
    assert torch.isfinite(half).all() and half.dtype == torch.float32
    assert torch.allclose(half, reference, atol=2e-3)


@pytest.mark.parametrize("similarity", ["expected_proximity", "cosine", "released"])
def test_similarity_matches_its_formula_landmark_by_landmark(similarity: str) -> None:
    """The batched product (every heatmap against every group map at once) must give, for each landmark, the
    formula of its own group, and 0 for landmarks without a bridge; gradients must reach the group maps too."""
    generator = torch.Generator().manual_seed(1)
    heatmaps = torch.rand((2, 5, 12, 10), generator=generator)
    heatmaps[0, 3] = 0.0  # an empty heatmap
    group_maps = torch.rand((2, 3, 12, 10), generator=generator).requires_grad_(True)
    groups = [2, -1, 0, 2, 1]
    result = heatmap_boundary_similarity(heatmaps, group_maps, groups, similarity)
    for case in range(2):
        for landmark, group in enumerate(groups):
            h = heatmaps[case, landmark]
            if group < 0:
                assert result[case, landmark] == 0.0
                continue
            d = group_maps[case, group].detach()
            overlap = (h * d).sum()
            denominator = {"expected_proximity": h.sum(), "cosine": h.norm() * d.norm(),
                           "released": (h != 0).sum().float()}[similarity]
            assert torch.isclose(result[case, landmark], overlap / (denominator + 1e-6), rtol=1e-5, atol=1e-7)
    result.sum().backward()
    assert group_maps.grad is not None and group_maps.grad[:, 0].abs().sum() > 0
