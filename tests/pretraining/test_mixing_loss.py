"""The mixing loss of boundary-aware pre-training, ``t * MSE + (1 - t) * LogCosh``, and its schedule ``t``."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_babloss.pretraining.losses import log_cosh, mixed_mse_logcosh_loss, mixing_weight


def test_log_cosh_matches_the_definition_and_does_not_overflow() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0], dtype=torch.float64)
    assert torch.allclose(log_cosh(x), torch.log(torch.cosh(x)))
    # cosh(1000) overflows float64, log cosh(1000) = 1000 - log 2 does not.
    assert log_cosh(torch.tensor([1000.0], dtype=torch.float64)).item() == pytest.approx(1000.0 - math.log(2.0))


def test_value_equals_a_hand_computation() -> None:
    # One pair, residuals 0.5 and -1 (and two exact voxels): MSE = (0.25 + 1) / 4, LogCosh = (lc(0.5) + lc(1)) / 4.
    predicted = torch.tensor([[[[0.5, 0.0], [1.0, 2.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]]]], dtype=torch.float64)
    mse = (0.25 + 1.0) / 4
    logcosh = (math.log(math.cosh(0.5)) + math.log(math.cosh(1.0))) / 4
    for t in (0.0, 0.3, 1.0):
        expected = t * mse + (1 - t) * logcosh
        assert mixed_mse_logcosh_loss(predicted, target, t).item() == pytest.approx(expected, rel=1e-12)


def test_limits_t0_is_logcosh_and_t1_is_mse() -> None:
    generator = torch.Generator().manual_seed(0)
    predicted, target = torch.rand(2, 3, 5, 5, generator=generator), torch.rand(2, 3, 5, 5, generator=generator)
    assert mixed_mse_logcosh_loss(predicted, target, 1.0).item() == pytest.approx(torch.mean((predicted - target) ** 2).item(), rel=1e-6)
    assert mixed_mse_logcosh_loss(predicted, target, 0.0).item() == pytest.approx(
        torch.mean(torch.log(torch.cosh(predicted - target))).item(), rel=1e-6
    )


def test_zero_at_the_optimum_and_linear_in_t() -> None:
    target = torch.rand(1, 2, 6, 6)
    assert mixed_mse_logcosh_loss(target.clone(), target, 0.4).item() == 0.0
    predicted = target + 0.7
    values = [mixed_mse_logcosh_loss(predicted, target, t).item() for t in (0.0, 0.5, 1.0)]
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, rel=1e-6)


def test_gradient_matches_the_analytic_derivative() -> None:
    # d/dp [t r^2 + (1 - t) log cosh r] / N with r = s (p - y): s (2 t r + (1 - t) tanh r) / N.
    predicted = torch.tensor([[[[0.9, -0.4, 0.1]]]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[[0.0, 0.5, 0.1]]]], dtype=torch.float64)
    t, scale = 0.25, 3.0
    mixed_mse_logcosh_loss(predicted, target, t, residual_scale=scale).backward()
    residual = scale * (predicted.detach() - target)
    expected = scale * (2 * t * residual + (1 - t) * torch.tanh(residual)) / 3
    assert torch.allclose(predicted.grad, expected)
    assert torch.autograd.gradcheck(
        lambda p: mixed_mse_logcosh_loss(p, target, t, residual_scale=scale), (predicted.detach().requires_grad_(),)
    )


def test_residual_scale_moves_logcosh_to_its_robust_linear_zone() -> None:
    # At scale 1 a residual of 0.5 is in the quadratic zone (log cosh r ~ r^2 / 2); at scale 255 it is linear (|r| - log 2).
    predicted, target = torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, 1, 1, 1)
    assert mixed_mse_logcosh_loss(predicted, target, 0.0).item() == pytest.approx(0.5**2 / 2, rel=0.05)  # 0.1201 vs 0.125
    assert mixed_mse_logcosh_loss(predicted, target, 0.0, residual_scale=255.0).item() == pytest.approx(127.5 - math.log(2.0), rel=1e-6)


def test_invalid_pairs_are_masked_not_averaged_in() -> None:
    target = torch.zeros(2, 2, 4, 4)
    predicted = target.clone()
    predicted[0, 0] = 1.0  # the only wrong pair
    predicted[1, 1] = 9.0  # wrong too, but marked invalid
    valid = torch.tensor([[True, True], [True, False]])
    # Mean over the three valid pairs: (1 + 0 + 0) / 3 with pure MSE.
    assert mixed_mse_logcosh_loss(predicted, target, 1.0, valid).item() == pytest.approx(1.0 / 3)


def test_nothing_valid_gives_an_exact_zero_in_the_graph() -> None:
    predicted = torch.rand(2, 3, 4, 4, requires_grad=True)
    loss = mixed_mse_logcosh_loss(predicted, torch.zeros(2, 3, 4, 4), 0.5, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert predicted.grad is not None and torch.count_nonzero(predicted.grad) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mix_t": 1.5}, "mix_t"),
        ({"mix_t": -0.1}, "mix_t"),
        ({"mix_t": 0.5, "residual_scale": 0.0}, "residual_scale"),
        ({"mix_t": 0.5, "valid": torch.ones(2, 2, dtype=torch.bool)}, "valid"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mixed_mse_logcosh_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), **kwargs)
    with pytest.raises(ValueError, match="same"):
        mixed_mse_logcosh_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), 0.5)


def test_mixing_weight_rises_linearly_to_pure_mse_in_the_last_epoch() -> None:
    weights = [mixing_weight(epoch, 4) for epoch in range(4)]
    assert weights == [0.25, 0.5, 0.75, 1.0]
    assert mixing_weight(0, 1) == 1.0
    for epoch, num_epochs in ((4, 4), (-1, 4), (0, 0)):
        with pytest.raises(ValueError):
            mixing_weight(epoch, num_epochs)
