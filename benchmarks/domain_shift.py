"""Domain-shift study of boundary-aware pre-training (issue 8; seed document 003): does pre-training on masks help
landmark detection on images whose intensities differ from the training images?

Protocol (JSRT, ``jsrt_512`` with its ``splits.json`` partial-label groups; all cases resampled by nnU-Net to
``--spacing`` mm/px, 1.4 mm = 256 px by default, one fixed 2D configuration ``2d_study`` shared by both datasets so
the networks have identical keys and shapes):

1. **Pre-training dataset** (id ``--id-base + 1``): masks of the ``mask_only`` group (``--pretrain-cases``, plus
   ``--val-cases`` held out as nnU-Net's validation fold). Its ``dataset.json`` receives the landmark block of the
   fine-tuning dataset (names, bridge, sigma, boundary range: the heatmap channels and which structure each
   regresses); no landmark files. ``BoundaryPretrainer`` (every heatmap channel regresses the boundary-proximity map
   of its structure, mixing loss ``t MSE + (1 - t) LogCosh``) trains on it.
2. **Fine-tuning dataset** (id ``--id-base + 2``): landmarks of ``--finetune-cases`` cases of the ``landmark_only``
   group (label files all "ignore"), ``--val-cases`` more as validation. ``HeatmapTrainer`` trains on it twice,
   from scratch and with ``-pretrained_weights`` = the pre-training's ``checkpoint_final.pth``, with the same seed
   and schedule.
3. **Test**: ``--num-test`` cases of the ``both`` group (never seen by either stage), predicted with
   ``nnUNetv2_bab_predict`` (``checkpoint_final.pth``) on the original images and on a shifted copy, and scored
   with ``nnunet_babloss.core.evaluation`` (MRE, SD, median, SDR@2/2.5/3/4 mm; per landmark group too).

The intensity shift (exact, per image; ``--shift-*`` options): with ``lo, hi`` the image's minimum and maximum,
``x = (I - lo) / (hi - lo)``; ``y = x ** gamma``; if invert, ``y = 1 - y``; ``y = y + N(0, noise_std^2)`` drawn from
``numpy.random.default_rng(seed + case index)`` (cases in sorted order); ``y = clip(y, 0, 1)``;
``I' = lo + y (hi - lo)``, written with the original geometry and pixel type. Defaults: gamma 0.6, inverted,
noise 0.02: a negative, brighter-midtone, noisier X-ray, which nnU-Net's per-image z-score normalisation does not
undo (it removes only a linear change of brightness and contrast, and inversion is a negative contrast).

Outputs (``--results-dir``, default ``benchmarks/results``): ``domain_shift.md`` / ``domain_shift.json``
(``domain_shift_smoke.*`` with ``--smoke``): one row per (pre-training, test images), case lists, shift, schedule,
wall times, machine, arguments. Finished trainings and predictions in ``--work-dir`` are reused on a rerun.

Usage::

    python benchmarks/domain_shift.py --smoke --work-dir /tmp/domain_shift_smoke
    python benchmarks/domain_shift.py --work-dir /tmp/domain_shift --device cuda --pretrain-epochs 100 \\
        --finetune-epochs 100 --iterations 50 --finetune-cases 20
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from study_common import (  # noqa: E402 (adds the repository to sys.path)
    REPO_ROOT,
    SDR_THRESHOLDS_MM,
    STUDY_CONFIGURATION,
    error_summary,
    landmark_errors,
    machine_description,
    model_folder,
    nnunet_command,
    plan_and_preprocess,
    raw_folder,
    run_logged,
    study_environment,
    training_environment,
    write_single_split,
)

from build_datasets import JSRT_BITS, JSRT_BRIDGE, JSRT_SPACING_NOTE, default_data_root  # noqa: E402

GROUPS = ("RL", "LL", "H", "RCLA", "LCLA")
PRETRAIN_TRAINER = "BoundaryPretrainer_DomainShift"
SCRATCH_TRAINER = "HeatmapTrainer_DomainShift"
PRETRAINED_TRAINER = "HeatmapTrainer_DomainShiftPretrained"


@dataclass(frozen=True)
class IntensityShift:
    """The test-time intensity shift (see the module docstring for the exact formula)."""

    gamma: float = 0.6
    invert: bool = True
    noise_std: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.gamma > 0:
            raise ValueError(f"--shift-gamma must be > 0, got {self.gamma}")
        if not self.noise_std >= 0:
            raise ValueError(f"--shift-noise-std must be >= 0, got {self.noise_std}")


def shift_intensities(image: np.ndarray, shift: IntensityShift, case_index: int) -> np.ndarray:
    """Apply :class:`IntensityShift` to one image; returns an array of the input's shape and dtype."""
    values = image.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return image.copy()
    shifted = ((values - lo) / (hi - lo)) ** shift.gamma
    if shift.invert:
        shifted = 1.0 - shifted
    if shift.noise_std > 0:
        shifted = shifted + np.random.default_rng(shift.seed + case_index).normal(0.0, shift.noise_std, shifted.shape)
    result = lo + np.clip(shifted, 0.0, 1.0) * (hi - lo)
    if np.issubdtype(image.dtype, np.integer):
        result = np.rint(result)
    return result.astype(image.dtype)


def write_shifted_copy(source: Path, target: Path, shift: IntensityShift) -> list[str]:
    """Shifted copies of every image of ``source`` (same names and geometry) in ``target``; returns the file names."""
    import SimpleITK as sitk

    target.mkdir(parents=True, exist_ok=True)
    names = sorted(path.name for path in source.iterdir() if path.is_file())
    for index, name in enumerate(names):
        image = sitk.ReadImage(str(source / name))
        shifted = sitk.GetImageFromArray(shift_intensities(sitk.GetArrayFromImage(image), shift, index))
        shifted.CopyInformation(image)
        sitk.WriteImage(shifted, str(target / name), useCompression=True)
    return names


# ---------------------------------------------------------------------------------------------------- data
def choose_cases(groups: dict[str, str], group: str, count: int | None, val_count: int, rng: random.Random,
                 exclude: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """``(training, validation)`` cases drawn from one partial-label group (sorted, then shuffled by ``rng``)."""
    cases = sorted(case for case, kind in groups.items() if kind == group and case not in exclude)
    rng.shuffle(cases)
    validation, rest = cases[:val_count], cases[val_count:]
    training = rest if count is None else rest[:count]
    if count is not None and len(training) < count:
        raise ValueError(f"group {group!r} has only {len(rest)} cases left for training, {count} requested")
    if not training or (val_count and len(validation) < val_count):
        raise ValueError(f"group {group!r}: not enough cases ({len(cases)}) for {count} training + {val_count} validation")
    return sorted(training), sorted(validation)


def convert(folder: Path, raw: Path, dataset_id: int, name: str, kinds: dict[str, str], test: Sequence[str],
            landmarks: bool, description: str) -> Path:
    """One nnU-Net raw dataset from the jsrt_512 layout (our converter); returns its folder."""
    from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset
    from dataset_conversion.landmark_sources import LandmarkFolder
    from dataset_conversion.masks import BitFlagMasks

    info = json.loads((folder / "dataset_info.json").read_text())
    inputs = ConversionInputs(
        image_folders=(folder / "images",),
        masks=BitFlagMasks(folder / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(folder / "landmarks", "jsrt") if landmarks else None,
        annotation_kinds=kinds, test_cases=frozenset(test), cases=tuple(sorted({*kinds, *test})),
    )
    settings = ConversionSettings(
        dataset_id=dataset_id, dataset_name=name, raw_folder=raw, num_folds=2, overwrite=True, progress=False,
        tool="benchmarks/domain_shift.py", description=description,
        pixel_spacing_mm=(float(info["pixel_spacing_mm"]),), pixel_spacing_note=JSRT_SPACING_NOTE,
        channel_names=("xray",), overlap="priority",
        landmarks=LandmarkOptions(bridge=JSRT_BRIDGE) if landmarks else LandmarkOptions(),
    )
    return convert_dataset(inputs, settings, arguments={"study": "domain_shift", "dataset": name}).dataset_folder


def write_trainers(folder: Path, args: argparse.Namespace) -> Path:
    """``domain_shift_trainers.py``: the study's schedules and seed as subclasses (nnU-Net finds trainers by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = f'''"""Generated by benchmarks/domain_shift.py (do not edit)."""
from nnunet_babloss.trainers import BoundaryPretrainer, HeatmapTrainer


class {PRETRAIN_TRAINER}(BoundaryPretrainer):
    schedule_num_epochs = {args.pretrain_epochs}
    schedule_iterations_per_epoch = {args.iterations}
    schedule_val_iterations_per_epoch = {args.val_iterations}
    schedule_save_every = {args.pretrain_epochs}
    schedule_seed = {args.seed + 1}  # not the fine-tuning seed: the from-scratch arm must not share its initialisation


class {SCRATCH_TRAINER}(HeatmapTrainer):
    schedule_num_epochs = {args.finetune_epochs}
    schedule_iterations_per_epoch = {args.iterations}
    schedule_val_iterations_per_epoch = {args.val_iterations}
    schedule_save_every = {args.finetune_epochs}
    schedule_seed = {args.seed}


class {PRETRAINED_TRAINER}({SCRATCH_TRAINER}):
    """The same schedule and seed; trained with -pretrained_weights (a separate name = a separate results folder)."""
'''
    (folder / "domain_shift_trainers.py").write_text(source)
    return folder


def train(dataset_id: int, trainer: str, environment: dict, device: str, log_folder: Path,
          pretrained: Path | None = None) -> float:
    """``nnUNetv2_train ID 2d_study 0 -tr trainer [-pretrained_weights ...]``; reused if already finished."""
    folder = model_folder(environment, dataset_id, trainer)
    timing = folder / "study_wall_time.json"
    if (folder / "checkpoint_final.pth").is_file() and timing.is_file():
        return float(json.loads(timing.read_text())["seconds"])
    command = [nnunet_command("nnUNetv2_train"), str(dataset_id), STUDY_CONFIGURATION, "0", "-tr", trainer, "-device", device]
    if pretrained is not None:
        command += ["-pretrained_weights", str(pretrained)]
    seconds = run_logged(command, training_environment(environment), log_folder / f"train_{dataset_id}_{trainer}.log")
    timing.write_text(json.dumps({"seconds": seconds, "device": device}))
    return seconds


def predict_and_score(dataset_id: int, trainer: str, images: Path, references: Path, dataset_json: dict,
                      output: Path, environment: dict, device: str, log_folder: Path) -> dict:
    """Landmarks of the test images with ``nnUNetv2_bab_predict``, scored against ``references``."""
    from nnunet_babloss.core.evaluation import evaluate_folders

    predictions = output / "predictions"
    if not any(predictions.glob("*.json")):
        run_logged([nnunet_command("nnUNetv2_bab_predict"), "-i", str(images), "-o", str(predictions), "-d",
                    str(dataset_id), "-c", STUDY_CONFIGURATION, "-f", "0", "-tr", trainer, "-device", device,
                    "-chk", "checkpoint_final.pth", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                   environment, log_folder / f"predict_{output.name}.log")
    cases = sorted(path.stem for path in references.glob("*.json"))
    evaluate_folders(predictions, dataset_json, reference_landmarks_folder=references,
                     output_folder=output / "evaluation", cases=cases)
    groups, missed = landmark_errors(output / "evaluation" / "landmarks_per_case.csv")
    every = [error for values in groups.values() for error in values]
    return {"all": error_summary(every), "missed": missed, "cases": len(cases),
            "groups": {group: error_summary(groups.get(group, [])) for group in GROUPS}}


# ---------------------------------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    """The Markdown table of a report."""
    settings = report["settings"]
    shift = report["shift"]
    lines = [
        f"# Boundary-aware pre-training under an intensity shift (JSRT{' — SMOKE RUN, not a result' if settings['smoke'] else ''})",
        "",
        f"`{report['command']}`",
        "",
        f"Pre-training: BoundaryPretrainer on the masks of {len(report['cases']['pretrain'])} `mask_only` cases, "
        f"{settings['pretrain_epochs']} epochs x {settings['iterations']} iterations. Fine-tuning: HeatmapTrainer on "
        f"the landmarks of {len(report['cases']['finetune'])} `landmark_only` cases, {settings['finetune_epochs']} "
        f"epochs x {settings['iterations']} iterations, from scratch or from the pre-trained checkpoint (same seed "
        f"{settings['seed']}; pre-training seed {settings['seed'] + 1}). Test: {len(report['cases']['test'])} `both` cases, `checkpoint_final.pth`. "
        f"{settings['spacing']} mm/px, patch {settings['patch']}, batch {settings['batch_size']}, device "
        f"{settings['device']}.",
        "",
        f"Shift: x = (I - min) / (max - min); y = x^{shift['gamma']:g}"
        f"{'; y = 1 - y' if shift['invert'] else ''}; y += N(0, {shift['noise_std']:g}^2) (seed {shift['seed']} + case "
        "index); clip to [0, 1]; back to [min, max].",
        "",
        "| pre-training | test images | MRE (mm) | SD | median | " + " | ".join(f"SDR@{t:g} mm" for t in SDR_THRESHOLDS_MM)
        + " | landmarks | missed |",
        "|---|---|---|---|---|" + "---|" * len(SDR_THRESHOLDS_MM) + "---|---|",
    ]
    for row in report["rows"]:
        summary = row["landmarks"]["all"]

        def number(value, digits=2, percent=False):
            if value is None:
                return "–"
            return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"

        lines.append(
            f"| {'yes' if row['pretrained'] else 'no'} | {row['test_images']} | {number(summary['mre'])} | "
            f"{number(summary['sd'])} | {number(summary['median'])} | "
            + " | ".join(number(summary[f'sdr_{t:g}'], percent=True) for t in SDR_THRESHOLDS_MM)
            + f" | {summary['n']} | {row['landmarks']['missed']} |"
        )
    lines += ["", "MRE per landmark group (mm):", "",
              "| pre-training | test images | " + " | ".join(GROUPS) + " |", "|---|---|" + "---|" * len(GROUPS)]
    for row in report["rows"]:
        groups = row["landmarks"]["groups"]
        lines.append(f"| {'yes' if row['pretrained'] else 'no'} | {row['test_images']} | "
                     + " | ".join("–" if groups[g]["mre"] is None else f"{groups[g]['mre']:.2f}" for g in GROUPS) + " |")
    times = report["wall_seconds"]
    lines += ["", "Wall time (s; trainings and preprocessing as recorded when they ran, predictions in this invocation): "
              + ", ".join(f"{key} {value:.0f}" for key, value in times.items()),
              f"Machine: {report['machine']}"]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of this script."""
    parser = argparse.ArgumentParser(
        prog="domain_shift.py", description=__doc__.split("Usage::", 1)[0],
        epilog="Usage::" + __doc__.split("Usage::", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for nnUNet_raw/preprocessed/results, logs and predictions; reused on a rerun "
                        "(default: a new temporary folder)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the shared data folder holding jsrt_512/ (default: $NNUNET_BABLOSS_DATA or "
                        "<repo>/../shared/data)")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="where domain_shift[_smoke].md/.json go (default: benchmarks/results)")
    parser.add_argument("--id-base", type=int, default=720,
                        help="dataset ids: id-base + 1 pre-training, + 2 fine-tuning, + 3 test (default: 720)")
    parser.add_argument("--spacing", type=float, default=1.4, help="pixel spacing of the study configuration, mm "
                        "(default: 1.4, i.e. 256 px for JSRT's 512 px at 0.7 mm)")
    parser.add_argument("--patch", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="training patch in pixels (default: 256 256, the whole image at 1.4 mm)")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch size (default: 4)")
    parser.add_argument("--pretrain-cases", type=int, default=None,
                        help="mask_only cases to pre-train on (default: all left after validation)")
    parser.add_argument("--finetune-cases", type=int, default=20,
                        help="landmark_only cases to fine-tune on (default: 20)")
    parser.add_argument("--val-cases", type=int, default=5,
                        help="cases of each training group held out as nnU-Net's validation fold (default: 5)")
    parser.add_argument("--num-test", type=int, default=None,
                        help="test cases from the `both` group (default: all 39)")
    parser.add_argument("--pretrain-epochs", type=int, default=50, help="pre-training epochs (default: 50)")
    parser.add_argument("--finetune-epochs", type=int, default=50, help="fine-tuning epochs, both arms (default: 50)")
    parser.add_argument("--iterations", type=int, default=50, help="training iterations per epoch (default: 50)")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch (default: 5)")
    parser.add_argument("--shift-gamma", type=float, default=0.6, help="gamma of the shift (default: 0.6)")
    parser.add_argument("--shift-invert", action=argparse.BooleanOptionalAction, default=True,
                        help="invert the contrast in the shift (default: on; --no-shift-invert turns it off)")
    parser.add_argument("--shift-noise-std", type=float, default=0.02,
                        help="Gaussian noise of the shift, as a fraction of the image's intensity range (default: 0.02)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the case selection, the fine-tunings (both arms) and the shift noise; the pre-training uses "
                        "seed + 1, so the from-scratch arm does not start from the pre-training's initialisation (default: 0)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training/inference device (default: cpu)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run to check the pipeline (a few minutes on a CPU): 6 pre-training, 4 fine-tuning, "
                        "2 validation and 3 test cases, patch 128, batch 2, 1 epoch x 2 iterations; numbers are "
                        "meaningless; writes domain_shift_smoke.*")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study (see the module docstring); returns 0 on success."""
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.pretrain_cases, args.finetune_cases, args.val_cases, args.num_test = 6, 4, 2, 3
        args.patch, args.batch_size = (128, 128), 2
        args.pretrain_epochs = args.finetune_epochs = 1
        args.iterations, args.val_iterations = 2, 1
    shift = IntensityShift(args.shift_gamma, args.shift_invert, args.shift_noise_std, args.seed)
    data = (args.data_root or default_data_root()) / "jsrt_512"
    if not (data / "splits.json").is_file():
        print(f"error: {data / 'splits.json'} not found (set --data-root or NNUNET_BABLOSS_DATA)", file=sys.stderr)
        return 2
    work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="bab_domain_shift_"))).resolve()
    logs = work_dir / "logs"
    trainer_folder = write_trainers(work_dir / "trainers", args)
    environment = study_environment(work_dir, trainer_folder, args.device)
    raw = Path(environment["nnUNet_raw"])
    started = time.perf_counter()
    wall: dict[str, float] = {}

    groups = json.loads((data / "splits.json").read_text())["partial_label_groups"]
    rng = random.Random(args.seed)
    test_cases, _ = choose_cases(groups, "both", args.num_test, 0, rng)
    pretrain, pretrain_val = choose_cases(groups, "mask_only", args.pretrain_cases, args.val_cases, rng)
    finetune, finetune_val = choose_cases(groups, "landmark_only", args.finetune_cases, args.val_cases, rng)
    print(f"[cases] pre-training {len(pretrain)} (+{len(pretrain_val)} val), fine-tuning {len(finetune)} "
          f"(+{len(finetune_val)} val), test {len(test_cases)}; work dir {work_dir}")

    # Datasets: fine-tuning first, since its landmark block goes into the pre-training dataset.json.
    pretrain_id, finetune_id, test_id = args.id_base + 1, args.id_base + 2, args.id_base + 3
    if not any(raw.glob(f"Dataset{test_id:03d}_*")):
        finetune_folder = convert(data, raw, finetune_id, "DomainShift_Finetune",
                                  {case: "landmark_only" for case in finetune + finetune_val}, (), True,
                                  "JSRT landmark_only cases for fine-tuning (domain-shift study)")
        block = json.loads((finetune_folder / "dataset.json").read_text())["landmarks"]
        pretrain_folder = convert(data, raw, pretrain_id, "DomainShift_Pretrain",
                                  {case: "mask_only" for case in pretrain + pretrain_val}, (), False,
                                  "JSRT mask_only cases for boundary-aware pre-training (domain-shift study)")
        dataset_json_path = pretrain_folder / "dataset.json"
        dataset_json = json.loads(dataset_json_path.read_text())
        dataset_json["landmarks"] = block
        dataset_json["landmarks_note"] = (f"landmark block copied from {finetune_folder.name} (heatmap channels and "
                                          "bridge for BoundaryPretrainer); this dataset has no landmark files")
        dataset_json_path.write_text(json.dumps(dataset_json, indent=2))
        test_folder = convert(data, raw, test_id, "DomainShift_Test", {}, test_cases, True,
                              "JSRT `both` cases held out for testing (domain-shift study)")
        write_shifted_copy(test_folder / "imagesTs", test_folder / "imagesTs_shifted", shift)
    test_folder = raw_folder(environment, test_id)

    step = time.perf_counter()
    timing = work_dir / "plan_and_preprocess_wall_time.json"
    if not timing.is_file():
        configuration = plan_and_preprocess(pretrain_id, environment, None, args.spacing, args.patch, args.batch_size, logs)
        plan_and_preprocess(finetune_id, environment, configuration, args.spacing, args.patch, args.batch_size, logs)
        write_single_split(environment, pretrain_id, pretrain, pretrain_val)
        write_single_split(environment, finetune_id, finetune, finetune_val)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - step}))
    wall["plan_and_preprocess"] = float(json.loads(timing.read_text())["seconds"])
    print(f"[preprocess] done ({wall['plan_and_preprocess']:.0f} s)")

    wall["pretrain"] = train(pretrain_id, PRETRAIN_TRAINER, environment, args.device, logs)
    print(f"[pretrain] done ({wall['pretrain']:.0f} s)")
    checkpoint = model_folder(environment, pretrain_id, PRETRAIN_TRAINER) / "checkpoint_final.pth"
    wall["finetune_scratch"] = train(finetune_id, SCRATCH_TRAINER, environment, args.device, logs)
    print(f"[fine-tune from scratch] done ({wall['finetune_scratch']:.0f} s)")
    wall["finetune_pretrained"] = train(finetune_id, PRETRAINED_TRAINER, environment, args.device, logs, checkpoint)
    print(f"[fine-tune from pre-training] done ({wall['finetune_pretrained']:.0f} s)")

    dataset_json = json.loads((raw_folder(environment, finetune_id) / "dataset.json").read_text())
    rows = []
    step = time.perf_counter()
    for pretrained, trainer in ((False, SCRATCH_TRAINER), (True, PRETRAINED_TRAINER)):
        for label, images in (("original", "imagesTs"), ("shifted", "imagesTs_shifted")):
            output = work_dir / "test" / f"{trainer}_{label}"
            result = predict_and_score(finetune_id, trainer, test_folder / images, test_folder / "landmarksTs",
                                       dataset_json, output, environment, args.device, logs)
            rows.append({"pretrained": pretrained, "test_images": label, "trainer": trainer, "landmarks": result})
            print(f"[test] pre-training {'yes' if pretrained else 'no '} {label:8s} MRE "
                  f"{result['all']['mre'] if result['all']['mre'] is None else round(result['all']['mre'], 2)} mm")
    wall["predict_and_score"] = time.perf_counter() - step
    wall["this_invocation"] = time.perf_counter() - started  # finished steps of an earlier run are reused, not redone

    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    report = {
        "command": "python benchmarks/domain_shift.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {key: (list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value)
                     for key, value in vars(args).items()},
        "shift": asdict(shift),
        "cases": {"pretrain": pretrain, "pretrain_val": pretrain_val, "finetune": finetune,
                  "finetune_val": finetune_val, "test": test_cases},
        "rows": rows,
        "wall_seconds": wall,
        "machine": machine_description(),
        "git_commit": commit,
        "work_dir": str(work_dir),
    }
    stem = args.results_dir / ("domain_shift_smoke" if args.smoke else "domain_shift")
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2))
    Path(f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
