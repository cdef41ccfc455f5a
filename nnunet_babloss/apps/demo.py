"""The end-to-end demo: synthetic heterogeneous dataset -> plan/preprocess -> train -> predict -> evaluate.

Each step runs the real command line, exactly as a user would type it (``nnUNetv2_plan_and_preprocess``,
``nnUNetv2_train``, then our ``nnUNetv2_bab_predict``, which writes the segmentations and ``<case>.json`` landmark
files), in a self-contained work folder (its own ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results``): the
user's nnU-Net folders are never touched. The test cases are scored for segmentation and landmarks, next to the
mean-training-shape baselines (no image, no network), and overlay PNGs show the predicted landmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_babloss.core.evaluation import SDR_THRESHOLDS_MM, evaluate_folders
from nnunet_babloss.ext_trainers_path import with_ext_trainer_dir
from nnunet_babloss.core.landmarks.baseline import write_mean_shape_predictions
from nnunet_babloss.core.landmarks.spec import LandmarkSpec
from nnunet_babloss.apps.synthetic import SyntheticDatasetConfig, case_identifiers, generate_synthetic_dataset

__all__ = [
    "BASELINES",
    "DemoResult",
    "DemoSettings",
    "format_report",
    "nnunet_command",
    "nnunet_environment",
    "run_demo",
    "run_nnunet_step",
    "training_environment",
]

#: The landmark baselines scored next to the model: name -> ``aligned`` argument of
#: :func:`~nnunet_babloss.core.landmarks.baseline.write_mean_shape_predictions`.
BASELINES: dict[str, bool] = {"mean training shape": False, "similarity-aligned mean training shape": True}


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The defaults finish in about two minutes on a 2-core CPU.

    ``landmark_threshold`` is ``nnUNetv2_bab_predict``'s ``--landmark-threshold``: a landmark whose heatmap peak is
    below it is written as absent (``null``) and counted as missed. The default is the predictor's own (0.3).
    """

    work_dir: Path
    dataset_id: int = 987
    configuration: str = "2d"
    fold: int = 0
    trainer: str = "BaBLossTrainer_BabDemo"
    device: str = "cpu"
    dataset: SyntheticDatasetConfig = SyntheticDatasetConfig()
    landmark_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.landmark_threshold <= 1.0:
            raise ValueError(f"landmark_threshold must be in [0, 1] (a heatmap peak), got {self.landmark_threshold}")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, and what it measured.

    ``summary`` is the model's ``summary.json`` (``"segmentation"`` and ``"landmarks"``); ``baseline_summaries``
    maps each name of :data:`BASELINES` to the ``"landmarks"`` part of its own ``summary.json``; ``step_seconds``
    holds the wall time of every step, ``total_seconds`` that of the whole run.
    """

    dataset_folder: Path
    results_folder: Path
    prediction_folder: Path
    summary_path: Path
    summary: dict
    trainer: str = ""
    landmark_threshold: float = 0.3
    overlay_folder: Path | None = None
    baseline_folders: dict[str, Path] = field(default_factory=dict)
    baseline_summaries: dict[str, dict] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


def nnunet_environment(work_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """Environment for nnU-Net subprocesses: the work folder's nnU-Net paths, our trainers, small CPU settings."""
    environment = with_ext_trainer_dir(base)
    environment.update(
        {
            "nnUNet_raw": str(work_dir / "nnUNet_raw"),
            "nnUNet_preprocessed": str(work_dir / "nnUNet_preprocessed"),
            "nnUNet_results": str(work_dir / "nnUNet_results"),
        }
    )
    # Small-machine defaults; a user's explicit setting wins. nnU-Net gives CPU training one torch thread per core,
    # and OpenMP's busy-waiting threads then fight any other load for the cores: on a 2-core machine at load
    # average ~5, one training iteration of the demo's network took 3.4 s busy-waiting and 0.44 s waiting passively.
    for key, value in (("nnUNet_def_n_proc", "1"), ("nnUNet_compile", "f"), ("OMP_WAIT_POLICY", "PASSIVE")):
        environment.setdefault(key, value)
    return environment


def training_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """Single-threaded augmentation for training (planning must not see ``nnUNet_n_proc_DA=0``: it calls
    ``torch.set_num_threads`` with that value and fails)."""
    result = dict(environment)
    result.setdefault("nnUNet_n_proc_DA", "0")
    return result


def nnunet_command(name: str) -> str:
    """Resolve an nnU-Net console script, preferring the one installed beside this interpreter."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"command {name!r} not found: is nnunetv2 installed in this environment?")
    return found


def run_nnunet_step(
    title: str, arguments: Sequence[str], environment: Mapping[str, str], log_folder: Path, report: Callable[[str], None]
) -> float:
    """Run one command with its output in ``<log_folder>/<title>.log``; returns its wall time in seconds.

    Raises:
        RuntimeError: the command failed (the message holds the end of its log).
    """
    log_path = log_folder / f"{title.replace(' ', '_')}.log"
    report(f"[{title}] {' '.join([Path(arguments[0]).name, *arguments[1:]])}")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(list(arguments), env=dict(environment), stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise RuntimeError(f"step '{title}' failed with exit code {completed.returncode}; log {log_path}:\n{tail}")
    report(f"[{title}] done in {elapsed:.1f} s (log: {log_path})")
    return elapsed


def run_demo(settings: DemoSettings, report: Callable[[str], None] = print) -> DemoResult:
    """Run the whole pipeline in ``settings.work_dir`` and return where the outputs and metrics are.

    Steps: write the synthetic dataset; ``nnUNetv2_plan_and_preprocess``; ``nnUNetv2_train`` (fold
    ``settings.fold``); ``nnUNetv2_bab_predict`` on ``imagesTs`` (segmentations + ``<case>.json`` landmarks); the
    mean-training-shape baselines from the landmark files of the fold's training cases; the evaluation of the
    predictions (segmentation and landmarks, with overlays in ``evaluation/overlays``) and of the baselines.

    Raises:
        FileExistsError: if the work folder already holds the demo dataset.
        RuntimeError: if an nnU-Net step fails (the message holds the end of its log).
    """
    started = time.perf_counter()
    work_dir = settings.work_dir.resolve()
    log_folder = work_dir / "logs"
    log_folder.mkdir(parents=True, exist_ok=True)
    environment = nnunet_environment(work_dir, os.environ)

    dataset_folder, dataset_json = _write_demo_dataset(settings, work_dir, report)
    prediction_folder = work_dir / "predictions"
    step_seconds = _run_nnunet_steps(settings, dataset_folder, prediction_folder, environment, log_folder, report)

    evaluation_started = time.perf_counter()
    test_cases = list(case_identifiers(dataset_folder / "imagesTs", f"_0000{dataset_json['file_ending']}"))
    training_cases = _fold_training_cases_with_landmarks(dataset_folder, settings.fold)
    baseline_folders, baseline_summaries = _score_baselines(
        work_dir, dataset_folder, dataset_json, test_cases, training_cases
    )
    report(
        f"[baselines] {', '.join(BASELINES)} of the {len(training_cases)} landmark files of fold {settings.fold}'s "
        f"training cases, predicted for every test case ({work_dir / 'baselines'})"
    )
    result = evaluate_folders(
        prediction_folder, dataset_json, reference_labels_folder=dataset_folder / "labelsTs",
        reference_landmarks_folder=dataset_folder / "landmarksTs", output_folder=work_dir / "evaluation",
        images_folder=dataset_folder / "imagesTs", write_overlays=True,
    )
    overlay_folder = Path(result.summary["overlays"]["folder"])
    step_seconds["evaluate"] = time.perf_counter() - evaluation_started
    report(
        f"[evaluate] done in {step_seconds['evaluate']:.1f} s: {result.summary_path}, "
        f"{result.summary['overlays']['num_files']} overlay PNGs in {overlay_folder}"
    )
    results_folder = Path(environment["nnUNet_results"])
    return DemoResult(
        dataset_folder, results_folder, prediction_folder, result.summary_path, result.summary,
        trainer=settings.trainer, landmark_threshold=settings.landmark_threshold, overlay_folder=overlay_folder,
        baseline_folders=baseline_folders, baseline_summaries=baseline_summaries, step_seconds=step_seconds,
        total_seconds=time.perf_counter() - started,
    )


def _write_demo_dataset(settings: DemoSettings, work_dir: Path, report: Callable[[str], None]) -> tuple[Path, dict]:
    """Write the synthetic dataset into ``<work_dir>/nnUNet_raw``; return its folder and its ``dataset.json``.

    Raises:
        FileExistsError: if the work folder already holds the demo dataset.
    """
    report(f"[dataset] writing a synthetic heterogeneous dataset to {work_dir / 'nnUNet_raw'}")
    dataset_folder = generate_synthetic_dataset(work_dir / "nnUNet_raw", settings.dataset_id, config=settings.dataset)
    dataset_json = json.loads((dataset_folder / "dataset.json").read_text())
    kinds = dataset_json["annotations"]
    report(
        "[dataset] {} training cases: {} mask-only, {} landmark-only, {} with both; {} test cases".format(
            len(kinds), *(sum(kind == k for kind in kinds.values()) for k in ("mask_only", "landmark_only", "both")),
            settings.dataset.num_test,
        )
    )
    return dataset_folder, dataset_json


def _run_nnunet_steps(
    settings: DemoSettings,
    dataset_folder: Path,
    prediction_folder: Path,
    environment: Mapping[str, str],
    log_folder: Path,
    report: Callable[[str], None],
) -> dict[str, float]:
    """Plan and preprocess, train and predict the test images with the nnU-Net commands; return each step's seconds.

    Raises:
        RuntimeError: if an nnU-Net step fails (the message holds the end of its log).
    """
    step_seconds: dict[str, float] = {}
    dataset = str(settings.dataset_id)
    step_seconds["plan and preprocess"] = run_nnunet_step(
        "plan and preprocess",
        [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", dataset, "-c", settings.configuration, "-np", "1",
         "-npfp", "1", "--verify_dataset_integrity"],
        environment, log_folder, report,
    )
    step_seconds["train"] = run_nnunet_step(
        "train",
        [nnunet_command("nnUNetv2_train"), dataset, settings.configuration, str(settings.fold), "-tr", settings.trainer,
         "-device", settings.device],
        training_environment(environment), log_folder, report,
    )
    # -npp 0 -nps 0: preprocessing and export in this process; worker processes would each import torch and
    # nnU-Net again, which costs more than the handful of small test cases.
    step_seconds["predict"] = run_nnunet_step(
        "predict",
        [nnunet_command("nnUNetv2_bab_predict"), "-i", str(dataset_folder / "imagesTs"), "-o", str(prediction_folder),
         "-d", dataset, "-c", settings.configuration, "-f", str(settings.fold), "-tr", settings.trainer, "-device",
         settings.device, "-npp", "0", "-nps", "0", "--disable_progress_bar", "--landmark-threshold",
         f"{settings.landmark_threshold:g}"],
        environment, log_folder, report,
    )
    return step_seconds


def _score_baselines(
    work_dir: Path, dataset_folder: Path, dataset_json: dict, test_cases: list[str], training_cases: list[str]
) -> tuple[dict[str, Path], dict[str, dict]]:
    """Write and evaluate every baseline of :data:`BASELINES`; return their folders and ``"landmarks"`` summaries."""
    spec = LandmarkSpec.from_dataset_json(dataset_json)
    baseline_folders: dict[str, Path] = {}
    baseline_summaries: dict[str, dict] = {}
    for name, aligned in BASELINES.items():
        folder = work_dir / "baselines" / name.replace(" ", "_").replace("-", "_")
        write_mean_shape_predictions(
            dataset_folder / "landmarksTr", spec, test_cases, folder, training_cases=training_cases, aligned=aligned
        )
        baseline_folders[name] = folder
        baseline_summaries[name] = evaluate_folders(
            folder, dataset_json, reference_landmarks_folder=dataset_folder / "landmarksTs",
            output_folder=folder / "evaluation",
        ).summary["landmarks"]
    return baseline_folders, baseline_summaries


def _fold_training_cases_with_landmarks(dataset_folder: Path, fold: int) -> list[str]:
    """The training cases of ``fold`` (the dataset's ``splits_final.json``) that have a landmark file: exactly the
    landmark annotations the model learned from, so the baselines see the same data.

    Raises:
        ValueError: the split file has no such fold, or none of its training cases has landmarks.
    """
    splits = json.loads((dataset_folder / "splits_final.json").read_text())
    if not 0 <= fold < len(splits):
        raise ValueError(f"fold {fold} not in {dataset_folder / 'splits_final.json'} ({len(splits)} folds)")
    cases = sorted(case for case in splits[fold]["train"] if (dataset_folder / "landmarksTr" / f"{case}.json").is_file())
    if not cases:
        raise ValueError(f"no training case of fold {fold} has a landmark file in {dataset_folder / 'landmarksTr'}")
    return cases


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(result: DemoResult) -> str:
    """The demo's metrics as text: segmentation per label, then the landmarks of the model and of the baselines.

    Landmark rows: found (predicted and in the reference) out of the reference landmarks, missed (in the
    reference, predicted absent because the heatmap peak is below the threshold), MRE ± SD and SDR over the found
    ones. The baselines place every landmark, so they miss none.
    """
    lines = []
    segmentation = result.summary.get("segmentation", {})
    means = segmentation.get("mean_per_label", {})
    if means:
        tolerance = result.summary.get("nsd_tolerance_mm", 1.0)
        lines.append(f"Segmentation, mean over {segmentation.get('num_cases', '?')} test cases:")
        lines.append(f"  {'label':<10} {'Dice':>6} {'HD95 mm':>8} {f'NSD@{tolerance:g}mm':>10}")
        for label, metrics in means.items():
            lines.append(
                f"  {label:<10} {_number(metrics.get('dice'), 3):>6} {_number(metrics.get('hd95_mm')):>8} "
                f"{_number(metrics.get('nsd'), 3):>10}"
            )
        lines.append("")
    landmarks = result.summary.get("landmarks")
    if landmarks is not None:
        thresholds = " / ".join(f"{value:g}" for value in SDR_THRESHOLDS_MM)
        lines.append(
            f"Landmarks, {landmarks['num_cases']} test cases; landmark threshold {result.landmark_threshold:g} (a "
            "landmark whose heatmap peak is below it is reported missing):"
        )
        width = max(len(name) for name in [result.trainer or "model", *result.baseline_summaries])
        lines.append(f"  {'':<{width}} {'found':>7} {'missed':>6} {'MRE ± SD mm':>13}   SDR {thresholds} mm")
        rows = [(result.trainer or "model", landmarks), *result.baseline_summaries.items()]
        for name, summary in rows:
            reference = summary["n_evaluated"] + summary["n_missed"]
            sdr = " / ".join(_number(summary["sdr"].get(str(float(value)))) for value in SDR_THRESHOLDS_MM)
            mre = f"{_number(summary['mre_mm'])} ± {_number(summary['sd_mm'])}"
            lines.append(
                f"  {name:<{width}} {summary['n_evaluated']:>3}/{reference:<3} {summary['n_missed']:>6} {mre:>13}   {sdr}"
            )
    return "\n".join(lines)
