"""Trainer classes. ``nnUNet_extTrainer`` must point at :mod:`nnunet_babloss.ext_trainers`, never here."""

from __future__ import annotations

from nnunet_babloss.nnunet.trainers.babloss_trainer import (
    BaBLossTrainer,
    BaBLossTrainer_cosine,
    BaBLossTrainer_released,
    BaBLossTrainer_softBoundary,
)
from nnunet_babloss.nnunet.trainers.boundary_pretrainer import BoundaryPretrainer, BoundaryPretrainer_released
from nnunet_babloss.nnunet.trainers.denseseg_trainer import DenseSegTrainer
from nnunet_babloss.nnunet.trainers.gazesup_trainer import GazeSupTrainer
from nnunet_babloss.nnunet.trainers.heatmap_trainer import HeatmapTrainer
from nnunet_babloss.nnunet.trainers.mirroring import nnUNetTrainerNoLateralMirroring
from nnunet_babloss.nnunet.trainers.schedules import ScheduleSettings
from nnunet_babloss.nnunet.trainers.variants import (
    BaBLossTrainer_BabDemo,
    BoundaryPretrainer_BabDemo,
    DenseSegTrainer_BabDemo,
    GazeSupTrainer_BabDemo,
    HeatmapTrainer_BabDemo,
    nnUNetTrainer_BabDemo,
)
from nnunet_babloss.trainer_names import TRAINER_NAMES

__all__ = [*TRAINER_NAMES, "ScheduleSettings"]
