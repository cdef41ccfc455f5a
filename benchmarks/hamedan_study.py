"""Hamedan cephalometric landmarks: landmark-only detection of 19 landmarks, next to the inter-annotator difference.

``HeatmapTrainer`` (landmark-only data, so there is no bridge to use) is trained with the stock ``nnUNetv2_train``
on the mean of the two annotators for a seeded train part of the 100 cases and scored on the held-out part (and on
``--test-data``, a separate folder of the same layout: ``images/`` + ``landmarks.json``). The pixel spacing of the
Hamedan images is not documented: errors are reported in pixels of the original 1340 x 1671 images and in mm at the
stated nominal spacing (``--nominal-spacing``, default 0.1 mm as for the similar ISBI 2015 cephalograms). The human
reference is the distance between the two annotators on the same cases; the model is also scored against each
annotator separately.

Next to the model, the **mean training shape** (``nnunet_babloss.core.landmarks.baseline``: each landmark's mean position
over the model's training cases, fold 0 of ``splits_final.json``, predicted for every case with no image and no
network; also a similarity-aligned variant) is scored by the same code against the same references, in pixels and
nominal mm. A model worse than it gets a line starting with ``WARNING:`` in the report and on stderr.

Outputs (``--results-dir``): ``hamedan_study_<heatmap loss>.md``/``.json``. Finished trainings are reused with the same
``--work-dir``.

Usage::

    python benchmarks/hamedan_study.py --work-dir /tmp/hamedan_study --epochs 20 --iterations 25
    python benchmarks/hamedan_study.py --work-dir /tmp/hamedan_smoke --smoke
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    add_heatmap_options,
    effective_heatmap_settings,
    heatmap_attributes,
    heatmap_settings_text,
    settings_warning,
    reproducibility_record,
    reproducibility_text,
)

from build_datasets import HAMEDAN_SPACING_NOTE, default_data_root  # noqa: E402
from dataset_conversion.convert import ConversionInputs, ConversionSettings, convert_dataset  # noqa: E402
from dataset_conversion.landmark_sources import HamedanFile  # noqa: E402
from nnunet_babloss.core.landmarks.io import read_landmarks  # noqa: E402

ANNOTATORS = ("mollabashi", "farhadifar")


def build(folder: Path, raw: Path, dataset_id: int, name: str, spacing_mm: float, test: bool) -> list[str]:
    """Convert a Hamedan-layout folder (mean annotator); ``test``: every case goes to ``imagesTs``."""
    cases = tuple(sorted(path.stem for path in (folder / "images").glob("*.png")))
    inputs = ConversionInputs(
        image_folders=(folder / "images",), landmarks=HamedanFile(folder / "landmarks.json", annotator="mean"),
        annotation_kinds=None if test else {case: "landmark_only" for case in cases},
        test_cases=frozenset(cases) if test else frozenset(), cases=cases,
    )
    settings = ConversionSettings(
        dataset_id=dataset_id, dataset_name=name, raw_folder=raw, num_folds=2, overwrite=True, progress=False,
        tool="benchmarks/hamedan_study.py", description="Hamedan cephalograms, landmark-only (mean annotator)",
        pixel_spacing_mm=(spacing_mm,), pixel_spacing_note=HAMEDAN_SPACING_NOTE,
        extra_dataset_json={"nominal_pixel_spacing_mm": spacing_mm, "annotator": "mean"},
    )
    convert_dataset(inputs, settings, arguments={"study": "hamedan", "folder": str(folder)})
    return list(cases)


def annotator_points(landmarks_json: Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """Landmark order and ``{case: {annotator: (19, 2) x/y pixels, NaN where missed}}``."""
    content = json.loads(landmarks_json.read_text())
    order = list(content["landmark_order"])
    points: dict[str, dict[str, np.ndarray]] = {}
    for case, entry in content["cases"].items():
        points[case] = {}
        for annotator in (*ANNOTATORS, "mean"):
            rows = entry.get(annotator)
            if rows is None:
                continue
            points[case][annotator] = np.array([[np.nan, np.nan] if p is None else p for p in rows], dtype=float)
    return order, points


def predicted_pixels(prediction: Path, order: Sequence[str], spacing_mm: float) -> np.ndarray:
    """Predicted landmarks as x/y pixels of the original image (world mm / spacing; the converter's convention)."""
    landmarks = read_landmarks(prediction).reorder(tuple(order))
    return landmarks.points_mm[:, :2] / spacing_mm


def pixel_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    errors = np.linalg.norm(a - b, axis=1)
    return errors[np.isfinite(errors)]


def score(prediction_folder: Path, cases: Sequence[str], order: Sequence[str], points: dict, spacing_mm: float) -> dict:
    """Model vs the mean and vs each annotator, and annotator vs annotator, on the same cases (pixels and mm)."""
    against: dict[str, list[float]] = {"mean": [], **{annotator: [] for annotator in ANNOTATORS}}
    inter: list[float] = []
    for case in cases:
        predicted = predicted_pixels(prediction_folder / f"{case}.json", order, spacing_mm)
        for reference in against:
            if reference in points[case]:
                against[reference].extend(pixel_errors(predicted, points[case][reference]))
        if all(annotator in points[case] for annotator in ANNOTATORS):
            inter.extend(pixel_errors(points[case][ANNOTATORS[0]], points[case][ANNOTATORS[1]]))
    result = {f"model_vs_{name}": {"px": error_summary(errors), "mm_nominal": error_summary(errors, spacing_mm)}
              for name, errors in against.items()}
    result["inter_annotator"] = {"px": error_summary(inter), "mm_nominal": error_summary(inter, spacing_mm)}
    return result


COMPARED = ("mean", *ANNOTATORS)


def score_baselines(environment: dict, dataset_id: int, splits: dict[str, tuple[list[str], list[str], dict]],
                    spacing_mm: float, work: Path) -> dict[str, dict]:
    """Every :data:`study_common.MEAN_SHAPE_BASELINES` entry, from the training cases of fold 0, scored like the model.

    ``splits``: ``{split: (cases, landmark order, annotator points)}``. The scores have the model's keys
    (``model_vs_<reference>``: the baseline's prediction against that reference). Needs no trained model, so it also
    runs when a finished work folder is rescored.
    """
    dataset_raw = raw_folder(environment, dataset_id)
    train_cases, _ = read_single_split(environment, dataset_id)
    baselines = {key: {"label": label, "aligned": aligned, "scores": {}}
                 for key, (label, aligned) in MEAN_SHAPE_BASELINES.items()}
    for split, (cases, order, points) in splits.items():
        predictions, used = write_mean_shape_baselines(dataset_raw, train_cases, cases, work / "baselines" / split)
        for key, folder in predictions.items():
            baselines[key]["num_training_cases"] = len(used)
            baselines[key]["scores"][split] = score(folder, cases, order, points, spacing_mm)
    headline = baselines[REFERENCE_BASELINE]["scores"]["validation"]["model_vs_mean"]["px"]["mre"]
    print(f"[baseline] mean training shape of {len(train_cases)} cases: MRE {headline:.1f} px vs the mean annotator",
          flush=True)
    return baselines


def baseline_warnings(report: dict) -> list[str]:
    """``WARNING:`` lines (also printed to stderr) for every split where the model is worse than the mean shape."""
    warnings = []
    baseline = report["baselines"][REFERENCE_BASELINE]
    for split in report["evaluation_sets"]:
        model = mean_sd([seed["model_vs_mean"]["px"]["mre"] for seed in report["scores"][split]])[0]
        line = baseline_warning(f"HeatmapTrainer vs the mean annotator ({split})", model,
                                baseline["scores"][split]["model_vs_mean"]["px"]["mre"], "px")
        if line is not None:
            warnings.append(line)
    return warnings


def markdown(report: dict) -> str:
    s = report["schedule"]
    lines = [
        "# Hamedan cephalometric landmarks (landmark-only)", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {report['machine']['cpu']} ({report['machine']['cpu_cores_visible']} cores visible), device "
        f"`{report['device']}`. `HeatmapTrainer` ({heatmap_settings_text(report)}), 2D at {report['spacing_mm']} mm/px nominal (= "
        f"{report['spacing_mm'] / report['nominal_spacing_mm']:g} original pixels), patch "
        f"{report['configuration']['patch_size']}, batch {report['configuration']['batch_size']}; {s['epochs']} epochs "
        f"x {s['iterations_per_epoch']} iterations (a reduced CPU schedule). {report['num_train']} training / "
        f"{report['num_val']} validation cases (seed {report['split_seed']}), seeds {report['seeds']} (mean ± SD over "
        f"seeds). Errors in original pixels and in mm at the **nominal** {report['nominal_spacing_mm']} mm/px (the "
        "dataset does not document its spacing). Training wall time: "
        f"{format_mean_sd(report['wall_times'], 0)} s. {reproducibility_text(report)}", "",
    ]
    if report.get("warnings"):
        lines += [*report["warnings"], ""]
    baselines = report.get("baselines", {})
    if baselines:
        lines += [f"The mean-training-shape rows predict, for every case, each landmark's mean position over the "
                  f"{baselines[REFERENCE_BASELINE]['num_training_cases']} training cases (no image, no network); "
                  "the similarity-aligned one is the generalised Procrustes mean placed at the cases' mean pose.", ""]
    for split in report["evaluation_sets"]:
        lines += [f"## {split}", "", "| compared | MRE px | SD px | MRE mm (nominal) | SDR@2 mm | SDR@2.5 mm | SDR@3 mm | SDR@4 mm |",
                  "|---|---|---|---|---|---|---|---|"]
        rows = [(f"model vs {name}", report["scores"][split], f"model_vs_{name}") for name in COMPARED]
        for baseline in baselines.values():
            if split in baseline["scores"]:
                rows += [(f"{baseline['label']} vs {name}", [baseline["scores"][split]], f"model_vs_{name}")
                         for name in COMPARED]
        rows.append(("inter annotator (human reference)", report["scores"][split], "inter_annotator"))
        for label, seeds, key in rows:
            def values(unit, metric):
                return [seed[key][unit][metric] for seed in seeds]
            cells = [format_mean_sd(values("px", "mre"), 1), format_mean_sd(values("px", "sd"), 1),
                     format_mean_sd(values("mm_nominal", "mre"), 2)]
            cells += [format_mean_sd(values("mm_nominal", f"sdr_{t:g}")) for t in SDR_THRESHOLDS_MM]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def annotators_only(folder: Path, args: argparse.Namespace) -> int:
    """The inter-annotator difference on all cases and on the validation part, without training."""
    order, points = annotator_points(folder / "landmarks.json")
    shuffled = sorted(points)
    random.Random(args.split_seed).shuffle(shuffled)
    parts = {"all cases": sorted(points), f"validation part ({args.num_val} cases, seed {args.split_seed})":
             sorted(shuffled[: args.num_val])}
    result: dict = {"command": "python benchmarks/hamedan_study.py " + " ".join(sys.argv[1:]),
                    "nominal_spacing_mm": args.nominal_spacing, "parts": {}}
    lines = ["# Hamedan: inter-annotator difference (human reference)", "", f"Command: `{result['command']}`", "",
             f"Distance between the two annotators' points (mollabashi vs farhadifar) in original pixels and in mm at the "
             f"**nominal** {args.nominal_spacing} mm/px; pairs where an annotator has no point are left out.", "",
             "| cases | pairs | MRE px | SD px | median px | MRE mm (nominal) | SDR@2 mm | SDR@2.5 mm | SDR@3 mm | SDR@4 mm |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, cases in parts.items():
        errors = [e for case in cases if all(a in points[case] for a in ANNOTATORS)
                  for e in pixel_errors(points[case][ANNOTATORS[0]], points[case][ANNOTATORS[1]])]
        px, mm = error_summary(errors), error_summary(errors, args.nominal_spacing)
        result["parts"][name] = {"px": px, "mm_nominal": mm}
        lines.append(f"| {name} | {px['n']} | {px['mre']:.1f} | {px['sd']:.1f} | {px['median']:.1f} | {mm['mre']:.2f} | "
                     + " | ".join(f"{mm[f'sdr_{t:g}']:.3f}" for t in SDR_THRESHOLDS_MM) + " |")
    results_dir = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "hamedan_annotators.json").write_text(json.dumps(result, indent=2))
    (results_dir / "hamedan_annotators.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hamedan_study.py", description=__doc__.split("Usage::", 1)[0],
        epilog="Usage::" + __doc__.split("Usage::", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="nnU-Net folders, logs and models (reused)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the shared data folder (default: $NNUNET_BABLOSS_DATA or <repo>/../shared/data)")
    parser.add_argument("--test-data", type=Path, default=None,
                        help="a separate folder of the hamedan_ceph layout (images/, landmarks.json) to score on")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="where the tables go (default: benchmarks/results)")
    parser.add_argument("--nominal-spacing", type=float, default=0.1,
                        help="stated pixel spacing of the original images in mm (default: 0.1, nominal)")
    parser.add_argument("--spacing", type=float, default=0.8, help="training resolution, nominal mm/px (default: 0.8)")
    parser.add_argument("--patch", type=int, nargs=2, default=[224, 192], metavar=("ROWS", "COLS"),
                        help="patch in pixels at --spacing (default: 224 192, the whole image at 0.8 mm)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (default: 4)")
    add_heatmap_options(parser)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default: 0)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default: 20)")
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch (default: 25)")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch (default: 5)")
    parser.add_argument("--num-val", type=int, default=20, help="held-out validation cases (default: 20)")
    parser.add_argument("--max-train", type=int, default=None, help="use at most this many training cases")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation split (default: 0)")
    parser.add_argument("--dataset-id", type=int, default=721, help="dataset id (test folder: +1) (default: 721)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training device (default: cpu)")
    parser.add_argument("--code-snapshot", type=Path, default=None,
                        help="folder with a copy of this repository's packages for the nnU-Net commands to import")
    parser.add_argument("--annotators-only", action="store_true",
                        help="no training: only the human reference (annotator vs annotator) on every case and on "
                        "the validation part (seconds; writes hamedan_annotators.{md,json})")
    parser.add_argument("--smoke", action="store_true",
                        help="a few-minute run: 6 training + 2 validation cases, 2 epochs x 2 iterations at 3.2 mm/px")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.iterations, args.val_iterations = [0], 2, 2, 1
        args.spacing, args.patch, args.batch_size, args.num_val, args.max_train = 3.2, [64, 64], 2, 2, 6
        args.results_dir = args.work_dir / "results"
    folder = (args.data_root or default_data_root()) / "hamedan_ceph"
    if not (folder / "landmarks.json").is_file():
        print(f"error: {folder}/landmarks.json not found (set NNUNET_BABLOSS_DATA or --data-root)", file=sys.stderr)
        return 2
    if args.annotators_only:
        return annotators_only(folder, args)
    work = args.work_dir.resolve()
    results_dir = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    schedule = Schedule(args.epochs, args.iterations, args.val_iterations)
    attributes = heatmap_attributes(args)
    effective = effective_heatmap_settings(attributes)
    trainer_folder = write_study_trainers(work / "study_trainers", schedule, args.seeds, ["HeatmapTrainer"], attributes)
    environment = study_environment(work, trainer_folder, args.device, args.code_snapshot)
    raw = Path(environment["nnUNet_raw"])
    raw.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    order, points = annotator_points(folder / "landmarks.json")
    cases = sorted(points)
    shuffled = list(cases)
    random.Random(args.split_seed).shuffle(shuffled)
    val_cases = sorted(shuffled[: args.num_val])
    train_cases = sorted(shuffled[args.num_val:][: args.max_train])
    marker = work / "prepared.json"
    if marker.is_file():
        configuration = json.loads(marker.read_text())["configuration"]
    else:
        build(folder, raw, args.dataset_id, "HamedanStudy", args.nominal_spacing, test=False)
        configuration = plan_and_preprocess(args.dataset_id, environment, None, args.spacing * 1.0, args.patch,
                                            args.batch_size, logs)
        # the configuration's spacing is in the dataset's (nominal) mm
        write_single_split(environment, args.dataset_id, train_cases, val_cases)
        marker.write_text(json.dumps({"configuration": configuration}))
    evaluation_sets = ["validation"]
    test_points = None
    if args.test_data is not None:
        build(args.test_data.resolve(), raw, args.dataset_id + 1, "HamedanStudyTest", args.nominal_spacing, test=True)
        test_order, test_points = annotator_points(args.test_data.resolve() / "landmarks.json")
        evaluation_sets.append("test")
    scores: dict[str, list[dict]] = {name: [] for name in evaluation_sets}
    wall_times, curves = [], []
    settings_warnings: list[str | None] = []
    for seed in args.seeds:
        trainer = trainer_class_name("HeatmapTrainer", seed)
        print(f"[train] seed {seed}: nnUNetv2_train {args.dataset_id} {STUDY_CONFIGURATION} 0 -tr {trainer}", flush=True)
        settings = {"schedule": [args.epochs, args.iterations, args.val_iterations], "heatmap": attributes}
        wall_times.append(train(args.dataset_id, trainer, environment, args.device, logs, settings))
        fold = model_folder(environment, args.dataset_id, trainer)
        settings_warnings.append(settings_warning(f"HeatmapTrainer seed {seed}", effective, fold))
        curves.append(learning_curves(fold))
        scores["validation"].append(score(fold / "validation", val_cases, order, points, args.nominal_spacing))
        if test_points is not None:
            output = fold / "study_test_predictions"
            test_raw = raw_folder(environment, args.dataset_id + 1)
            if not any(output.glob("*.json")):
                run_logged([nnunet_command("nnUNetv2_bab_predict"), "-i", str(test_raw / "imagesTs"), "-o", str(output),
                            "-d", str(args.dataset_id), "-c", STUDY_CONFIGURATION, "-f", "0", "-tr", trainer,
                            "-device", args.device, "-chk", "checkpoint_final.pth", "--landmark-threshold", "0"],
                           environment, logs / f"predict_test_{trainer}.log")
            scores["test"].append(score(output, sorted(test_points), test_order, test_points, args.nominal_spacing))
        headline = scores["validation"][-1]["model_vs_mean"]["px"]["mre"]
        print(f"[score] seed {seed}: MRE {headline:.1f} px vs the mean annotator", flush=True)
    baseline_splits = {"validation": (val_cases, order, points)}
    if test_points is not None:
        baseline_splits["test"] = (sorted(test_points), test_order, test_points)
    baselines = score_baselines(environment, args.dataset_id, baseline_splits, args.nominal_spacing, work)
    report = {
        "command": "python benchmarks/hamedan_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(), "reproducibility": reproducibility_record(environment, args.device), "device": args.device, "spacing_mm": args.spacing,
        "nominal_spacing_mm": args.nominal_spacing, "heatmap_loss": effective["heatmap_loss_kind"], "heatmap_settings": effective, "configuration": configuration,
        "schedule": {"epochs": args.epochs, "iterations_per_epoch": args.iterations,
                     "val_iterations_per_epoch": args.val_iterations},
        "seeds": args.seeds, "split_seed": args.split_seed, "num_train": len(train_cases), "num_val": len(val_cases),
        "val_cases": val_cases, "evaluation_sets": evaluation_sets, "wall_times": wall_times,
        "total_wall_time_s": time.perf_counter() - started, "scores": scores, "baselines": baselines,
        "learning_curves": curves,
    }
    report["warnings"] = [line for line in settings_warnings if line] + baseline_warnings(report)
    stem = f"hamedan_study_{effective['heatmap_loss_kind']}"  # one table per heatmap loss, side by side
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (results_dir / f"{stem}.md").write_text(markdown(report))
    print(f"[done] {results_dir / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
