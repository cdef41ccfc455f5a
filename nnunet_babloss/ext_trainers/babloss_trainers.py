"""Re-export shim for nnU-Net's trainer lookup (``nnUNet_extTrainer`` points at this folder).

nnU-Net imports the modules of that folder as top-level modules and then drops them from ``sys.modules``; the
classes themselves live in the installed package, so their identity and pickling stay intact. Keep this file to
re-exports only: no code with side effects. The folder deliberately has no ``__init__.py``.
"""

from nnunet_babloss.trainers import (
    BaBLossTrainer,
    BaBLossTrainer_BabDemo,
    BaBLossTrainer_cosine,
    BaBLossTrainer_released,
    BaBLossTrainer_softBoundary,
    BoundaryPretrainer,
    BoundaryPretrainer_BabDemo,
    BoundaryPretrainer_released,
    DenseSegTrainer,
    DenseSegTrainer_BabDemo,
    GazeSupTrainer,
    GazeSupTrainer_BabDemo,
    HeatmapTrainer,
    HeatmapTrainer_BabDemo,
    nnUNetTrainerNoLateralMirroring,
    nnUNetTrainer_BabDemo,
)

__all__ = [
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
    "nnUNetTrainer_BabDemo",
]
