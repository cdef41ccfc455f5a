"""End to end: the README's demo drives the real nnU-Net commands and scores its predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_babloss.demo import DemoSettings, run_demo

pytestmark = pytest.mark.e2e


def test_demo_runs_the_whole_pipeline_and_reports_metrics(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_demo(DemoSettings(work_dir=tmp_path), report=messages.append)

    # Every nnU-Net step ran and logged.
    for step in ("plan and preprocess", "train", "predict"):
        assert any(message.startswith(f"[{step}] done") for message in messages), messages
    # The stratified split reached nnU-Net (it copies splits_final.json from the raw dataset).
    splits = json.loads((tmp_path / "nnUNet_preprocessed" / "Dataset987_BabSynthetic" / "splits_final.json").read_text())
    assert len(splits) == 2
    # One prediction per test case, and metrics for both structures.
    predictions = sorted(path.name for path in result.prediction_folder.glob("*.nii.gz"))
    assert predictions == [f"synth_test_{index:03d}.nii.gz" for index in range(4)]
    summary = json.loads(result.summary_path.read_text())
    means = summary["segmentation"]["mean_per_label"]
    assert set(means) == {"disc", "bar"}
    # The disc is a bright ellipse on a dark background: even 30 iterations learn it well above chance.
    assert means["disc"]["dice"] > 0.5
