"""Training-schedule settings as class attributes.

nnU-Net rebuilds trainers from their ``__init__`` arguments, so ``__init__`` never gains parameters: a schedule is
chosen by subclassing and overriding the class attributes of :class:`ScheduleSettings`.
"""

from __future__ import annotations

__all__ = ["ScheduleSettings", "DemoSchedule"]


class ScheduleSettings:
    """Mixin: class attributes that replace nnU-Net's schedule after ``nnUNetTrainer.__init__`` set its defaults.

    ``None`` keeps nnU-Net's value (1000 epochs x 250 iterations, 50 validation iterations, save every 50).
    """

    schedule_num_epochs: int | None = None
    schedule_iterations_per_epoch: int | None = None
    schedule_val_iterations_per_epoch: int | None = None
    schedule_save_every: int | None = None

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


class DemoSchedule(ScheduleSettings):
    """3 epochs x 10 iterations, 3 validation iterations: CPU smoke runs, not real training."""

    schedule_num_epochs = 3
    schedule_iterations_per_epoch = 10
    schedule_val_iterations_per_epoch = 3
