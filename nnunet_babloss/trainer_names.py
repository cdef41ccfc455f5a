"""The one list of the trainer classes this package gives nnU-Net (``-tr <name>``).

The trainer package exports exactly these names and the ``nnUNet_extTrainer`` shim re-exports them; a test checks
that every ``nnUNetTrainer`` subclass of the package is listed. Pure: importing it imports no nnU-Net.
"""

from __future__ import annotations

__all__ = ["TRAINER_NAMES"]

TRAINER_NAMES: tuple[str, ...] = (
    "BaBLossTrainer",
    "BaBLossTrainer_BabDemo",
    "BaBLossTrainer_cosine",
    "BaBLossTrainer_released",
    "BaBLossTrainer_softBoundary",
    "BoundaryPretrainer",
    "BoundaryPretrainer_BabDemo",
    "BoundaryPretrainer_released",
    "DenseSegTrainer",
    "DenseSegTrainer_BabDemo",
    "GazeSupTrainer",
    "GazeSupTrainer_BabDemo",
    "HeatmapTrainer",
    "HeatmapTrainer_BabDemo",
    "nnUNetTrainerNoLateralMirroring",
    "nnUNetTrainerUprightAugmentation",
    "nnUNetTrainer_BabDemo",
)
