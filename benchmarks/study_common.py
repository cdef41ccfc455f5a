"""Shared machinery of the real-data studies (``jsrt_study.py``, ``hamedan_study.py``).

One study = a few nnU-Net raw datasets, one fixed 2D configuration written into each dataset's plans (so every
variant trains with the same spacing, patch, batch and network), one explicit train/validation split, and a list of
(variant, seed) trainings run with the stock ``nnUNetv2_train``. nnU-Net's own end-of-training validation predicts
the held-out validation cases (our trainers also write their landmarks); they are scored with
:func:`nnunet_babloss.core.evaluation.evaluate_folders`. Learning curves come from the logs nnU-Net stores in
``checkpoint_final.pth``.

Schedules and seeds are class attributes (nnU-Net rebuilds trainers by class name), so each study writes a small
module of trainer classes (``<Trainer>_Study_s<seed>``) into its work folder and adds that folder to
``nnUNet_extTrainer`` next to this package's own.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment, training_environment  # noqa: E402
from nnunet_babloss.core.landmarks.baseline import write_mean_shape_predictions  # noqa: E402
from nnunet_babloss.core.landmarks.spec import LandmarkSpec  # noqa: E402
from nnunet_babloss.core.losses import HEATMAP_LOSS_KINDS  # noqa: E402

STUDY_CONFIGURATION = "2d_study"
SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)

#: Trainer bases a study can use; the generated classes add the study schedule and a seed.
TRAINER_BASES = {
    "nnUNetTrainer": ("nnunet_babloss.nnunet.mirroring", "nnUNetTrainerNoLateralMirroring"),
    "nnUNetTrainerUprightAugmentation": ("nnunet_babloss.nnunet.upright_augmentation", "nnUNetTrainerUprightAugmentation"),
    "HeatmapTrainer": ("nnunet_babloss.trainers", "HeatmapTrainer"),
    "BaBLossTrainer": ("nnunet_babloss.trainers", "BaBLossTrainer"),
    "DenseSegTrainer": ("nnunet_babloss.denseseg.trainer", "DenseSegTrainer"),
}


@dataclass(frozen=True)
class Schedule:
    """Training length of every variant of a study."""

    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int

    @property
    def iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch


def machine_description() -> dict[str, object]:
    """The machine the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_cores_visible": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def trainer_class_name(base: str, seed: int) -> str:
    return f"{base}_Study_s{seed}"


#: Bases trained with a heatmap loss (``HeatmapTrainer.heatmap_loss_kind``).
HEATMAP_LOSS_BASES = ("HeatmapTrainer", "BaBLossTrainer")
#: Segmentation-only bases: predicted with nnUNetv2_predict, no landmarks scored, no schedule settings of their own.
SEGMENTATION_ONLY_BASES = ("nnUNetTrainer", "nnUNetTrainerUprightAugmentation")
HEATMAP_LOSSES = HEATMAP_LOSS_KINDS

#: ``--augmentation nnunet``: the heatmap trainers' attributes that restore nnU-Net's segmentation-style sampling and
#: augmentation (the pre-issue-15 behaviour), for the sweep that chose the landmark defaults.
NNUNET_STYLE_AUGMENTATION = {
    "image_centred_patches": False,
    "landmark_rotation_deg": None,
    "landmark_scaling": None,
    "mirror_only_lateral": False,
}


def add_heatmap_options(parser) -> None:
    """``--heatmap-loss``, ``--sigma-vox``, ``--augmentation``: the landmark settings a study can sweep (each
    defaults to ``HeatmapTrainer``'s own default, so a study without them measures what users get)."""
    parser.add_argument("--heatmap-loss", default=None, choices=HEATMAP_LOSSES,
                        help="heatmap loss of the heatmap trainers: bce (cross-entropy of the logits) or mse (the "
                             "paper's squared error of sigmoid outputs) (default: the trainer's, bce)")
    parser.add_argument("--sigma-vox", type=float, default=None,
                        help="lower bound of the heatmap sigma in output voxels (default: the trainer's "
                             "heatmap_min_sigma_vox)")
    parser.add_argument("--augmentation", default="landmark", choices=("landmark", "nnunet"),
                        help="landmark: the trainer's landmark defaults (image-centred patches, rotation +-10 deg, "
                             "scaling 0.9-1.1, lateral flips only with mirror pairs); nnunet: nnU-Net's "
                             "segmentation-style sampling and augmentation (default: landmark)")


def trained_heatmap_settings(fold: Path) -> dict[str, object] | None:
    """The heatmap settings a trained model actually used, read back from nnU-Net's ``debug.json`` in ``fold``.

    nnU-Net writes every trainer attribute there as text; ``None`` if the file is missing. The report's settings
    come from the checkout's class defaults, the model's from the code that trained it (``--code-snapshot``, or a
    finished run reused from an older study): this is how a study notices when the two differ.
    """
    debug = Path(fold) / "debug.json"
    if not debug.is_file():
        return None
    recorded = json.loads(debug.read_text())
    settings: dict[str, object] = {}
    for name in ("heatmap_loss_kind", "heatmap_min_sigma_vox", *NNUNET_STYLE_AUGMENTATION):
        if name not in recorded:
            continue
        value = recorded[name]
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):  # a plain word such as bce
                pass
        settings[name] = value
    return json.loads(json.dumps(settings))


def settings_warning(what: str, expected: Mapping[str, object], fold: Path) -> str | None:
    """A ``WARNING:`` line (also printed to stderr) when the model in ``fold`` trained with other heatmap settings
    than the report states (``expected``, see :func:`effective_heatmap_settings`)."""
    trained = trained_heatmap_settings(fold)
    if trained is None:
        return None
    differing = {name: value for name, value in trained.items() if expected.get(name) != value}
    if not differing:
        return None
    stated = {name: expected.get(name) for name in differing}
    line = (f"WARNING: {what} trained with {differing} (its debug.json), not the {stated} this report states: "
            "it was trained by other code (a reused run or a --code-snapshot with other defaults).")
    print(line, file=sys.stderr, flush=True)
    return line


def heatmap_attributes(args) -> dict[str, object]:
    """The heatmap-trainer class attributes that ``args`` (see :func:`add_heatmap_options`) set, explicitly."""
    attributes: dict[str, object] = {}
    if args.heatmap_loss is not None:
        attributes["heatmap_loss_kind"] = args.heatmap_loss
    if args.sigma_vox is not None:
        attributes["heatmap_min_sigma_vox"] = float(args.sigma_vox)
    if args.augmentation == "nnunet":
        attributes.update(NNUNET_STYLE_AUGMENTATION)
    return attributes


def effective_heatmap_settings(attributes: Mapping[str, object]) -> dict[str, object]:
    """What the heatmap trainers train with: their defaults, overridden by ``attributes`` (for the reports)."""
    from nnunet_babloss.nnunet.heatmap_trainer import HeatmapTrainer

    names = ("heatmap_loss_kind", "heatmap_min_sigma_vox", *NNUNET_STYLE_AUGMENTATION)
    settings = {name: getattr(HeatmapTrainer, name) for name in names}
    settings.update(attributes)
    return json.loads(json.dumps(settings))


def reproducibility_record(environment: Mapping[str, str], device: str) -> dict[str, str]:
    """What a study seeds and what it cannot, for its report."""
    processes = training_environment(environment).get("nnUNet_n_proc_DA", "")
    record = {
        "seeded": "Python, NumPy and torch generators (schedule_seed = the study seed, before the network is built), "
                  "the validation split (--split-seed)",
        "nnUNet_n_proc_DA": processes,
    }
    unseeded = []
    if processes != "0":
        unseeded.append(f"batch order of nnU-Net's {processes}-process augmentation (timing-dependent)")
    if device == "cuda":
        unseeded.append("GPU kernels (cuDNN/atomics are not deterministic; torch.use_deterministic_algorithms is off)")
    record["not_seeded"] = "; ".join(unseeded) or (
        "nothing known: single-process augmentation on the CPU (a full rerun of the README's Hamedan command in a "
        "new work folder gave identical scores to every printed digit); threaded CPU reductions are not guaranteed "
        "to be bitwise stable on other machines"
    )
    return record


def reproducibility_text(report: Mapping) -> str:
    """One markdown line from :func:`reproducibility_record` (empty for older reports)."""
    record = report.get("reproducibility")
    if not record:
        return ""
    return f"Seeded: {record['seeded']}. Not seeded: {record['not_seeded']}."


def heatmap_settings_text(report: Mapping) -> str:
    """The heatmap settings of a study report, for its markdown (older reports recorded only the loss)."""
    settings = report.get("heatmap_settings") or {"heatmap_loss_kind": report.get("heatmap_loss", "mse")}
    return ", ".join(f"{name} {value}" for name, value in settings.items())


def write_study_trainers(
    folder: Path, schedule: Schedule, seeds: Sequence[int], bases: Sequence[str],
    heatmap_attributes: Mapping[str, object] | None = None,
) -> Path:
    """Write ``study_trainers.py`` (schedule + seed subclasses of ``bases``) into ``folder``; returns the folder.

    ``heatmap_attributes`` (see :func:`heatmap_attributes`) are set on the heatmap trainers
    (:data:`HEATMAP_LOSS_BASES`).
    """
    heatmap_attributes = dict(heatmap_attributes or {})
    loss = heatmap_attributes.get("heatmap_loss_kind")
    if loss is not None and loss not in HEATMAP_LOSSES:
        raise ValueError(f"heatmap_loss_kind must be one of {HEATMAP_LOSSES}, got {loss!r}")
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        '"""Generated by benchmarks/study_common.py: study schedule and seed variants (do not edit)."""',
        "import torch",
        "from nnunet_babloss.nnunet.schedules import ScheduleSettings",
    ]
    for base in sorted(set(bases)):
        module, name = TRAINER_BASES[base]
        lines.append(f"from {module} import {name}")
    lines += [
        "",
        "class _StudySchedule(ScheduleSettings):",
        f"    schedule_num_epochs = {schedule.epochs}",
        f"    schedule_iterations_per_epoch = {schedule.iterations_per_epoch}",
        f"    schedule_val_iterations_per_epoch = {schedule.val_iterations_per_epoch}",
        f"    schedule_save_every = {max(1, schedule.epochs)}",
    ]
    for base in sorted(set(bases)):
        _, name = TRAINER_BASES[base]
        for seed in seeds:
            lines += ["", f"class {trainer_class_name(base, seed)}(_StudySchedule, {name}):", f"    schedule_seed = {seed}"]
            if base not in SEGMENTATION_ONLY_BASES:  # score every landmark (argmax), missed ones would bias the MRE
                lines.append("    validation_landmark_threshold = 0.0")
            if base in HEATMAP_LOSS_BASES:
                lines += [f"    {attribute} = {value!r}" for attribute, value in sorted(heatmap_attributes.items())]
            if base in SEGMENTATION_ONLY_BASES:  # the stock trainer does not apply schedule settings by itself
                lines += [
                    "    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):",
                    "        super().__init__(plans, configuration, fold, dataset_json, device)",
                    "        self.apply_schedule_settings()",
                ]
    (folder / "study_trainers.py").write_text("\n".join(lines) + "\n")
    return folder


def study_environment(work_dir: Path, trainer_folder: Path, device: str, code: Path | None = None) -> dict[str, str]:
    """nnU-Net folders in ``work_dir``; our trainer folder plus the study's on ``nnUNet_extTrainer``.

    ``code``: a folder holding a copy of this repository's packages that every nnU-Net command of the study imports
    instead of the checkout (so that editing the checkout during a long study cannot change later variants).
    """
    base = dict(os.environ)
    if code is not None:
        base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), base.get("PYTHONPATH", "")]))
        base.pop("nnUNet_extTrainer", None)
    environment = nnunet_environment(work_dir, base)
    if code is not None:
        environment["nnUNet_extTrainer"] = str(code / "nnunet_babloss" / "ext_trainers")
    environment["nnUNet_extTrainer"] = os.pathsep.join([environment["nnUNet_extTrainer"], str(trainer_folder)])
    if device == "cpu":
        environment.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return environment


def run_logged(arguments: Sequence[str], environment: Mapping[str, str], log_path: Path) -> float:
    """Run a command with its output in ``log_path``; returns the wall time; raises with the log tail on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(list(arguments), env=dict(environment), stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{' '.join(map(str, arguments))} failed ({completed.returncode}); log {log_path}:\n{tail}")
    return elapsed


# ---------------------------------------------------------------------------------------------------- planning
def study_configuration(plans: Mapping, spacing_mm: float, patch: Sequence[int], batch_size: int) -> dict:
    """A 2D configuration at ``spacing_mm`` with a fixed patch and batch, derived from the planned ``2d`` one.

    The network keeps nnU-Net's 2D building blocks (kernel 3, stride-2 stages, features doubling up to the planned
    cap) with as many stages as halve the smaller patch side down to about 4 voxels, as nnU-Net's planner would.
    """
    base = plans["configurations"]["2d"]
    arch = json.loads(json.dumps(base["architecture"]))
    kwargs = arch["arch_kwargs"]
    stages = 1
    while min(patch) / 2 ** stages >= 4 and stages < 8:
        stages += 1
    cap = max(kwargs["features_per_stage"])
    features = [min(kwargs["features_per_stage"][0] * 2 ** i, cap) for i in range(stages)]
    kwargs.update(
        n_stages=stages,
        features_per_stage=features,
        kernel_sizes=[[3, 3]] * stages,
        strides=[[1, 1]] + [[2, 2]] * (stages - 1),
        n_conv_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1),
    )
    return {
        "inherits_from": "2d",
        "data_identifier": f"nnUNetPlans_{STUDY_CONFIGURATION}",
        "spacing": [float(spacing_mm), float(spacing_mm)],
        "patch_size": [int(value) for value in patch],
        "batch_size": int(batch_size),
        "architecture": arch,
    }


def plan_and_preprocess(dataset_id: int, environment: Mapping[str, str], configuration: Mapping | None,
                        spacing_mm: float, patch: Sequence[int], batch_size: int, log_folder: Path) -> dict:
    """Fingerprint + plan (nnU-Net), add the study configuration, preprocess only that configuration.

    Returns the study configuration written (the first dataset's, reused verbatim for the others when given).
    """
    run_logged([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "--no_pp", "-np", "1",
                "-npfp", "1"], environment, log_folder / f"plan_{dataset_id}.log")
    plans_path = _preprocessed_folder(environment, dataset_id) / "nnUNetPlans.json"
    plans = json.loads(plans_path.read_text())
    if configuration is None:
        configuration = study_configuration(plans, spacing_mm, patch, batch_size)
    plans["configurations"][STUDY_CONFIGURATION] = json.loads(json.dumps(configuration))
    plans_path.write_text(json.dumps(plans, indent=2))
    run_logged([nnunet_command("nnUNetv2_preprocess"), "-d", str(dataset_id), "-c", STUDY_CONFIGURATION, "-np", "1"],
               environment, log_folder / f"preprocess_{dataset_id}.log")
    return dict(configuration)


def _dataset_folder(environment: Mapping[str, str], root: str, dataset_id: int) -> Path:
    """``<$root>/DatasetXXX_*`` of ``dataset_id`` (``root``: ``nnUNet_raw`` or ``nnUNet_preprocessed``)."""
    folder = Path(environment[root])
    found = sorted(folder.glob(f"Dataset{dataset_id:03d}_*"))
    if not found:
        raise FileNotFoundError(f"no dataset {dataset_id} in {folder} ({root})")
    return found[0]


def _preprocessed_folder(environment: Mapping[str, str], dataset_id: int) -> Path:
    return _dataset_folder(environment, "nnUNet_preprocessed", dataset_id)


def raw_folder(environment: Mapping[str, str], dataset_id: int) -> Path:
    return _dataset_folder(environment, "nnUNet_raw", dataset_id)


def write_single_split(environment: Mapping[str, str], dataset_id: int, train: Sequence[str], val: Sequence[str]) -> None:
    """Fold 0 = the study's explicit split (nnU-Net reads ``splits_final.json`` from the preprocessed folder)."""
    folder = _preprocessed_folder(environment, dataset_id)
    (folder / "splits_final.json").write_text(json.dumps([{"train": sorted(train), "val": sorted(val)}], indent=2))


def read_single_split(environment: Mapping[str, str], dataset_id: int) -> tuple[list[str], list[str]]:
    """``(train, val)`` of fold 0 as nnU-Net trains on it: ``splits_final.json`` (see :func:`write_single_split`).

    Read back rather than recomputed, so that a rerun on a finished work folder uses the split the models saw.
    """
    path = _preprocessed_folder(environment, dataset_id) / "splits_final.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: dataset {dataset_id} was not prepared by this study")
    fold = json.loads(path.read_text())[0]
    return list(fold["train"]), list(fold["val"])


# ---------------------------------------------------------------------------------------------------- training
def model_folder(environment: Mapping[str, str], dataset_id: int, trainer: str) -> Path:
    results = Path(environment["nnUNet_results"])
    name = raw_folder(environment, dataset_id).name
    return results / name / f"{trainer}__nnUNetPlans__{STUDY_CONFIGURATION}" / "fold_0"


def train(
    dataset_id: int, trainer: str, environment: Mapping[str, str], device: str, log_folder: Path,
    settings: Mapping[str, object] | None = None,
) -> float:
    """``nnUNetv2_train ID 2d_study 0 -tr trainer``; skipped (returns the recorded time) if already finished.

    ``settings`` (schedule, losses: whatever the generated class name does not spell out) are recorded beside the
    model; a finished run is reused only if they match, so a study never mixes a stale model into its table.

    Raises:
        RuntimeError: if the work folder holds a finished run of ``trainer`` trained with other settings.
    """
    folder = model_folder(environment, dataset_id, trainer)
    timing = folder / "study_wall_time.json"
    wanted = json.loads(json.dumps(dict(settings or {})))
    if (folder / "checkpoint_final.pth").is_file() and timing.is_file():
        record = json.loads(timing.read_text())
        if record.get("settings", {}) != wanted:
            raise RuntimeError(
                f"{folder} holds a finished {trainer} run trained with settings {record.get('settings', {})}, not "
                f"{wanted}: use another --work-dir (or delete that folder)"
            )
        return float(record["seconds"])
    seconds = run_logged(
        [nnunet_command("nnUNetv2_train"), str(dataset_id), STUDY_CONFIGURATION, "0", "-tr", trainer, "-device", device],
        training_environment(environment), log_folder / f"train_{dataset_id}_{trainer}.log",
    )
    timing.write_text(json.dumps({"seconds": seconds, "device": device, "settings": wanted}))
    return seconds


def learning_curves(folder: Path) -> dict[str, list[float | None]]:
    """Per-epoch validation pseudo Dice and landmark MRE (online validation on the held-out cases)."""
    from nnunet_babloss.nnunet.checkpoint_loading import load_checkpoint_weights_only

    checkpoint = load_checkpoint_weights_only(folder / "checkpoint_final.pth")
    log = checkpoint.get("logging", {})

    def clean(values):
        return [None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
                for value in values]

    return {
        "mean_fg_dice": clean(log.get("mean_fg_dice", [])),
        "val_mre_mm": clean(log.get("val_mre_mm", [])),
        "train_losses": clean(log.get("train_losses", [])),
    }


# ---------------------------------------------------------------------------------------------------- scoring
def landmark_group(name: str) -> str:
    """``RL_03`` -> ``RL``; names without an underscore-number suffix are their own group."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


def landmark_errors(per_case_csv: Path) -> tuple[dict[str, list[float]], int]:
    """Radial errors (mm) per landmark group from ``landmarks_per_case.csv``, and the number of missed landmarks."""
    groups: dict[str, list[float]] = {}
    missed = 0
    with open(per_case_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] == "missed":
                missed += 1
            if row["radial_error_mm"] in ("", "nan", None):
                continue
            groups.setdefault(landmark_group(row["landmark"]), []).append(float(row["radial_error_mm"]))
    return groups, missed


def error_summary(errors: Sequence[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """MRE, SD, median and SDR at :data:`SDR_THRESHOLDS_MM` (errors multiplied by ``scale`` first)."""
    values = np.asarray(errors, dtype=float) * scale
    if values.size == 0:
        return {"n": 0, "mre": None, "sd": None, "median": None, **{f"sdr_{t:g}": None for t in SDR_THRESHOLDS_MM}}
    return {
        "n": int(values.size),
        "mre": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "median": float(np.median(values)),
        **{f"sdr_{t:g}": float((values <= t).mean()) for t in SDR_THRESHOLDS_MM},
    }


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample SD over seeds (``None`` entries skipped)."""
    finite = [float(value) for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None, None, 0
    return float(np.mean(finite)), (float(np.std(finite, ddof=1)) if len(finite) > 1 else None), len(finite)


def format_mean_sd(values: Sequence[float | None], digits: int = 3) -> str:
    mean, sd, count = mean_sd(values)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


# ---------------------------------------------------------------------------------------------------- baselines
#: The no-network baselines every landmark table reports (``nnunet_babloss.core.landmarks.baseline``):
#: key -> (row label, similarity-aligned). The plain mean shape is the one a model must beat.
MEAN_SHAPE_BASELINES = {
    "mean_shape": ("mean training shape", False),
    "mean_shape_aligned": ("mean training shape (similarity-aligned)", True),
}
REFERENCE_BASELINE = "mean_shape"


def write_mean_shape_baselines(
    raw_dataset: Path, training_cases: Sequence[str], cases: Sequence[str], output_folder: Path
) -> tuple[dict[str, Path], list[str]]:
    """Predict every :data:`MEAN_SHAPE_BASELINES` entry for ``cases`` from a raw dataset's training landmarks.

    The training landmarks are ``raw_dataset/landmarksTr/<case>.json`` of those ``training_cases`` that have one (a
    mask-only case has none). Returns ``({baseline key: prediction folder}, training cases used)``.

    Raises:
        ValueError: no training case has a landmark file.
    """
    landmark_folder = raw_dataset / "landmarksTr"
    used = [case for case in training_cases if (landmark_folder / f"{case}.json").is_file()]
    if not used:
        raise ValueError(f"none of the {len(training_cases)} training cases has a landmark file in {landmark_folder}")
    spec = LandmarkSpec.from_dataset_json(raw_dataset / "dataset.json")
    folders = {}
    for key, (_, aligned) in MEAN_SHAPE_BASELINES.items():
        folders[key] = output_folder / key
        write_mean_shape_predictions(landmark_folder, spec, cases, folders[key], training_cases=used, aligned=aligned)
    return folders, used


def baseline_warning(what: str, model_mre: float | None, baseline_mre: float | None, unit: str) -> str | None:
    """A ``WARNING:`` line (also printed to stderr) when the model's MRE is worse than the mean training shape's."""
    if model_mre is None or baseline_mre is None or not model_mre > baseline_mre:
        return None
    line = (f"WARNING: {what}: model MRE {model_mre:.2f} {unit} is worse than the mean training shape's "
            f"{baseline_mre:.2f} {unit} (no image, no network): the model has learned nothing useful about the image.")
    print(line, file=sys.stderr, flush=True)
    return line
