"""One list of trainers: the trainer package and the nnUNet_extTrainer shim export exactly TRAINER_NAMES."""

from __future__ import annotations

import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path

import nnunet_babloss
from nnunet_babloss.ext_trainers_path import EXT_TRAINER_DIR
from nnunet_babloss.trainer_names import TRAINER_NAMES


def _package_trainer_classes() -> dict[str, type]:
    """Every nnUNetTrainer subclass defined in a module of nnunet_babloss (found by walking the package)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    found: dict[str, type] = {}
    for module_info in pkgutil.walk_packages(nnunet_babloss.__path__, prefix="nnunet_babloss."):
        if ".cli." in module_info.name or module_info.name.endswith((".__main__", ".cli")):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, nnUNetTrainer) and value.__module__ == module.__name__:
                found[name] = value
    return found


def test_every_trainer_of_the_package_is_listed_once() -> None:
    assert len(set(TRAINER_NAMES)) == len(TRAINER_NAMES)
    assert sorted(_package_trainer_classes()) == sorted(TRAINER_NAMES)


def test_trainer_package_and_shim_export_exactly_the_list() -> None:
    from nnunet_babloss import trainers

    assert set(trainers.__all__) - {"ScheduleSettings"} == set(TRAINER_NAMES)
    spec = importlib.util.spec_from_file_location("babloss_trainers_list_probe", EXT_TRAINER_DIR / "babloss_trainers.py")
    assert spec is not None and spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    assert shim.__all__ == list(TRAINER_NAMES)
    for name in TRAINER_NAMES:
        assert getattr(shim, name) is getattr(trainers, name)
    assert Path(nnunet_babloss.__file__).parent / "ext_trainers" == EXT_TRAINER_DIR
    assert "babloss_trainers_list_probe" not in sys.modules
