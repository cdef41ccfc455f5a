"""The gaze modules below the nnU-Net glue import neither nnU-Net nor batchgenerators, nor the CRF package."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_GAZE_MODULES = [
    "nnunet_babloss.gazesup.levels",
    "nnunet_babloss.gazesup.losses",
    "nnunet_babloss.gazesup.network",
    "pseudo_labels.gaze.gaze_csv",
    "pseudo_labels.gaze.heatmap",
    "pseudo_labels.gaze.crf",
    "pseudo_labels.gaze.simulator",
    "pseudo_labels.gaze.pipeline",
    "pseudo_labels.gaze.cli",
]


FORBIDDEN = ("nnunetv2", "batchgeneratorsv2", "batchgenerators", "dynamic_network_architectures", "pydensecrf")


def test_gaze_modules_import_no_nnunet_and_no_crf_package() -> None:
    # One interpreter, modules imported in turn: the first module that pulls in a forbidden package is named (a
    # later module cannot hide behind an earlier one, which would have been reported first).
    code = (
        "import sys, importlib, json\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "report = {}\n"
        f"for module in {PURE_GAZE_MODULES!r}:\n"
        "    importlib.import_module(module)\n"
        "    report[module] = sorted(n for n in sys.modules if n.split('.')[0] in forbidden)\n"
        "print(json.dumps(report))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    report = json.loads(completed.stdout.strip().splitlines()[-1])
    offenders = {module: names for module, names in report.items() if names}
    assert not offenders, f"pure gaze modules pull in {offenders}"


def test_missing_crf_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from pseudo_labels.gaze import crf

    real_import = builtins.__import__

    def refuse(name: str, *args, **kwargs):  # noqa: ANN002, ANN003
        if name.startswith("pydensecrf"):
            raise ImportError("No module named 'pydensecrf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ImportError, match=r"nnunet-babloss\[gaze\]"):
        crf.load_densecrf()
