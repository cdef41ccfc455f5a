"""Training-schedule settings as class attributes.

nnU-Net rebuilds trainers from their ``__init__`` arguments, so ``__init__`` never gains parameters: a schedule is
chosen by subclassing and overriding the class attributes of :class:`ScheduleSettings`.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["ScheduleSettings", "DemoSchedule"]


class ScheduleSettings:
    """Mixin: class attributes that replace nnU-Net's schedule after ``nnUNetTrainer.__init__`` set its defaults.

    ``None`` keeps nnU-Net's value (1000 epochs x 250 iterations, 50 validation iterations, save every 50).
    ``schedule_seed`` seeds Python's, NumPy's and torch's generators before the network is built (nnU-Net seeds
    nothing); with ``nnUNet_n_proc_DA=0`` the data loading then repeats too. Repeats on a GPU still differ a little
    (non-deterministic kernels).
    """

    schedule_num_epochs: int | None = None
    schedule_iterations_per_epoch: int | None = None
    schedule_val_iterations_per_epoch: int | None = None
    schedule_save_every: int | None = None
    schedule_seed: int | None = None

    def apply_schedule_settings(self) -> None:
        """Copy the non-``None`` class settings onto nnU-Net's instance attributes."""
        for setting, attribute in (
            ("schedule_num_epochs", "num_epochs"),
            ("schedule_iterations_per_epoch", "num_iterations_per_epoch"),
            ("schedule_val_iterations_per_epoch", "num_val_iterations_per_epoch"),
            ("schedule_save_every", "save_every"),
        ):
            value = getattr(self, setting)
            if value is not None:
                setattr(self, attribute, value)
        if self.schedule_seed is not None:
            random.seed(self.schedule_seed)
            np.random.seed(self.schedule_seed)
            torch.manual_seed(self.schedule_seed)


class DemoSchedule(ScheduleSettings):
    """3 epochs x 10 iterations, 3 validation iterations: CPU smoke runs, not real training."""

    schedule_num_epochs = 3
    schedule_iterations_per_epoch = 10
    schedule_val_iterations_per_epoch = 3
