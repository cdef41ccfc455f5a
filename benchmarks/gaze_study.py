"""GazeSup on JSRT with SIMULATED gaze: quality of the gaze pseudo masks, and GazeSupTrainer vs nnU-Net on full masks.

There is no recorded gaze for JSRT. Every number this script writes comes from gaze simulated from the real SCR
masks by :mod:`pseudo_labels.gaze.simulator` (locate the structure, scan it from centre to boundary, duration and
spatial noise, a few off-target fixations; seeded) and is labelled "simulated gaze" in its outputs.

Parts (``--part``):

* ``pseudo`` — per case and structure (heart; lungs = both lungs as one structure): Dice against the real mask of
  the heatmap thresholded at each level, and of the dense-CRF map (GazeSup's settings) at each level, for each
  heatmap σ given (px on a 768 px canvas). CPU-light: no network.
* ``train`` — per structure: two raw datasets from the same training cases, (a) nested gaze-level pseudo masks
  (``nnUNetv2_bab_gaze_pseudo_labels`` pipeline, CRF on) and (b) the real masks; the stock nnU-Net commands then
  plan/preprocess, train ``GazeSupTrainer<suffix>`` on (a) and ``nnUNetTrainer<suffix>`` on (b) with the same
  schedule and configuration, predict the held-out test cases and score Dice against the real masks (GazeSup's
  prediction = mean of the level probabilities > 0.5; see :mod:`nnunet_babloss.gazesup.trainer`).
  Also reports the parameter counts of the L-level network and of the single-output baseline.

``--smoke`` runs a couple of minutes' worth: ``jsrt_fixture_256`` (8 cases: 6 train, 2 test), the pseudo part on
all 8, the training part for the first structure only, ``*_BabDemo`` trainers (3 epochs x 10 iterations) on a tiny
3-stage configuration. Such numbers are smoke tests, not results.

Usage::

    nice -n 10 python benchmarks/gaze_study.py --part pseudo                       # all 195 jsrt_512 cases
    nice -n 10 python benchmarks/gaze_study.py --smoke                             # both parts, tiny
    python benchmarks/gaze_study.py --part train --source jsrt_512 --schedule full --configuration 2d \\
        --train-cases 156 --test-cases 39                                          # a real run (GPU advised)

Writes ``benchmarks/results/<name>.{md,json}`` (``--name``; default ``gaze_study_<part>[_smoke]``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"
STRUCTURE_BITS = {"heart": 4, "lungs": 1 | 2}
SPACING_MM = {"jsrt_512": 0.7, "jsrt_fixture_256": 1.4}
SCHEDULE_SUFFIX = {"demo": "_BabDemo", "full": ""}
TINY_CONFIGURATION = "2d_gaze_tiny"
GAZE_LABEL = "SIMULATED gaze (pseudo_labels.gaze.simulator); no recorded gaze exists for JSRT"


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="GazeSup on JSRT with SIMULATED gaze: Dice of gaze pseudo masks (heatmap, CRF, per level) and "
        "of GazeSupTrainer vs nnUNetTrainer on full masks with the same schedule.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--part", choices=("pseudo", "train", "all"), default="pseudo", help="what to run")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run: jsrt_fixture_256, 6 train / 2 test cases, first structure only for training, "
                        "*_BabDemo trainers on a 3-stage configuration")
    parser.add_argument("--data-root", type=Path, default=None,
                        help=f"folder holding jsrt_512/ and jsrt_fixture_256/ (default: ${DATA_ENV_VAR} or "
                        "<repo>/../shared/data)")
    parser.add_argument("--source", choices=tuple(SPACING_MM), default="jsrt_512", help="JSRT folder to read")
    parser.add_argument("--structures", nargs="+", choices=tuple(STRUCTURE_BITS), default=list(STRUCTURE_BITS),
                        help="structures (lungs = both lungs as one gazed-at structure)")
    parser.add_argument("--cases", type=int, default=None, help="pseudo part: only the first N cases (sorted)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[50.0, 70.0],
                        help="heatmap sigmas, px on a 768 px canvas (GazeSup: 50 prostate, 70 Kvasir)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5], help="level thresholds")
    parser.add_argument("--seed", type=int, default=0, help="gaze simulation seed")
    parser.add_argument("--train-cases", type=int, default=156, help="train part: training cases (first N sorted)")
    parser.add_argument("--test-cases", type=int, default=39, help="train part: test cases (the last N sorted)")
    parser.add_argument("--schedule", choices=tuple(SCHEDULE_SUFFIX), default="demo",
                        help="trainer pair: demo = *_BabDemo (3 x 10 iterations), full = nnU-Net's 1000 x 250")
    parser.add_argument("--configuration", default=TINY_CONFIGURATION,
                        help=f"nnU-Net configuration; '{TINY_CONFIGURATION}' adds a 3-stage 16-64 feature U-Net on "
                        "the 2d plan's data")
    parser.add_argument("--device", default="cpu", help="nnUNetv2_train/predict -device")
    parser.add_argument("--fold", default="all", help="nnU-Net fold to train (all = every training case)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for nnU-Net raw/preprocessed/results (default: a new temporary folder)")
    parser.add_argument("--dataset-id-start", type=int, default=620, help="first nnU-Net dataset id used")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument("--name", default=None, help="results file stem (default: gaze_study_<part>[_smoke])")
    return parser


# ----------------------------------------------------------------------------------------------------- data
def _read_png(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def load_cases(folder: Path, limit: int | None = None) -> list[str]:
    cases = sorted(path.stem for path in (folder / "images").glob("*.png"))
    if not cases:
        raise FileNotFoundError(f"{folder / 'images'}: no PNG images (set --data-root or ${DATA_ENV_VAR})")
    return cases[:limit] if limit else cases


def structure_mask(folder: Path, case: str, structure: str) -> np.ndarray:
    return (_read_png(folder / "labels_bits" / f"{case}.png") & STRUCTURE_BITS[structure]) > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return float("nan") if total == 0 else 2.0 * float(np.sum(a & b)) / total


# --------------------------------------------------------------------------------------------- pseudo part
def run_pseudo(folder: Path, cases: list[str], structures: Sequence[str], sigmas: Sequence[float],
               thresholds: Sequence[float], seed: int) -> dict[str, Any]:
    from tqdm import tqdm

    from pseudo_labels.gaze.crf import CrfSettings, refine_with_crf
    from pseudo_labels.gaze.heatmap import fixation_heatmap, scaled_length_px
    from pseudo_labels.gaze.simulator import GazeSimulationSettings, simulate_fixations

    scores: dict[str, list[float]] = {}
    crf_seconds: list[float] = []
    for case in tqdm(cases, desc="pseudo masks", unit="case"):
        image = _read_png(folder / "images" / f"{case}.png").astype(np.float64)
        for structure in structures:
            mask = structure_mask(folder, case, structure)
            sequence = simulate_fixations(mask, case, GazeSimulationSettings(), seed)
            for sigma in sigmas:
                heat = fixation_heatmap(sequence.pixel_positions(image.shape), sequence.duration_ms, image.shape,
                                        scaled_length_px(sigma, image.shape))
                start = time.perf_counter()
                refined = refine_with_crf(image, heat, CrfSettings())
                crf_seconds.append(time.perf_counter() - start)
                for threshold in thresholds:
                    for stage, probability in (("heatmap", heat), ("crf", refined)):
                        key = f"{structure}|{sigma:g}|{stage}|{threshold:g}"
                        scores.setdefault(key, []).append(dice(probability > threshold, mask))
    rows = []
    for key, values in scores.items():
        structure, sigma, stage, threshold = key.split("|")
        array = np.asarray(values)
        rows.append({"structure": structure, "sigma_768px": float(sigma), "stage": stage, "threshold": float(threshold),
                     "dice_mean": round(float(np.nanmean(array)), 4), "dice_sd": round(float(np.nanstd(array)), 4),
                     "dice_median": round(float(np.nanmedian(array)), 4), "cases": int(np.isfinite(array).sum())})
    return {"rows": rows, "crf_seconds_per_image_mean": round(float(np.mean(crf_seconds)), 3),
            "image_shape": list(_read_png(folder / "images" / f"{cases[0]}.png").shape)}


def pseudo_markdown(result: dict[str, Any]) -> list[str]:
    lines = ["| structure | σ (px @768) | stage | threshold | Dice mean ± SD | median | cases |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(
        result["rows"], key=lambda r: (r["structure"], r["sigma_768px"], r["threshold"], r["stage"] != "heatmap")
    )
    for row in order:
        lines.append(f"| {row['structure']} | {row['sigma_768px']:g} | {row['stage']} | {row['threshold']:g} | "
                     f"{row['dice_mean']:.3f} ± {row['dice_sd']:.3f} | {row['dice_median']:.3f} | {row['cases']} |")
    lines.append("")
    lines.append(f"CRF time: {result['crf_seconds_per_image_mean']} s per image ({result['image_shape']} px, one CPU "
                 "thread, shared machine).")
    return lines


# ---------------------------------------------------------------------------------------------- train part
def _write_nifti(array: np.ndarray, path: Path, spacing_mm: float) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing_mm, spacing_mm))
    sitk.WriteImage(image, str(path), useCompression=True)


def _add_tiny_configuration(plans_path: Path) -> None:
    plans = json.loads(plans_path.read_text())
    base = plans["configurations"]["2d"]
    arch_kwargs = dict(base["architecture"]["arch_kwargs"])
    arch_kwargs.update(n_stages=3, features_per_stage=[16, 32, 64], kernel_sizes=[[3, 3]] * 3,
                       strides=[[1, 1], [2, 2], [2, 2]], n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[2, 2])
    plans["configurations"][TINY_CONFIGURATION] = {
        "inherits_from": "2d", "batch_size": 2, "architecture": {**base["architecture"], "arch_kwargs": arch_kwargs},
    }
    plans_path.write_text(json.dumps(plans, indent=2))


def _parameter_counts(plans_path: Path, configuration: str, levels: int) -> dict[str, int]:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(str(plans_path)).get_configuration(configuration)

    def count(outputs: int) -> int:
        network = get_network_from_plans(manager.network_arch_class_name, manager.network_arch_init_kwargs,
                                         manager.network_arch_init_kwargs_req_import, 1, outputs, deep_supervision=True)
        return int(sum(parameter.numel() for parameter in network.parameters()))

    return {"gazesup_shared_L_outputs": count(levels), "nnunet_binary_2_outputs": count(2),
            "one_network_per_level_total": levels * count(1)}


def run_train(args: argparse.Namespace, folder: Path, structures: Sequence[str], work_dir: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    from nnunet_babloss.apps.demo import nnunet_command, nnunet_environment, run_nnunet_step, training_environment
    from pseudo_labels.gaze.pipeline import GazePseudoLabelSettings, generate_gaze_dataset
    from pseudo_labels.gaze.simulator import write_simulated_gaze_csv

    cases = load_cases(folder)
    if args.train_cases + args.test_cases > len(cases):
        raise ValueError(f"{args.train_cases} train + {args.test_cases} test cases > {len(cases)} available")
    train, test = cases[: args.train_cases], cases[len(cases) - args.test_cases:]
    spacing = SPACING_MM[args.source]
    suffix = SCHEDULE_SUFFIX[args.schedule]
    environment = nnunet_environment(work_dir, os.environ)
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"train_cases": train, "test_cases": test, "schedule": args.schedule,
                               "configuration": args.configuration, "fold": args.fold, "structures": {}}
    for offset, structure in enumerate(structures):
        base = work_dir / structure
        images, tests = base / "images", base / "imagesTs"
        images.mkdir(parents=True, exist_ok=True)
        tests.mkdir(parents=True, exist_ok=True)
        masks = {}
        for case in train:
            _write_nifti(_read_png(folder / "images" / f"{case}.png"), images / f"{case}.nii.gz", spacing)
            masks[case] = structure_mask(folder, case, structure)
        for case in test:
            _write_nifti(_read_png(folder / "images" / f"{case}.png"), tests / f"{case}_0000.nii.gz", spacing)
        gaze_csv = base / "gaze.csv"
        write_simulated_gaze_csv(masks, gaze_csv, seed=args.seed,
                                 description={"structure": structure, "source": args.source})
        gaze_id, full_id = args.dataset_id_start + 2 * offset, args.dataset_id_start + 2 * offset + 1
        gaze_name, full_name = f"JSRTGaze{structure.capitalize()}", f"JSRTFull{structure.capitalize()}"
        generate_gaze_dataset(images, gaze_csv, gaze_id, gaze_name, structure=structure,
                              settings=GazePseudoLabelSettings(thresholds=tuple(sorted(args.thresholds))),
                              raw_folder=environment["nnUNet_raw"], progress=False, overwrite=True,
                              arguments={"benchmark": "gaze_study", "structure": structure})
        full = Path(environment["nnUNet_raw"]) / f"Dataset{full_id:03d}_{full_name}"
        (full / "imagesTr").mkdir(parents=True, exist_ok=True)
        (full / "labelsTr").mkdir(parents=True, exist_ok=True)
        for case in train:
            image = _read_png(folder / "images" / f"{case}.png")
            _write_nifti(image, full / "imagesTr" / f"{case}_0000.nii.gz", spacing)
            _write_nifti(masks[case].astype(np.uint8), full / "labelsTr" / f"{case}.nii.gz", spacing)
        (full / "dataset.json").write_text(json.dumps({
            "name": full_name, "channel_names": {"0": "XRay"}, "labels": {"background": 0, structure: 1},
            "numTraining": len(train), "file_ending": ".nii.gz"}, indent=2))
        arms = {"GazeSupTrainer (simulated gaze pseudo masks)": (gaze_id, f"GazeSupTrainer{suffix}"),
                "nnUNetTrainer (full masks)": (full_id, f"nnUNetTrainer{suffix}")}
        structure_result: dict[str, Any] = {"arms": {}}
        for label, (dataset_id, trainer) in arms.items():
            dataset = str(dataset_id)
            tag = f"{structure}_{trainer}"
            run_nnunet_step(f"plan {tag}", [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", dataset, "-c", "2d",
                                            "-np", "1", "-npfp", "1"], environment, logs, print)
            preprocessed = next(Path(environment["nnUNet_preprocessed"]).glob(f"Dataset{dataset_id:03d}_*"))
            plans_path = preprocessed / "nnUNetPlans.json"
            if args.configuration == TINY_CONFIGURATION:
                _add_tiny_configuration(plans_path)
            if dataset_id == gaze_id:
                structure_result["parameters"] = _parameter_counts(plans_path, args.configuration, len(args.thresholds))
            start = time.perf_counter()
            run_nnunet_step(f"train {tag}", [nnunet_command("nnUNetv2_train"), dataset, args.configuration, args.fold,
                                             "-tr", trainer, "-device", args.device],
                            training_environment(environment), logs, print)
            train_seconds = time.perf_counter() - start
            predictions = base / f"predictions_{trainer}"
            run_nnunet_step(f"predict {tag}", [nnunet_command("nnUNetv2_predict"), "-i", str(tests), "-o",
                                               str(predictions), "-d", dataset, "-c", args.configuration, "-f",
                                               args.fold, "-tr", trainer, "-device", args.device, "-npp", "1",
                                               "-nps", "1"], environment, logs, print)
            scores = {}
            for case in test:
                predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(predictions / f"{case}.nii.gz"))) > 0
                scores[case] = round(dice(predicted, structure_mask(folder, case, structure)), 4)
            values = np.asarray(list(scores.values()))
            structure_result["arms"][label] = {"trainer": trainer, "dataset_id": dataset_id,
                                               "dice_mean": round(float(np.nanmean(values)), 4),
                                               "dice_sd": round(float(np.nanstd(values)), 4),
                                               "dice_per_case": scores, "train_seconds": round(train_seconds, 1)}
        results["structures"][structure] = structure_result
    return results


def train_markdown(result: dict[str, Any]) -> list[str]:
    lines = [f"Schedule `{result['schedule']}`, configuration `{result['configuration']}`, fold `{result['fold']}`, "
             f"{len(result['train_cases'])} training / {len(result['test_cases'])} test cases.", "",
             "| structure | arm | trainer | test Dice mean ± SD | train time (s) |", "|---|---|---|---|---|"]
    for structure, item in result["structures"].items():
        for label, arm in item["arms"].items():
            lines.append(f"| {structure} | {label} | `{arm['trainer']}` | {arm['dice_mean']:.3f} ± "
                         f"{arm['dice_sd']:.3f} | {arm['train_seconds']} |")
    lines.append("")
    for structure, item in result["structures"].items():
        if "parameters" in item:
            counts = item["parameters"]
            lines.append(f"Parameters ({structure}, this configuration): GazeSup shared network with L outputs "
                         f"{counts['gazesup_shared_L_outputs']:,}; binary nnU-Net "
                         f"{counts['nnunet_binary_2_outputs']:,}; "
                         f"one network per level (the published design) {counts['one_network_per_level_total']:,}.")
    return lines


# ----------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.source, args.train_cases, args.test_cases = "jsrt_fixture_256", 6, 2
        args.schedule, args.configuration = "demo", TINY_CONFIGURATION
    data_root = args.data_root or default_data_root()
    folder = data_root / args.source
    if not folder.is_dir():
        print(f"error: {folder} not found (set --data-root or ${DATA_ENV_VAR})", file=sys.stderr)
        return 2
    name = args.name or f"gaze_study_{args.part}{'_smoke' if args.smoke else ''}"
    record: dict[str, Any] = {
        "benchmark": "benchmarks/gaze_study.py", "gaze": GAZE_LABEL,
        "arguments": sys.argv[1:] if argv is None else list(argv),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "source": args.source, "thresholds": args.thresholds, "seed": args.seed,
    }
    markdown = [f"# GazeSup study on JSRT — {GAZE_LABEL}", "",
                f"`python benchmarks/gaze_study.py {' '.join(record['arguments'])}` ({record['created_utc']}, source "
                f"`{args.source}`, seed {args.seed}).", ""]
    if args.part in ("pseudo", "all"):
        cases = load_cases(folder, args.cases)
        record["pseudo"] = run_pseudo(folder, cases, args.structures, args.sigmas, args.thresholds, args.seed)
        record["pseudo"]["cases"] = len(cases)
        markdown += ["## Gaze pseudo masks vs real SCR masks (simulated gaze)", "",
                     f"{len(cases)} cases. Heatmap = duration-weighted Gaussians normalised to max 1; crf = dense "
                     "CRF (bilateral only, sxy 80 px @768, srgb 13, compat 1, 10 iterations); a level = map > "
                     "threshold.", ""]
        markdown += pseudo_markdown(record["pseudo"]) + [""]
    if args.part in ("train", "all"):
        import tempfile

        structures = args.structures[:1] if args.smoke else args.structures
        work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="gaze_study_"))
        record["train"] = run_train(args, folder, structures, work_dir)
        record["train"]["work_dir"] = str(work_dir)
        markdown += ["## GazeSupTrainer (simulated gaze) vs nnUNetTrainer (full masks), same schedule", ""]
        if args.smoke:
            markdown += ["**Smoke run** (3 epochs x 10 iterations, tiny network): a pipeline check, not a result.", ""]
        markdown += train_markdown(record["train"]) + [""]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.results_dir / f"{name}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
    print(f"written: {args.results_dir / (name + '.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
