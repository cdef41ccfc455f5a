"""Re-export shim for nnU-Net's trainer lookup (``nnUNet_extTrainer`` points at this folder).

nnU-Net imports the modules of that folder as top-level modules and then drops them from ``sys.modules``; the
classes themselves live in the installed package, so their identity and pickling stay intact. Keep this file to
re-exports only: no code with side effects. The folder deliberately has no ``__init__.py``.
"""

from nnunet_babloss.nnunet.trainers import (
    BaBLossTrainer,
    BaBLossTrainer_BabDemo,
    BaBLossTrainer_cosine,
    BaBLossTrainer_released,
    BaBLossTrainer_softBoundary,
    HeatmapTrainer,
    HeatmapTrainer_BabDemo,
    nnUNetTrainer_BabDemo,
)

__all__ = [
    "BaBLossTrainer",
    "BaBLossTrainer_BabDemo",
    "BaBLossTrainer_cosine",
    "BaBLossTrainer_released",
    "BaBLossTrainer_softBoundary",
    "HeatmapTrainer",
    "HeatmapTrainer_BabDemo",
    "nnUNetTrainer_BabDemo",
]
