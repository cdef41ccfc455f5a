"""Where the trainer re-export shim lives, for ``nnUNet_extTrainer``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["EXT_TRAINER_DIR", "with_ext_trainer_dir"]

EXT_TRAINER_DIR = Path(__file__).resolve().parent / "ext_trainers"


def with_ext_trainer_dir(environment: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``environment`` whose ``nnUNet_extTrainer`` also lists :data:`EXT_TRAINER_DIR`."""
    result = dict(environment)
    existing = [path for path in result.get("nnUNet_extTrainer", "").split(os.pathsep) if path]
    if str(EXT_TRAINER_DIR) not in existing:
        existing.append(str(EXT_TRAINER_DIR))
    result["nnUNet_extTrainer"] = os.pathsep.join(existing)
    return result
