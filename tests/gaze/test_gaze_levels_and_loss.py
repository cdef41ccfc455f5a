"""Nested gaze levels (one label map, the dataset.json block) and the GazeSup losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_babloss.gazesup.levels import GazeLevelSpec, level_map_from_probability, level_masks
from nnunet_babloss.gazesup.losses import (
    GazeSupLoss,
    cross_level_consistency,
    gazesup_loss,
    mean_of_levels_logits,
    multi_level_bce,
    pairwise_consistency,
)


def test_level_map_counts_thresholds_and_masks_are_nested() -> None:
    rng = np.random.default_rng(0)
    probability = rng.random((32, 40))
    thresholds = (0.2, 0.5, 0.8)
    level_map = level_map_from_probability(probability, thresholds)
    assert level_map.dtype == np.uint8 and level_map.max() <= 3
    masks = level_masks(level_map, 3)
    for index, threshold in enumerate(thresholds):
        np.testing.assert_array_equal(masks[index], probability > threshold)
    for looser, stricter in zip(masks, masks[1:]):
        assert not np.any(stricter & ~looser)  # nested: every stricter level lies inside the looser one


@pytest.mark.parametrize("thresholds", [(), (0.5, 0.3), (0.3, 0.3), (0.2, 1.0)])
def test_bad_thresholds(thresholds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="threshold"):
        level_map_from_probability(np.zeros((2, 2)), thresholds)


def test_dataset_json_block_round_trip_and_checks() -> None:
    spec = GazeLevelSpec("heart", (0.3, 0.5), source={"simulated": True})
    dataset_json = {**spec.labels_block(), "gaze_levels": spec.to_json()}
    assert dataset_json["labels"] == {"background": 0, "heart_level_1": [1, 2], "heart_level_2": [2]}
    assert dataset_json["regions_class_order"] == [1, 2]
    assert GazeLevelSpec.from_dataset_json(dataset_json) == spec
    with pytest.raises(ValueError, match="no 'gaze_levels' block"):
        GazeLevelSpec.from_dataset_json({"labels": {"background": 0, "heart": 1}}, "x/dataset.json")
    broken = {**dataset_json, "labels": {"background": 0, "heart": 1, "other": 2}}
    with pytest.raises(ValueError, match="do not encode the nested gaze levels"):
        GazeLevelSpec.from_dataset_json(broken)


def test_consistency_is_zero_when_levels_agree_and_positive_otherwise() -> None:
    agreeing = torch.randn(2, 1, 8, 8).repeat(1, 3, 1, 1)
    assert cross_level_consistency(agreeing).item() == pytest.approx(0.0, abs=1e-12)
    differing = agreeing.clone()
    differing[:, 2] += 2.0
    assert cross_level_consistency(differing).item() > 1e-3
    assert cross_level_consistency(torch.randn(2, 1, 4, 4)).item() == 0.0


def test_consistency_gradient_flows_only_through_the_non_detached_side() -> None:
    student = torch.randn(2, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 8, 8, requires_grad=True)
    pairwise_consistency(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    # In the all-pairs term, level k's gradient is exactly that of the pairs where k is the student.
    logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    cross_level_consistency(logits).backward()
    reference = logits.detach().clone().requires_grad_(True)
    terms = [pairwise_consistency(reference[:, 0], reference[:, j].detach()) for j in (1, 2)]
    (torch.stack(terms).sum() / 6).backward()  # 6 ordered pairs in the mean
    torch.testing.assert_close(logits.grad[:, 0], reference.grad[:, 0])


def test_gazesup_loss_terms_and_optimum() -> None:
    targets = torch.zeros(1, 2, 4, 4)
    targets[:, 0, 1:3, 1:3] = 1
    targets[:, 1, 1:2, 1:2] = 1
    logits = (targets * 2 - 1) * 30.0  # confident and right on every level
    total, bce, consistency = gazesup_loss(logits, targets, consistency_weight=3.0)
    assert bce.item() < 1e-10
    assert total.item() == pytest.approx(bce.item() + 3.0 * consistency.item())
    assert consistency.item() > 0  # the levels disagree where the pseudo masks do
    assert GazeSupLoss(0.0)(logits, targets).item() == pytest.approx(multi_level_bce(logits, targets).item())
    with pytest.raises(ValueError, match="consistency_weight"):
        GazeSupLoss(-1.0)


def test_mean_of_levels_prediction() -> None:
    logits = torch.tensor([[[[4.0]], [[-4.0]]]])  # p = 0.982 and 0.018 -> mean 0.5
    merged = mean_of_levels_logits(logits)
    assert merged.shape == logits.shape
    assert torch.sigmoid(merged)[0, 0].item() == pytest.approx(0.5, abs=1e-6)
    torch.testing.assert_close(merged[:, 0], merged[:, 1])
    saturated = mean_of_levels_logits(torch.full((1, 2, 1, 1), 100.0))
    assert torch.isfinite(saturated).all() and torch.sigmoid(saturated).min() > 0.99
