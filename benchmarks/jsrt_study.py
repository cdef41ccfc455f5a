"""JSRT heterogeneous partial-label study: does the bridge help?

Six variants by default (two more on request), all trained with the stock ``nnUNetv2_train`` on the same 2D configuration (``--spacing`` mm/px,
whole-image patch, fixed batch) and schedule, on the training part of ``jsrt_512`` (its ``splits.json`` says which
cases are mask-only, landmark-only or both):

==========================  ================================================  =============================
variant                     training data                                     trainer
==========================  ================================================  =============================
``seg_only``                cases with masks (mask-only + both)               nnUNetTrainer
``landmarks_only``          cases with landmarks (landmark-only + both)       HeatmapTrainer
``mix_heatmap``             the heterogeneous mix                             HeatmapTrainer (no bridge)
``mix_babloss``             the heterogeneous mix                             BaBLossTrainer
``mix_pseudo_babloss``      the mix, landmark-only cases given pseudo masks   BaBLossTrainer
                            (filled landmark contours, the best strategy of
                            benchmarks/pseudo_label_quality.py)
``both_babloss``            both annotations on every training case           BaBLossTrainer (upper bound)
``both_denseseg``           both annotations on every training case           DenseSegTrainer (uv maps; not
                                                                              in the default list)
``seg_only_upright``        cases with masks (mask-only + both)               nnUNetTrainerUprightAugmentation
                                                                              (not in the default list)
==========================  ================================================  =============================

A stratified validation part (``--val-fraction`` of each partial-label group, both annotations kept) is held out of
every variant's training data. It is nnU-Net's fold-0 validation set: nnU-Net logs its online pseudo Dice (and our
trainers their landmark MRE) on it every epoch, which gives the learning curves; the final models
(``checkpoint_final``, no checkpoint selection) predict it at the end of training and it is scored with
``nnunet_babloss.core.evaluation``. ``--test-data`` scores the same final models on a separate folder of the jsrt_512
layout (``images/``, ``labels_bits/``, ``landmarks/``, ``dataset_info.json``) that no variant has seen.

Every landmark table has a **mean training shape** row (``nnunet_babloss.core.landmarks.baseline``: each landmark's mean
world position over the training cases, predicted for every case; also a similarity-aligned variant), scored with
the same code on the same cases. The variants train on different case sets, so each variant is compared with the
mean shape of the landmark-annotated training cases of its own dataset (fold 0 of its ``splits_final.json``;
variants whose landmark cases are the same share one row). A model worse than its mean shape gets a line starting
with ``WARNING:`` in the report and on stderr.

Augmentation differs between the segmentation-only and the landmark variants. nnU-Net's 2D default rotates by up
to 180 degrees, scales by 0.7-1.4 and mirrors every axis; ``seg_only`` keeps that but does not flip left-right
(``nnUNetTrainerNoLateralMirroring``: JSRT's labels are sided, ``nnunet_babloss/nnunet/mirroring.py``). The landmark
trainers use their own defaults (rotation +-10 degrees, scaling 0.9-1.1, and no flips at all, since JSRT's right-
and left-lung landmarks cannot be paired, 44 vs 50 points). ``seg_only_upright`` is the segmentation-only model with
the landmark trainers' augmentation (``nnunet_babloss/nnunet/upright_augmentation.py``): against it, a mixed variant
differs only by its landmark task.

Outputs (``--results-dir``, default ``benchmarks/results``): ``jsrt_study.md`` and ``jsrt_study.json`` (per
structure Dice/HD95/NSD@1 mm, landmark MRE ± SD and SDR@2/2.5/3/4 mm overall and per landmark group, mean ± SD over
seeds, iterations, wall time, machine) and ``jsrt_study_learning_curves.png``, ``jsrt_study_errors.png``. Finished
trainings are reused when the script is rerun with the same ``--work-dir``.

Usage::

    python benchmarks/jsrt_study.py --work-dir /tmp/jsrt_study --seeds 0 1 2 --epochs 20 --iterations 25
    python benchmarks/jsrt_study.py --work-dir /tmp/jsrt_smoke --smoke
    python benchmarks/jsrt_study.py --work-dir /tmp/jsrt_study --test-data /my/jsrt_test_layout
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from study_common import (  # noqa: E402 (adds the repository to sys.path)
    MEAN_SHAPE_BASELINES,
    REFERENCE_BASELINE,
    REPO_ROOT,
    SDR_THRESHOLDS_MM,
    STUDY_CONFIGURATION,
    Schedule,
    baseline_warning,
    error_summary,
    format_mean_sd,
    landmark_errors,
    learning_curves,
    machine_description,
    mean_sd,
    model_folder,
    nnunet_command,
    plan_and_preprocess,
    raw_folder,
    read_single_split,
    run_logged,
    study_environment,
    train,
    trainer_class_name,
    write_mean_shape_baselines,
    write_single_split,
    write_study_trainers,
    HEATMAP_LOSS_BASES,
    SEGMENTATION_ONLY_BASES,
    add_heatmap_options,
    effective_heatmap_settings,
    heatmap_attributes,
    heatmap_settings_text,
    settings_warning,
    reproducibility_record,
    reproducibility_text,
)

from build_datasets import JSRT_BITS, JSRT_BRIDGE, JSRT_SPACING_NOTE, default_data_root  # noqa: E402
from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset  # noqa: E402
from dataset_conversion.landmark_sources import LandmarkFolder  # noqa: E402
from dataset_conversion.masks import BitFlagMasks  # noqa: E402
from nnunet_babloss.core.evaluation import evaluate_folders  # noqa: E402

STRUCTURES = tuple(JSRT_BITS)
GROUPS = ("RL", "LL", "H", "RCLA", "LCLA")
KINDS = ("mask_only", "landmark_only", "both")


@dataclass(frozen=True)
class Variant:
    name: str
    dataset: str  # key of DATASETS
    trainer: str  # key of study_common.TRAINER_BASES
    description: str


@dataclass(frozen=True)
class DatasetRecipe:
    offset: int  # dataset id = --id-base + offset
    title: str
    landmarks: bool
    kinds: dict[str, str]  # partial-label group -> kind in this dataset (groups not listed are left out)


DATASETS = {
    "seg": DatasetRecipe(1, "SegOnly", False, {"mask_only": "mask_only", "both": "mask_only"}),
    "landmarks": DatasetRecipe(2, "LandmarksOnly", True, {"landmark_only": "landmark_only", "both": "landmark_only"}),
    "mix": DatasetRecipe(3, "Mix", True, {"mask_only": "mask_only", "landmark_only": "landmark_only", "both": "both"}),
    "pseudo": DatasetRecipe(4, "MixPseudo", True, {}),  # made from "mix" by nnUNetv2_bab_pseudo_labels
    "both": DatasetRecipe(5, "Both", True, {"mask_only": "both", "landmark_only": "both", "both": "both"}),
}
TEST_OFFSET = 9

VARIANTS = (
    Variant("seg_only", "seg", "nnUNetTrainer", "nnUNetTrainer, cases with masks"),
    Variant("landmarks_only", "landmarks", "HeatmapTrainer", "HeatmapTrainer, cases with landmarks"),
    Variant("mix_heatmap", "mix", "HeatmapTrainer", "HeatmapTrainer, heterogeneous mix"),
    Variant("mix_babloss", "mix", "BaBLossTrainer", "BaBLossTrainer, heterogeneous mix"),
    Variant("mix_pseudo_babloss", "pseudo", "BaBLossTrainer", "BaBLossTrainer, mix + contour pseudo masks"),
    Variant("both_babloss", "both", "BaBLossTrainer", "BaBLossTrainer, both annotations (upper bound)"),
    Variant("both_denseseg", "both", "DenseSegTrainer", "DenseSegTrainer (uv maps), both annotations (issue #8)"),
    Variant("seg_only_upright", "seg", "nnUNetTrainerUprightAugmentation",
            "nnUNetTrainer with the landmark trainers' augmentation (rotation +-10 deg, scaling 0.9-1.1, no flips), "
            "cases with masks"),
)
DEFAULT_VARIANTS = ("seg_only", "landmarks_only", "mix_heatmap", "mix_babloss", "mix_pseudo_babloss", "both_babloss")
VARIANT_NAMES = tuple(variant.name for variant in VARIANTS)

PUBLISHED = (
    "Published references (different training regimes and test split — HybridGNet's 51-image test split is not in "
    "this folder; not directly comparable): HybridGNet Dice lungs 0.974, heart 0.933; U-Net 0.981 / 0.942 (fully "
    "supervised, full schedule); DenseSeg landmark error 2.6 ± 0.9 mm at 1.4 mm/px."
)


# ---------------------------------------------------------------------------------------------------- data
def split_cases(groups: dict[str, str], val_fraction: float, seed: int, max_train_per_group: int | None,
                max_val_per_group: int | None) -> tuple[dict[str, str], dict[str, str]]:
    """Stratified train/validation split of the partial-label groups: ``(train, val)`` as case -> group."""
    rng = random.Random(seed)
    train: dict[str, str] = {}
    val: dict[str, str] = {}
    for kind in KINDS:
        cases = sorted(case for case, group in groups.items() if group == kind)
        rng.shuffle(cases)
        n_val = max(1, round(val_fraction * len(cases)))
        if max_val_per_group is not None:
            n_val = min(n_val, max_val_per_group)
        held, rest = cases[:n_val], cases[n_val:]
        if max_train_per_group is not None:
            rest = rest[:max_train_per_group]
        val.update({case: kind for case in held})
        train.update({case: kind for case in rest})
    return train, val


def build_dataset(key: str, folder: Path, raw: Path, id_base: int, train_groups: dict[str, str],
                  val_cases: Sequence[str], spacing_mm: float, landmark_options: LandmarkOptions) -> tuple[int, list[str]]:
    """Write one variant dataset (validation cases with both annotations); returns its id and training cases."""
    recipe = DATASETS[key]
    dataset_id = id_base + recipe.offset
    kinds = {case: recipe.kinds[group] for case, group in train_groups.items() if group in recipe.kinds}
    training = sorted(kinds)
    val_kind = "both" if recipe.landmarks else "mask_only"
    kinds.update({case: val_kind for case in val_cases})
    inputs = ConversionInputs(
        image_folders=(folder / "images",),
        masks=BitFlagMasks(folder / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(folder / "landmarks", "jsrt") if recipe.landmarks else None,
        annotation_kinds=kinds,
        cases=tuple(sorted(kinds)),
    )
    settings = ConversionSettings(
        dataset_id=dataset_id, dataset_name=f"JSRTStudy_{recipe.title}", raw_folder=raw, num_folds=2,
        overwrite=True, progress=False, tool="benchmarks/jsrt_study.py",
        description=f"JSRT study dataset '{key}' ({len(training)} training + {len(val_cases)} validation cases)",
        pixel_spacing_mm=(spacing_mm,), pixel_spacing_note=JSRT_SPACING_NOTE, channel_names=("xray",), overlap="priority",
        landmarks=landmark_options if recipe.landmarks else LandmarkOptions(),
    )
    convert_dataset(inputs, settings, arguments={"study": "jsrt", "dataset": key})
    return dataset_id, training


def build_test_dataset(folder: Path, raw: Path, id_base: int, landmark_options: LandmarkOptions) -> int:
    """Every case of a separate jsrt_512-layout folder, with both annotations, in ``imagesTs``."""
    info = json.loads((folder / "dataset_info.json").read_text())
    cases = tuple(sorted(path.stem for path in (folder / "images").glob("*.png")))
    dataset_id = id_base + TEST_OFFSET
    inputs = ConversionInputs(
        image_folders=(folder / "images",), masks=BitFlagMasks(folder / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(folder / "landmarks", "jsrt"), annotation_kinds={}, test_cases=frozenset(cases),
        cases=cases,
    )
    settings = ConversionSettings(
        dataset_id=dataset_id, dataset_name="JSRTStudy_Test", raw_folder=raw, num_folds=2, overwrite=True,
        progress=False, tool="benchmarks/jsrt_study.py", description=f"JSRT study test folder {folder}",
        pixel_spacing_mm=(float(info["pixel_spacing_mm"]),), pixel_spacing_note=JSRT_SPACING_NOTE,
        channel_names=("xray",), overlap="priority", landmarks=landmark_options,
    )
    convert_dataset(inputs, settings, arguments={"study": "jsrt", "dataset": "test", "folder": str(folder)})
    return dataset_id


# ---------------------------------------------------------------------------------------------------- scoring
def score(prediction_folder: Path, dataset_json: dict, labels: Path | None, landmarks: Path | None,
          cases: Sequence[str], output: Path) -> dict:
    """Segmentation metrics per structure and landmark errors overall / per group for one trained model."""
    summary = evaluate_folders(prediction_folder, dataset_json, reference_labels_folder=labels,
                               reference_landmarks_folder=landmarks, output_folder=output, cases=list(cases),
                               nsd_tolerance_mm=1.0).summary
    result: dict = {}
    if "segmentation" in summary:
        per_label = summary["segmentation"]["mean_per_label"]
        result["segmentation"] = {
            name: {"dice": per_label[name]["dice"], "hd95_mm": per_label[name]["hd95_mm"],
                   "nsd_1mm": per_label[name].get("nsd")}
            for name in STRUCTURES if name in per_label
        }
    result["per_case"] = per_case_values(output)
    if "landmarks" in summary:
        groups, missed = landmark_errors(output / "landmarks_per_case.csv")
        every = [error for group in groups.values() for error in group]
        result["landmarks"] = {
            "all": error_summary(every), "missed": missed,
            "groups": {group: error_summary(groups.get(group, [])) for group in GROUPS},
            "errors": {group: groups.get(group, []) for group in GROUPS},
        }
    return result


def per_case_values(output: Path) -> dict[str, dict[str, float]]:
    """``{case: {"mre": mean landmark error, "dice_<structure>": Dice}}`` from the evaluation CSVs."""
    import csv

    values: dict[str, dict[str, float]] = {}
    segmentation = output / "segmentation_per_case.csv"
    if segmentation.is_file():
        with open(segmentation, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("dice") not in (None, "", "nan"):
                    values.setdefault(row["case"], {})[f"dice_{row['label']}"] = float(row["dice"])
    landmarks = output / "landmarks_per_case.csv"
    if landmarks.is_file():
        errors: dict[str, list[float]] = {}
        with open(landmarks, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["radial_error_mm"] not in ("", "nan"):
                    errors.setdefault(row["case"], []).append(float(row["radial_error_mm"]))
        for case, case_errors in errors.items():
            values.setdefault(case, {})["mre"] = sum(case_errors) / len(case_errors)
    return values


#: (variant, reference): the paired comparisons the study is about.
COMPARISONS = (
    ("mix_babloss", "mix_heatmap"),
    ("mix_babloss", "seg_only"),
    ("mix_heatmap", "seg_only_upright"),
    ("mix_babloss", "seg_only_upright"),
    ("seg_only_upright", "seg_only"),
    ("mix_babloss", "landmarks_only"),
    ("mix_pseudo_babloss", "mix_babloss"),
    ("mix_pseudo_babloss", "seg_only"),
    ("mix_pseudo_babloss", "both_babloss"),
    ("both_babloss", "mix_babloss"),
    ("both_denseseg", "both_babloss"),
)


def paired_differences(runs: list[dict], split: str, resamples: int = 2000) -> list[dict]:
    """Per-case paired differences (variant - reference; per-case values averaged over seeds first) with a seeded
    95 % bootstrap interval over cases: the variance of a comparison when there are too few seeds."""
    import numpy as np

    def per_case(variant: str) -> dict[str, dict[str, float]]:
        collected: dict[str, dict[str, list[float]]] = {}
        for run in runs:
            if run["variant"] == variant and split in run["scores"]:
                for case, metrics in run["scores"][split]["per_case"].items():
                    for metric, value in metrics.items():
                        collected.setdefault(case, {}).setdefault(metric, []).append(value)
        return {case: {m: float(np.mean(v)) for m, v in metrics.items()} for case, metrics in collected.items()}

    rng = np.random.default_rng(0)
    rows = []
    for variant, reference in COMPARISONS:
        ours, theirs = per_case(variant), per_case(reference)
        metrics = sorted({m for case in ours.values() for m in case} & {m for case in theirs.values() for m in case})
        for metric in metrics:
            cases = sorted(c for c in set(ours) & set(theirs) if metric in ours[c] and metric in theirs[c])
            if len(cases) < 2:
                continue
            diff = np.array([ours[c][metric] - theirs[c][metric] for c in cases])
            boot = rng.choice(diff, size=(resamples, diff.size), replace=True).mean(axis=1)
            better = (diff < 0) if metric == "mre" else (diff > 0)
            rows.append({"variant": variant, "reference": reference, "metric": metric, "n_cases": len(cases),
                         "mean_difference": float(diff.mean()), "sd_difference": float(diff.std(ddof=1)),
                         "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
                         "fraction_of_cases_better": float(better.mean())})
    return rows


def score_baselines(variants: Sequence[Variant], ids: dict[str, int], environment: dict, val_cases: Sequence[str],
                    test_id: int | None, work: Path) -> list[dict]:
    """Mean-training-shape rows (every :data:`study_common.MEAN_SHAPE_BASELINES` entry) for the landmark variants.

    One row per distinct set of landmark-annotated training cases (fold 0 of the variant dataset's split), scored
    like the models on the validation cases and, with ``test_id``, on the test dataset. Needs no trained model, so
    it also runs when a finished work folder is rescored.
    """
    groups: dict[tuple[str, ...], dict] = {}
    for variant in variants:
        if variant.trainer in SEGMENTATION_ONLY_BASES:
            continue
        dataset_id = ids[variant.dataset]
        landmarks = raw_folder(environment, dataset_id) / "landmarksTr"
        train_cases, _ = read_single_split(environment, dataset_id)
        annotated = tuple(case for case in train_cases if (landmarks / f"{case}.json").is_file())
        groups.setdefault(annotated, {"dataset": variant.dataset, "dataset_id": dataset_id, "variants": []})
        groups[annotated]["variants"].append(variant.name)
    splits = []
    if test_id is not None:
        test_raw = raw_folder(environment, test_id)
        splits.append(("test", json.loads((test_raw / "dataset.json").read_text()), test_raw / "landmarksTs",
                       sorted(path.stem for path in (test_raw / "landmarksTs").glob("*.json"))))
    rows = []
    for annotated, group in groups.items():
        dataset_raw = raw_folder(environment, group["dataset_id"])
        dataset_json = json.loads((dataset_raw / "dataset.json").read_text())
        folder = work / "baselines" / group["dataset"]
        entries = {key: {"key": key, "label": label, "aligned": aligned, "dataset": group["dataset"],
                         "variants": group["variants"], "scores": {}}
                   for key, (label, aligned) in MEAN_SHAPE_BASELINES.items()}
        for split, split_json, references, cases in [
            ("validation", dataset_json, dataset_raw / "landmarksTr", list(val_cases)), *splits
        ]:
            predictions, used = write_mean_shape_baselines(dataset_raw, annotated, cases, folder / split)
            for key, prediction_folder in predictions.items():
                entries[key]["num_training_cases"] = len(used)
                entries[key]["scores"][split] = score(prediction_folder, split_json, labels=None, landmarks=references,
                                                      cases=cases, output=folder / split / f"{key}_scores")
        rows += entries.values()
        print(f"[baseline] mean training shape of {len(annotated)} '{group['dataset']}' training cases: "
              f"{_headline(entries[REFERENCE_BASELINE]['scores']['validation'])}", flush=True)
    return rows


def baseline_for(report: dict, variant: str) -> dict | None:
    """The reference (plain) mean-shape row that ``variant`` is compared with, if it has landmarks."""
    for row in report.get("baselines", []):
        if row["key"] == REFERENCE_BASELINE and variant in row["variants"]:
            return row
    return None


def baseline_warnings(report: dict) -> list[str]:
    """``WARNING:`` lines (also printed to stderr) for every variant and split whose MRE exceeds its mean shape's."""
    warnings = []
    for split in report["evaluation_sets"]:
        for variant in report["variants"]:
            entry = report["table"].get(variant, {}).get(split)
            baseline = baseline_for(report, variant)
            if not entry or baseline is None or split not in baseline["scores"]:
                continue
            model_mre = mean_sd(_values(entry["seeds"], "landmarks", "all", "mre"))[0]
            line = baseline_warning(f"{variant} ({split})", model_mre,
                                    baseline["scores"][split]["landmarks"]["all"]["mre"], "mm")
            if line is not None:
                warnings.append(line)
    return warnings


def predict_test(variant: Variant, dataset_id: int, trainer: str, environment: dict, test_raw: Path,
                 output: Path, log_folder: Path) -> None:
    if any(output.glob("*.png")):
        return
    command = "nnUNetv2_predict" if variant.trainer in SEGMENTATION_ONLY_BASES else "nnUNetv2_bab_predict"
    run_logged([nnunet_command(command), "-i", str(test_raw / "imagesTs"), "-o", str(output), "-d", str(dataset_id),
                "-c", STUDY_CONFIGURATION, "-f", "0", "-tr", trainer, "-device", environment["_device"],
                "-chk", "checkpoint_final.pth",
                *([] if variant.trainer in SEGMENTATION_ONLY_BASES else ["--landmark-threshold", "0"])],
               {k: v for k, v in environment.items() if k != "_device"},
               log_folder / f"predict_test_{variant.name}_{trainer}.log")


# ---------------------------------------------------------------------------------------------------- report
def aggregate(runs: list[dict]) -> dict:
    """Mean ± SD over seeds of every reported number, per variant and evaluation set."""
    table: dict = {}
    for run in runs:
        for split, result in run["scores"].items():
            entry = table.setdefault(run["variant"], {}).setdefault(split, {"seeds": []})
            entry["seeds"].append({"seed": run["seed"], **{k: v for k, v in result.items()}})
    return table


def _values(seeds: list[dict], *path: str) -> list[float | None]:
    values = []
    for seed in seeds:
        value = seed
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def markdown(report: dict) -> str:
    schedule = report["schedule"]
    lines = [
        "# JSRT heterogeneous partial-label study",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']['cpu']} ({report['machine']['cpu_cores_visible']} cores visible), device "
        f"`{report['device']}`, torch {report['machine']['torch']}. Configuration `{STUDY_CONFIGURATION}`: 2D at "
        f"{report['spacing_mm']} mm/px, patch {report['configuration']['patch_size']}, batch "
        f"{report['configuration']['batch_size']}, {report['configuration']['architecture']['arch_kwargs']['n_stages']}"
        f" stages; dataset heatmap sigma {report['sigma_mm']:g} mm; heatmap trainers: {heatmap_settings_text(report)}; BaBLoss range {report['boundary_range_mm']:g} mm. Schedule: {schedule['epochs']} epochs x {schedule['iterations_per_epoch']} iterations = "
        f"{schedule['epochs'] * schedule['iterations_per_epoch']} iterations per training (nnU-Net's default is 250 000)"
        f" — a reduced CPU schedule, far from converged. Seeds: {report['seeds']} (mean ± SD over seeds). Training "
        f"cases: {report['train_counts']}; validation cases: {report['num_val']} (both annotations, never trained on, "
        "final checkpoint, no selection). " + reproducibility_text(report),
        "",
    ]
    if report.get("warnings"):
        lines += [*report["warnings"], ""]
    for split in report["evaluation_sets"]:
        lines += [f"## {split}", "", "### Segmentation (Dice / HD95 mm / NSD@1 mm)", "",
                  "| variant | " + " | ".join(STRUCTURES) + " | train wall time (s) |",
                  "|---|" + "---|" * (len(STRUCTURES) + 1)]
        for variant in report["variants"]:
            entry = report["table"].get(variant, {}).get(split)
            if not entry or not any("segmentation" in seed for seed in entry["seeds"]):
                continue
            cells = []
            for structure in STRUCTURES:
                dice = format_mean_sd(_values(entry["seeds"], "segmentation", structure, "dice"))
                hd95 = format_mean_sd(_values(entry["seeds"], "segmentation", structure, "hd95_mm"), 1)
                nsd = format_mean_sd(_values(entry["seeds"], "segmentation", structure, "nsd_1mm"))
                cells.append(f"{dice} / {hd95} / {nsd}")
            wall = format_mean_sd(report["wall_times"][variant], 0)
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {wall} |")
        lines += ["", "### Landmarks (all 166; MRE ± SD in mm over landmarks, then SDR)", "",
                  "The mean-training-shape rows predict, for every case, each landmark's mean position over the "
                  "landmark-annotated training cases named (no image, no network); \"MRE − mean shape\" compares a "
                  "model with the plain mean shape of its own training cases (positive: worse than it).", "",
                  "| variant | MRE mm | MRE − mean shape | SD mm | SDR@2 | SDR@2.5 | SDR@3 | SDR@4 | missed | "
                  + " | ".join(f"MRE {group}" for group in GROUPS) + " |",
                  "|---|" + "---|" * (8 + len(GROUPS))]

        def landmark_cells(seeds: list[dict], versus_baseline: str) -> list[str]:
            cells = [format_mean_sd(_values(seeds, "landmarks", "all", "mre"), 2), versus_baseline,
                     format_mean_sd(_values(seeds, "landmarks", "all", "sd"), 2)]
            cells += [format_mean_sd(_values(seeds, "landmarks", "all", f"sdr_{t:g}")) for t in SDR_THRESHOLDS_MM]
            cells.append(format_mean_sd(_values(seeds, "landmarks", "missed"), 0))
            cells += [format_mean_sd(_values(seeds, "landmarks", "groups", group, "mre"), 2) for group in GROUPS]
            return cells

        for variant in report["variants"]:
            entry = report["table"].get(variant, {}).get(split)
            if not entry or not any("landmarks" in seed for seed in entry["seeds"]):
                continue
            model_mre = mean_sd(_values(entry["seeds"], "landmarks", "all", "mre"))[0]
            baseline = baseline_for(report, variant)
            baseline_mre = (baseline["scores"][split]["landmarks"]["all"]["mre"]
                            if baseline is not None and split in baseline["scores"] else None)
            versus = "–" if model_mre is None or baseline_mre is None else f"{model_mre - baseline_mre:+.2f}"
            lines.append(f"| {variant} | " + " | ".join(landmark_cells(entry["seeds"], versus)) + " |")
        for baseline in report.get("baselines", []):
            if split in baseline["scores"]:
                label = (f"{baseline['label']} ({baseline['num_training_cases']} training cases of "
                         f"{', '.join(baseline['variants'])})")
                lines.append(f"| {label} | " + " | ".join(landmark_cells([baseline["scores"][split]], "–")) + " |")
        lines.append("")
    for split in report["evaluation_sets"]:
        rows = report["paired"].get(split, [])
        if not rows:
            continue
        lines += [f"## Paired per-case differences ({split}; variant − reference, 95 % bootstrap CI over cases)", "",
                  "| variant | reference | metric | mean difference | 95 % CI | cases where variant is better |",
                  "|---|---|---|---|---|---|"]
        for row in rows:
            digits = 2 if row["metric"] == "mre" else 4
            metric = "MRE mm (lower is better)" if row["metric"] == "mre" else row["metric"].replace("dice_", "Dice ")
            lines.append(f"| {row['variant']} | {row['reference']} | {metric} | {row['mean_difference']:+.{digits}f} | "
                         f"[{row['ci95'][0]:+.{digits}f}, {row['ci95'][1]:+.{digits}f}] | "
                         f"{row['fraction_of_cases_better']:.0%} of {row['n_cases']} |")
        lines.append("")
    lines += [PUBLISHED, "", "Plots: `jsrt_study_learning_curves.png` (online validation pseudo Dice and landmark MRE per "
              "epoch, mean over seeds), `jsrt_study_errors.png` (landmark error distribution per variant).", ""]
    return "\n".join(lines)


def plots(report: dict, runs: list[dict], results_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, variant in enumerate(report["variants"]):
        curves = [run["curves"] for run in runs if run["variant"] == variant]
        for axis, key, label in ((axes[0], "mean_fg_dice", "pseudo Dice (val)"), (axes[1], "val_mre_mm", "MRE mm (val)")):
            if key == "mean_fg_dice" and variant == "landmarks_only":
                continue  # its segmentation head is never trained
            series = [np.array([np.nan if v is None else v for v in curve[key]], dtype=float) for curve in curves if curve[key]]
            if not series or all(np.isnan(s).all() for s in series):
                continue
            length = min(len(s) for s in series)
            mean = np.nanmean(np.stack([s[:length] for s in series]), axis=0)
            axis.plot(np.arange(1, length + 1), mean, label=variant, color=colours[index % len(colours)])
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    figure.suptitle("JSRT study: online validation (held-out cases), mean over seeds")
    figure.tight_layout()
    figure.savefig(results_dir / "jsrt_study_learning_curves.png", dpi=110)
    plt.close(figure)

    split = report["evaluation_sets"][0]
    data, names = [], []
    for variant in report["variants"]:
        errors = [e for run in runs if run["variant"] == variant and "landmarks" in run["scores"].get(split, {})
                  for group in run["scores"][split]["landmarks"]["errors"].values() for e in group]
        if errors:
            data.append(errors)
            names.append(variant)
    for baseline in report.get("baselines", []):
        errors = [e for group in baseline["scores"].get(split, {}).get("landmarks", {}).get("errors", {}).values()
                  for e in group]
        if baseline["key"] == REFERENCE_BASELINE and errors:
            data.append(errors)
            names.append(f"mean shape ({baseline['dataset']})")
    if data:
        figure, axis = plt.subplots(figsize=(8, 4))
        axis.boxplot(data, showfliers=False)
        axis.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
        axis.set_ylabel("radial error (mm)")
        axis.set_title(f"JSRT landmark errors ({split}, all seeds pooled; whiskers 1.5 IQR, outliers hidden)")
        figure.tight_layout()
        figure.savefig(results_dir / "jsrt_study_errors.png", dpi=110)
        plt.close(figure)


# ---------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jsrt_study.py", description=__doc__.split("Usage::", 1)[0],
        epilog="Usage::" + __doc__.split("Usage::", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="nnU-Net folders, logs and models of the study (reused when rerun)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the shared data folder (default: $NNUNET_BABLOSS_DATA or <repo>/../shared/data)")
    parser.add_argument("--test-data", type=Path, default=None,
                        help="a separate folder of the jsrt_512 layout to score the final models on")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="where the tables and plots go (default: benchmarks/results)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANT_NAMES,
                        help="variants to run (default: the six of the study; both_denseseg adds DenseSeg)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per training (default: 20)")
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch (default: 25)")
    parser.add_argument("--val-iterations", type=int, default=5,
                        help="online validation iterations per epoch (default: 5)")
    parser.add_argument("--spacing", type=float, default=1.4, help="training resolution in mm/px (default: 1.4)")
    parser.add_argument("--patch", type=int, default=256, help="square patch side in pixels (default: 256)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (default: 4)")
    parser.add_argument("--sigma-mm", type=float, default=None,
                        help="heatmap Gaussian sigma in mm (default: 2 pixels at --spacing)")
    add_heatmap_options(parser)
    parser.add_argument("--boundary-range-mm", type=float, default=None,
                        help="BaBLoss boundary range n in mm (default: 3 pixels at --spacing)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of each partial-label group held out for validation (default: 0.2)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation split (default: 0)")
    parser.add_argument("--max-train-per-group", type=int, default=None,
                        help="use at most this many training cases per partial-label group")
    parser.add_argument("--max-val-per-group", type=int, default=None,
                        help="hold out at most this many validation cases per group")
    parser.add_argument("--id-base", type=int, default=700, help="dataset ids are id-base + 1..5, test + 9 (default: 700)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training device (default: cpu)")
    parser.add_argument("--code-snapshot", type=Path, default=None,
                        help="folder with a copy of nnunet_babloss/, dataset_conversion/, pseudo_labels/ that the "
                        "nnU-Net commands import instead of the checkout (keeps a long study on one code state)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few-minute run: 3 training + 1 validation cases per group, 1 seed, 2 epochs x 2 "
                        "iterations, 128 px at 2.8 mm/px, batch 2; results go to <work-dir>/results")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.iterations, args.val_iterations = [0], 2, 2, 1
        args.spacing, args.patch, args.batch_size = 2.8, 128, 2
        args.max_train_per_group, args.max_val_per_group = 3, 1
        args.results_dir = args.work_dir / "results"
    data_root = args.data_root or default_data_root()
    folder = data_root / "jsrt_512"
    if not (folder / "splits.json").is_file():
        print(f"error: {folder}/splits.json not found (set NNUNET_BABLOSS_DATA or --data-root)", file=sys.stderr)
        return 2
    work = args.work_dir.resolve()
    results_dir = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    variants = [variant for variant in VARIANTS if variant.name in args.variants]
    schedule = Schedule(args.epochs, args.iterations, args.val_iterations)
    attributes = heatmap_attributes(args)
    trainer_folder = write_study_trainers(work / "study_trainers", schedule, args.seeds, [v.trainer for v in variants],
                                          attributes)
    environment = study_environment(work, trainer_folder, args.device, args.code_snapshot)
    raw = Path(environment["nnUNet_raw"])
    raw.mkdir(parents=True, exist_ok=True)
    spacing_info = json.loads((folder / "dataset_info.json").read_text())
    groups = json.loads((folder / "splits.json").read_text())["partial_label_groups"]
    train_groups, val_groups = split_cases(groups, args.val_fraction, args.split_seed, args.max_train_per_group,
                                           args.max_val_per_group)
    val_cases = sorted(val_groups)
    sigma_mm = args.sigma_mm if args.sigma_mm is not None else 2.0 * args.spacing
    boundary_mm = args.boundary_range_mm if args.boundary_range_mm is not None else 3.0 * args.spacing
    landmark_options = LandmarkOptions(bridge=JSRT_BRIDGE, sigma_mm=sigma_mm, boundary_range_mm=boundary_mm)
    started = time.perf_counter()

    needed = sorted({variant.dataset for variant in variants})
    ids: dict[str, int] = {}
    training: dict[str, list[str]] = {}
    configuration = None
    for key in [k for k in DATASETS if k in needed or (k == "mix" and "pseudo" in needed)]:
        dataset_id = args.id_base + DATASETS[key].offset
        ids[key] = dataset_id
        marker = work / f"prepared_{key}.json"
        if marker.is_file():
            saved = json.loads(marker.read_text())
            training[key], configuration = saved["training"], saved["configuration"]
            continue
        print(f"[data] building dataset '{key}' ({dataset_id})", flush=True)
        if key == "pseudo":
            _, training[key] = dataset_id, training["mix"]
            run_logged([nnunet_command("nnUNetv2_bab_pseudo_labels"), "-i", str(raw_folder(environment, ids["mix"])),
                        "-o", str(raw / f"Dataset{dataset_id:03d}_JSRTStudy_MixPseudo"), "--backend", "none",
                        "--default-strategy", "contour", "--overwrite", "--no-progress"],
                       environment, logs / "pseudo_labels.log")
        else:
            _, training[key] = build_dataset(key, folder, raw, args.id_base, train_groups, val_cases,
                                             float(spacing_info["pixel_spacing_mm"]), landmark_options)
        print(f"[plan] {key}: plan and preprocess {STUDY_CONFIGURATION}", flush=True)
        configuration = plan_and_preprocess(dataset_id, environment, configuration, args.spacing,
                                            (args.patch, args.patch), args.batch_size, logs)
        write_single_split(environment, dataset_id, training[key], val_cases)
        marker.write_text(json.dumps({"training": training[key], "configuration": configuration}))

    test_id = None
    if args.test_data is not None:
        test_id = build_test_dataset(args.test_data.resolve(), raw, args.id_base, landmark_options)

    runs: list[dict] = []
    wall_times: dict[str, list[float]] = {}
    effective = effective_heatmap_settings(attributes)
    settings_warnings: list[str | None] = []
    for seed in args.seeds:
        for variant in variants:
            dataset_id = ids[variant.dataset]
            trainer = trainer_class_name(variant.trainer, seed)
            print(f"[train] {variant.name} seed {seed}: nnUNetv2_train {dataset_id} {STUDY_CONFIGURATION} 0 -tr "
                  f"{trainer} -device {args.device}", flush=True)
            settings = {"schedule": [args.epochs, args.iterations, args.val_iterations]}
            if variant.trainer in HEATMAP_LOSS_BASES:
                settings["heatmap"] = attributes
            seconds = train(dataset_id, trainer, environment, args.device, logs, settings)
            wall_times.setdefault(variant.name, []).append(seconds)
            fold = model_folder(environment, dataset_id, trainer)
            if variant.trainer in HEATMAP_LOSS_BASES:
                settings_warnings.append(settings_warning(f"{variant.name} seed {seed}", effective, fold))
            dataset_raw = raw_folder(environment, dataset_id)
            dataset_json = json.loads((dataset_raw / "dataset.json").read_text())
            with_landmarks = variant.trainer not in SEGMENTATION_ONLY_BASES
            scores = {"validation": score(
                fold / "validation", dataset_json,
                labels=dataset_raw / "labelsTr" if variant.name != "landmarks_only" else None,
                landmarks=dataset_raw / "landmarksTr" if with_landmarks else None,
                cases=val_cases, output=fold / "study_validation")}
            if test_id is not None:
                test_raw = raw_folder(environment, test_id)
                output = fold / "study_test_predictions"
                predict_test(variant, dataset_id, trainer, {**environment, "_device": args.device}, test_raw, output, logs)
                test_json = json.loads((test_raw / "dataset.json").read_text())
                test_cases = sorted(path.stem for path in (test_raw / "landmarksTs").glob("*.json"))
                scores["test"] = score(output, test_json,
                                       labels=test_raw / "labelsTs" if variant.name != "landmarks_only" else None,
                                       landmarks=test_raw / "landmarksTs" if with_landmarks else None,
                                       cases=test_cases, output=fold / "study_test")
            runs.append({"variant": variant.name, "seed": seed, "trainer": trainer, "dataset_id": dataset_id,
                         "wall_time_s": seconds, "scores": scores, "curves": learning_curves(fold)})
            print(f"[score] {variant.name} seed {seed}: {_headline(scores['validation'])} ({seconds:.0f} s)", flush=True)

    baselines = score_baselines(variants, ids, environment, val_cases, test_id, work)

    counts = {key: {kind: sum(1 for case in training[key] if case in train_groups and train_groups[case] == kind)
                    for kind in KINDS} for key in training}
    report = {
        "command": "python benchmarks/jsrt_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(), "reproducibility": reproducibility_record(environment, args.device), "device": args.device, "spacing_mm": args.spacing,
        "sigma_mm": sigma_mm, "boundary_range_mm": boundary_mm, "heatmap_loss": effective["heatmap_loss_kind"],
        "heatmap_settings": effective,
        "configuration": configuration, "schedule": {"epochs": args.epochs, "iterations_per_epoch": args.iterations,
                                                      "val_iterations_per_epoch": args.val_iterations},
        "seeds": args.seeds, "variants": [variant.name for variant in variants],
        "variant_descriptions": {variant.name: variant.description for variant in variants},
        "train_counts": {variant.name: counts[variant.dataset] for variant in variants},
        "num_val": len(val_cases), "val_cases": val_cases,
        "evaluation_sets": ["validation"] + (["test"] if test_id is not None else []),
        "wall_times": wall_times, "total_wall_time_s": time.perf_counter() - started,
        "table": aggregate(runs), "baselines": baselines,
        "paired": {split: paired_differences(runs, split)
                   for split in ["validation"] + (["test"] if test_id is not None else [])},
        "runs": [{k: v for k, v in run.items() if k != "scores"} | {"scores": _without_errors(run["scores"])}
                 for run in runs],
        "published_references": PUBLISHED,
    }
    report["warnings"] = [line for line in settings_warnings if line] + baseline_warnings(report)
    (results_dir / "jsrt_study.json").write_text(json.dumps(_without_errors(report), indent=2))
    (results_dir / "jsrt_study.md").write_text(markdown(report))
    plots(report, runs, results_dir)
    print(f"[done] {results_dir / 'jsrt_study.md'} ({report['total_wall_time_s']:.0f} s)")
    return 0


def _headline(result: dict) -> str:
    parts = []
    for name, metrics in result.get("segmentation", {}).items():
        parts.append(f"Dice {name} {metrics['dice']:.3f}" if metrics["dice"] is not None else f"Dice {name} n/a")
    if "landmarks" in result:
        landmarks = result["landmarks"]
        mre = landmarks["all"]["mre"]
        parts.append(f"MRE {mre:.2f} mm" if mre is not None else "MRE n/a")
        parts.append(f"{landmarks['missed']} missed")
    return ", ".join(parts)


def _without_errors(value):
    """Drop the raw error lists (kept for plots) from what is written to JSON."""
    if isinstance(value, dict):
        return {k: _without_errors(v) for k, v in value.items() if k != "errors"}
    if isinstance(value, list):
        return [_without_errors(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
