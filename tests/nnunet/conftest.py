"""One run of the real nnU-Net pipeline on the synthetic dataset, shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_babloss.demo import DemoResult, DemoSettings, run_demo


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
