"""Every trainer class of the package, by name: the one list that ``ext_trainers/`` re-exports to nnU-Net.

The method trainers live in their method's folder (``babloss/``, ``denseseg/``, ``gazesup/``, ``pretraining/``), the
base :class:`HeatmapTrainer` and the lateral-mirroring and upright-augmentation trainers in the nnU-Net glue (``nnunet/``). This module adds the
``*_BabDemo`` schedule variants (subclasses that only change class attributes) for the demo and the smoke tests.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_babloss.babloss.trainer import (
    BaBLossTrainer,
    BaBLossTrainer_cosine,
    BaBLossTrainer_released,
    BaBLossTrainer_softBoundary,
)
from nnunet_babloss.denseseg.trainer import DenseSegTrainer
from nnunet_babloss.gazesup.trainer import GazeSupTrainer
from nnunet_babloss.nnunet.heatmap_trainer import HeatmapTrainer
from nnunet_babloss.nnunet.mirroring import nnUNetTrainerNoLateralMirroring
from nnunet_babloss.nnunet.schedules import DemoSchedule, ScheduleSettings
from nnunet_babloss.nnunet.upright_augmentation import nnUNetTrainerUprightAugmentation
from nnunet_babloss.pretraining.trainer import BoundaryPretrainer, BoundaryPretrainer_released
from nnunet_babloss.trainer_names import TRAINER_NAMES

__all__ = [*TRAINER_NAMES, "ScheduleSettings"]


class nnUNetTrainer_BabDemo(DemoSchedule, nnUNetTrainer):
    """Stock nnU-Net training on the demo schedule (the segmentation-only reference)."""

    def __init__(
        self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_schedule_settings()


class HeatmapTrainer_BabDemo(DemoSchedule, HeatmapTrainer):
    """:class:`HeatmapTrainer` on the demo schedule."""


class BaBLossTrainer_BabDemo(DemoSchedule, BaBLossTrainer):
    """:class:`BaBLossTrainer` for ``nnUNetv2_bab_demo``: the demo schedule with 20 iterations per epoch, seeded.

    The demo must find its landmarks, so it trains twice as long as the other ``*_BabDemo`` smoke runs: on the
    synthetic dataset, 3 x 10 iterations leave the two bar-end landmarks at heatmap peaks of 0.07-0.10 (missed at
    the 0.3 threshold, 8-11 mm off), while 3 x 15 and 3 x 20 found all 96 landmarks of 16 test cases (MRE 1.0-1.2 mm,
    lowest peak 0.52 at 3 x 15 and 0.74-0.80 at 3 x 20 over three seeds). ``schedule_seed`` makes the run repeat
    (with nnU-Net's single-threaded augmentation, ``nnUNet_n_proc_DA=0``, as in the demo).
    """

    schedule_iterations_per_epoch = 20
    schedule_seed = 0


class GazeSupTrainer_BabDemo(DemoSchedule, GazeSupTrainer):
    """:class:`GazeSupTrainer` on the demo schedule."""


class DenseSegTrainer_BabDemo(DemoSchedule, DenseSegTrainer):
    """:class:`DenseSegTrainer` on the demo schedule."""


class BoundaryPretrainer_BabDemo(DemoSchedule, BoundaryPretrainer):
    """:class:`BoundaryPretrainer` on the demo schedule."""
