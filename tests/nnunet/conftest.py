"""One run of the real nnU-Net pipeline on the synthetic dataset, shared by the end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnunet_babloss.apps.demo import (
    DemoResult,
    DemoSettings,
    nnunet_command,
    nnunet_environment,
    run_demo,
    run_nnunet_step,
    training_environment,
)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, list[str]]:
    """The demo (plan/preprocess -> BaBLossTrainer_BabDemo -> predict -> evaluate), run once per session."""
    messages: list[str] = []
    work_dir = tmp_path_factory.mktemp("demo")
    return run_demo(DemoSettings(work_dir=work_dir), report=messages.append), messages


@pytest.fixture()
def nnunet_paths(demo_run, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point nnU-Net's environment at the demo's folders for an in-process test; returns the work folder."""
    work_dir = demo_run[0].dataset_folder.parents[1]
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(work_dir / name))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_compile", "f")
    return work_dir


@pytest.fixture(scope="session")
def train_on_demo_dataset(demo_run):
    """A function ``trainer -> model folder`` that runs ``nnUNetv2_train 987 2d 0 -tr trainer`` on the demo's
    preprocessed dataset (reused, not re-planned); the folder is ``<results>/<dataset>/<trainer>__nnUNetPlans__2d``."""
    result, _ = demo_run
    work_dir = result.dataset_folder.parents[1]
    environment = nnunet_environment(work_dir, os.environ)

    def train(trainer: str) -> Path:
        run_nnunet_step(
            f"train {trainer}", [nnunet_command("nnUNetv2_train"), "987", "2d", "0", "-tr", trainer, "-device", "cpu"],
            training_environment(environment), work_dir / "logs", lambda message: None,
        )
        return Path(environment["nnUNet_results"]) / result.dataset_folder.name / f"{trainer}__nnUNetPlans__2d"

    return train
