"""Dependencies point one way: the pure core imports neither nnU-Net nor batchgenerators."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_MODULES = [
    "nnunet_babloss.landmarks.spec",
    "nnunet_babloss.landmarks.io",
    "nnunet_babloss.landmarks.geometry",
    "nnunet_babloss.landmarks.baseline",
    "nnunet_babloss.heatmaps",
    "nnunet_babloss.uvmaps",
    "nnunet_babloss.uv_losses",
    "nnunet_babloss.boundary",
    "nnunet_babloss.metrics",
    "nnunet_babloss.splits",
    "nnunet_babloss.synthetic",
    "nnunet_babloss.evaluation",
    "nnunet_babloss.atomic_output",
    "nnunet_babloss.command_line",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_does_not_import_nnunet(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "bad = sorted(name for name in sys.modules if name.split('.')[0] in ('nnunetv2', 'batchgeneratorsv2', "
        "'batchgenerators', 'dynamic_network_architectures')); print(','.join(bad))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "", f"{module} pulls in {completed.stdout.strip()}"
