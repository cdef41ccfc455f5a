"""Re-export shim for nnU-Net's trainer lookup (``nnUNet_extTrainer`` points at this folder).

nnU-Net imports the modules of that folder as top-level modules and then drops them from ``sys.modules``; the
classes themselves live in the installed package, so their identity and pickling stay intact. Keep this file to
re-exports only: no code with side effects. The folder deliberately has no ``__init__.py``. The names come from
:data:`nnunet_babloss.trainer_names.TRAINER_NAMES`, the one list of our trainers.
"""

from nnunet_babloss import trainers as _trainers
from nnunet_babloss.trainer_names import TRAINER_NAMES

globals().update({name: getattr(_trainers, name) for name in TRAINER_NAMES})

__all__ = list(TRAINER_NAMES)
