"""GazeSup losses: binary cross-entropy per gaze level plus the cross-level consistency term.

GazeSup (Zhong et al., MICCAI 2024) trains one output per gaze level ``k = 1..L`` (level ``k`` = the gaze map
thresholded at ``t_k``, nested) with BCE against that level's pseudo mask, and adds a consistency term that pulls
each level's probabilities towards the *detached* probabilities of the other levels: the gradient of the term for
level ``k`` flows only into level ``k``'s output (the "student" side), never into the others (the "teacher" side).
The published method computes the student side on feature-propagated probabilities; here it is the level's own
sigmoid output, and the distance is the mean squared difference of probabilities, averaged over all ordered pairs
``(k, j), j != k`` (our choice; the released description fixes neither). The prediction is the mean of the level
probabilities (:func:`mean_of_levels_logits`).

Shapes: ``logits`` and ``targets`` are ``(B, L, *spatial)``; targets are 0/1 floats. Pure torch: no nnU-Net import.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GazeSupLoss",
    "cross_level_consistency",
    "gazesup_loss",
    "mean_of_levels_logits",
    "multi_level_bce",
    "pairwise_consistency",
]

# Probabilities are clamped to [eps, 1 - eps] before the logit so that the mean of saturated levels stays finite.
_LOGIT_EPS = 1e-6


def _check_levels(logits: Tensor, name: str = "logits") -> None:
    if logits.ndim < 3:
        raise ValueError(f"{name} must be (B, L, *spatial), got shape {tuple(logits.shape)}")


def multi_level_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over levels of the binary cross-entropy of each level.

    Args:
        logits: ``(B, L, *spatial)`` level logits.
        targets: ``(B, L, *spatial)`` nested 0/1 level masks (any float/int/bool dtype).

    Returns:
        Scalar loss.

    Raises:
        ValueError: shapes differ or are not ``(B, L, *spatial)``.
    """
    _check_levels(logits)
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} must match logits {tuple(logits.shape)}")
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def pairwise_consistency(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared difference between the student's probabilities and the *detached* teacher probabilities.

    The gradient flows into ``student_logits`` only.
    """
    student = torch.sigmoid(student_logits.float())
    teacher = torch.sigmoid(teacher_logits.float()).detach()
    return (student - teacher).square().mean()


def cross_level_consistency(logits: Tensor) -> Tensor:
    """Mean of :func:`pairwise_consistency` over all ordered level pairs ``(k, j), j != k``.

    Zero when all levels predict the same probabilities; 0 (with a graph) for a single level.

    Args:
        logits: ``(B, L, *spatial)``.
    """
    _check_levels(logits)
    num_levels = logits.shape[1]
    if num_levels < 2:
        return logits.sum() * 0.0
    terms = [
        pairwise_consistency(logits[:, student], logits[:, teacher])
        for student in range(num_levels)
        for teacher in range(num_levels)
        if teacher != student
    ]
    return torch.stack(terms).mean()


def gazesup_loss(logits: Tensor, targets: Tensor, consistency_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """``multi_level_bce + consistency_weight * cross_level_consistency``.

    Returns:
        ``(total, bce, consistency)`` scalars.

    Raises:
        ValueError: negative weight or bad shapes.
    """
    if consistency_weight < 0:
        raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
    bce = multi_level_bce(logits, targets)
    consistency = cross_level_consistency(logits)
    return bce + consistency_weight * consistency, bce, consistency


def mean_of_levels_logits(logits: Tensor) -> Tensor:
    """The logit of the mean level probability, ``logit(mean_k sigmoid(z_k))``, repeated in every level channel.

    Args:
        logits: ``(B, L, *spatial)``.

    Returns:
        ``(B, L, *spatial)`` in the dtype of ``logits`` (computed in float32): every channel holds the same map, so
        any per-channel threshold at probability 0.5 yields the GazeSup prediction ``mean_k p_k > 0.5``.
    """
    _check_levels(logits)
    mean_probability = torch.sigmoid(logits.float()).mean(dim=1, keepdim=True).clamp(_LOGIT_EPS, 1.0 - _LOGIT_EPS)
    mean_logit = torch.log(mean_probability) - torch.log1p(-mean_probability)
    return mean_logit.expand_as(logits).to(logits.dtype).contiguous()


class GazeSupLoss(nn.Module):
    """:func:`gazesup_loss` as a module (one deep-supervision scale): ``loss(logits, targets) -> total``.

    Args:
        consistency_weight: weight of :func:`cross_level_consistency` (>= 0).

    Raises:
        ValueError: negative weight.
    """

    def __init__(self, consistency_weight: float) -> None:
        super().__init__()
        if consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
        self.consistency_weight = float(consistency_weight)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return gazesup_loss(logits, targets, self.consistency_weight)[0]
