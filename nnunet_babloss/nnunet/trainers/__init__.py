"""Trainer classes. ``nnUNet_extTrainer`` must point at :mod:`nnunet_babloss.ext_trainers`, never here."""

from __future__ import annotations

from nnunet_babloss.nnunet.trainers.babloss_trainer import (
    BaBLossTrainer,
    BaBLossTrainer_cosine,
    BaBLossTrainer_released,
    BaBLossTrainer_softBoundary,
)
from nnunet_babloss.nnunet.trainers.heatmap_trainer import HeatmapTrainer
from nnunet_babloss.nnunet.trainers.schedules import ScheduleSettings
from nnunet_babloss.nnunet.trainers.variants import BaBLossTrainer_BabDemo, HeatmapTrainer_BabDemo, nnUNetTrainer_BabDemo

__all__ = [
    "BaBLossTrainer",
    "BaBLossTrainer_BabDemo",
    "BaBLossTrainer_cosine",
    "BaBLossTrainer_released",
    "BaBLossTrainer_softBoundary",
    "HeatmapTrainer",
    "HeatmapTrainer_BabDemo",
    "ScheduleSettings",
    "nnUNetTrainer_BabDemo",
]
