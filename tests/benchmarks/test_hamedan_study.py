"""The Hamedan study script's --smoke mode end to end: conversion, training, prediction, scoring vs annotators."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.e2e
def test_smoke_run_scores_the_model_against_each_annotator(shared_data, tmp_path) -> None:
    results = tmp_path / "work" / "results"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "hamedan_study.py"), "--work-dir", str(tmp_path / "work"), "--smoke",
         "--heatmap-loss", "bce", "--data-root", str(shared_data)],
        check=True, capture_output=True, text=True, encoding="utf-8", errors="replace",
    )
    report = json.loads((results / "hamedan_study_bce.json").read_text())
    assert report["heatmap_loss"] == "bce" and report["num_train"] == 6 and report["num_val"] == 2
    (validation,) = report["scores"]["validation"]  # one seed
    assert set(validation) == {"model_vs_mean", "model_vs_mollabashi", "model_vs_farhadifar", "inter_annotator"}
    assert validation["model_vs_mean"]["px"]["n"] == 19 * 2  # every landmark of both validation cases is scored
    assert validation["inter_annotator"]["px"]["mre"] > 0
    markdown = (results / "hamedan_study_bce.md").read_text()
    assert "heatmap_loss_kind bce" in markdown and report["heatmap_settings"]["heatmap_min_sigma_vox"] == 4.0
    # The mean training shape of the 6 training cases, scored like the model (pixels and nominal mm).
    assert set(report["baselines"]) == {"mean_shape", "mean_shape_aligned"}
    for baseline in report["baselines"].values():
        assert baseline["num_training_cases"] == 6
        against_mean = baseline["scores"]["validation"]["model_vs_mean"]
        assert against_mean["px"]["n"] == 19 * 2
        assert math.isfinite(against_mean["px"]["mre"]) and against_mean["px"]["mre"] > 0
        assert against_mean["mm_nominal"]["mre"] == pytest.approx(against_mean["px"]["mre"] * 0.1)
        assert f"| {baseline['label']} vs mean |" in markdown
    worse = validation["model_vs_mean"]["px"]["mre"] > report["baselines"]["mean_shape"]["scores"]["validation"][
        "model_vs_mean"]["px"]["mre"]
    assert any(line.startswith("WARNING:") for line in markdown.splitlines()) == worse
    assert ("WARNING:" in completed.stderr) == worse
