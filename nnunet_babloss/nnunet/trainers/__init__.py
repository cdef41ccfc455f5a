"""Trainer classes. ``nnUNet_extTrainer`` must point at :mod:`nnunet_babloss.ext_trainers`, never here."""

from __future__ import annotations

from nnunet_babloss.nnunet.trainers.schedules import nnUNetTrainer_BabDemo, ScheduleSettings

__all__ = ["ScheduleSettings", "nnUNetTrainer_BabDemo"]
