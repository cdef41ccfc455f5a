"""The end-to-end demo: synthetic heterogeneous dataset -> plan/preprocess -> train -> predict -> evaluate.

Each step runs the real nnU-Net command line, exactly as a user would type it, in a self-contained work folder
(its own ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results``): the user's nnU-Net folders are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_babloss.evaluation import evaluate_folders
from nnunet_babloss.ext_trainers_path import with_ext_trainer_dir
from nnunet_babloss.synthetic import SyntheticDatasetConfig, generate_synthetic_dataset

__all__ = ["DemoSettings", "DemoResult", "nnunet_command", "nnunet_environment", "run_demo", "run_nnunet_step", "training_environment"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The defaults finish in a few minutes on a 2-core CPU."""

    work_dir: Path
    dataset_id: int = 987
    configuration: str = "2d"
    fold: int = 0
    trainer: str = "BaBLossTrainer_BabDemo"
    device: str = "cpu"
    dataset: SyntheticDatasetConfig = SyntheticDatasetConfig()


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things."""

    dataset_folder: Path
    results_folder: Path
    prediction_folder: Path
    summary_path: Path
    summary: dict


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
    # Small-machine defaults; a user's explicit setting wins.
    for key, value in (("nnUNet_def_n_proc", "1"), ("nnUNet_compile", "f")):
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


def run_nnunet_step(title: str, arguments: Sequence[str], environment: Mapping[str, str], log_folder: Path, report: Callable[[str], None]) -> None:
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


def run_demo(settings: DemoSettings, report: Callable[[str], None] = print) -> DemoResult:
    """Run the whole pipeline in ``settings.work_dir`` and return where the outputs and metrics are.

    Raises:
        FileExistsError: if the work folder already holds the demo dataset.
        RuntimeError: if an nnU-Net step fails (the message holds the end of its log).
    """
    work_dir = settings.work_dir.resolve()
    log_folder = work_dir / "logs"
    log_folder.mkdir(parents=True, exist_ok=True)
    environment = nnunet_environment(work_dir, os.environ)

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
    dataset = str(settings.dataset_id)
    run_nnunet_step(
        "plan and preprocess",
        [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", dataset, "-c", settings.configuration, "-np", "1",
         "-npfp", "1", "--verify_dataset_integrity"],
        environment, log_folder, report,
    )
    run_nnunet_step(
        "train",
        [nnunet_command("nnUNetv2_train"), dataset, settings.configuration, str(settings.fold), "-tr", settings.trainer,
         "-device", settings.device],
        training_environment(environment), log_folder, report,
    )
    prediction_folder = work_dir / "predictions"
    run_nnunet_step(
        "predict",
        [nnunet_command("nnUNetv2_predict"), "-i", str(dataset_folder / "imagesTs"), "-o", str(prediction_folder), "-d",
         dataset, "-c", settings.configuration, "-f", str(settings.fold), "-tr", settings.trainer, "-device",
         settings.device, "-npp", "1", "-nps", "1"],
        environment, log_folder, report,
    )
    result = evaluate_folders(
        prediction_folder, dataset_json, reference_labels_folder=dataset_folder / "labelsTs",
        output_folder=work_dir / "evaluation",
    )
    results_folder = Path(environment["nnUNet_results"])
    return DemoResult(dataset_folder, results_folder, prediction_folder, result.summary_path, result.summary)
