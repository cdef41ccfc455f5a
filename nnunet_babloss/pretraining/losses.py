"""Boundary-aware pre-training's loss: ``t * MSE + (1 - t) * LogCosh`` with ``t`` rising over the epochs (seed document 003)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nnunet_babloss.core.losses import masked_mean

__all__ = ["log_cosh", "mixing_weight", "mixed_mse_logcosh_loss"]


def log_cosh(residual: Tensor) -> Tensor:
    """Elementwise ``log(cosh(x))``, computed as ``|x| + log1p(exp(-2|x|)) - log 2`` (no overflow for large ``|x|``).

    It is ``x^2 / 2`` for small residuals and ``|x| - log 2`` for large ones: quadratic near the optimum, robust
    (L1-like) against large errors.
    """
    magnitude = residual.abs()
    return magnitude + torch.log1p(torch.exp(-2.0 * magnitude)) - math.log(2.0)



def mixing_weight(epoch: int, num_epochs: int) -> float:
    """The weight ``t`` of the MSE term in epoch ``epoch`` (zero-based) of ``num_epochs``: ``t = (epoch + 1) / num_epochs``.

    This is boundary-aware pre-training's schedule ``t = (epoch + 1) / (max_epoch + 1)`` (seed document 003) with
    ``max_epoch = num_epochs - 1`` the last zero-based epoch: ``t`` rises linearly from ``1 / num_epochs`` to exactly 1
    (pure MSE) in the last epoch, so training starts robust (mostly LogCosh) and ends on MSE. (The authors' released
    loop counts epochs from 1 and so uses ``(epoch + 2) / (num_epochs + 1)``, which differs by less than
    ``1 / num_epochs``.)

    Raises:
        ValueError: if ``num_epochs < 1`` or ``epoch`` is outside ``0 .. num_epochs - 1``.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive integer, got {num_epochs!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < num_epochs:
        raise ValueError(f"epoch must be an integer in 0..{num_epochs - 1} (zero-based), got {epoch!r}")
    return (epoch + 1) / num_epochs



def mixed_mse_logcosh_loss(
    predicted: Tensor, target: Tensor, mix_t: float, valid: Tensor | None = None, residual_scale: float = 1.0
) -> Tensor:
    """Boundary-aware pre-training's mixing loss ``t * MSE + (1 - t) * LogCosh``, averaged per map, masked per pair.

    With ``r = residual_scale * (predicted - target)``, each ``(case, channel)`` pair scores
    ``t * mean(r^2) + (1 - t) * mean(log cosh r)`` over its voxels, and the result is the mean over the valid pairs.
    ``residual_scale`` sets where LogCosh turns from quadratic to linear (at ``|r|`` of about 1): for maps in [0, 1]
    and a scale of 1 every residual stays in the quadratic zone, so LogCosh is about ``MSE / 2`` and the mixture is a
    rescaled MSE; the authors' released code regresses maps scaled to 0..255, i.e. a scale of 255.

    Args:
        predicted: ``(B, C, *spatial)`` predicted maps.
        target: ``(B, C, *spatial)`` target maps (e.g. boundary-proximity maps in [0, 1]).
        mix_t: the weight ``t`` of the MSE term, in [0, 1] (see :func:`mixing_weight`).
        valid: optional ``(B, C)`` bool; pairs marked ``False`` contribute nothing. ``None``: every pair counts.
        residual_scale: positive factor applied to the residual before both terms.

    Returns:
        Scalar loss; exactly zero (with a graph to ``predicted``) when no pair is valid.

    Raises:
        ValueError: on mismatched shapes, ``mix_t`` outside [0, 1] or a non-positive ``residual_scale``.

    Example:
        >>> predicted, target = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)
        >>> round(mixed_mse_logcosh_loss(predicted, target, mix_t=1.0).item(), 4)  # pure MSE: 0.5^2
        0.25
    """
    if predicted.shape != target.shape or predicted.ndim < 3:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must have the same (B, C, *spatial) shape"
        )
    if valid is not None and tuple(valid.shape) != tuple(predicted.shape[:2]):
        raise ValueError(f"valid must have shape {tuple(predicted.shape[:2])} (B, C), got {tuple(valid.shape)}")
    if not 0.0 <= float(mix_t) <= 1.0:
        raise ValueError(f"mix_t must be in [0, 1], got {mix_t!r}")
    if not (math.isfinite(residual_scale) and residual_scale > 0):
        raise ValueError(f"residual_scale must be a positive finite number, got {residual_scale!r}")
    residual = (residual_scale * (predicted - target)).flatten(2)
    per_pair = float(mix_t) * (residual**2).mean(-1) + (1.0 - float(mix_t)) * log_cosh(residual).mean(-1)
    if valid is None:
        valid = torch.ones(per_pair.shape, dtype=torch.bool, device=per_pair.device)
    return masked_mean(per_pair, valid.to(per_pair.device), predicted)

