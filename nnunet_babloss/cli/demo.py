"""``nnUNetv2_bab_demo``: run the whole pipeline on a built-in synthetic heterogeneous dataset (CPU, ~2 minutes)."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

DEFAULT_LANDMARK_THRESHOLD = 0.3  # DemoSettings' default (kept here so --help needs no heavy import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_demo",
        description="Generate a small synthetic heterogeneous dataset (mask-only, landmark-only and fully labelled "
        "cases), then run nnUNetv2_plan_and_preprocess, nnUNetv2_train -tr BaBLossTrainer_BabDemo, "
        "nnUNetv2_bab_predict (segmentations and landmarks) and our evaluation on it: segmentation metrics, landmark "
        "metrics next to the mean-training-shape baselines, and overlay PNGs of the predicted landmarks. Everything "
        "is written to a work folder with its own nnUNet_raw/preprocessed/results; your nnU-Net folders are not "
        "touched.",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="folder for all outputs (default: a new temporary folder, printed at the end)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="training device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (default: 0)")
    parser.add_argument("--dataset-id", type=int, default=987, help="nnU-Net dataset id to use (default: 987)")
    parser.add_argument(
        "--landmark-threshold", type=float, default=DEFAULT_LANDMARK_THRESHOLD,
        help="heatmap peak (0-1) below which a predicted landmark is reported missing (nnUNetv2_bab_predict's "
        f"--landmark-threshold; default: {DEFAULT_LANDMARK_THRESHOLD}, the predictor's default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 ok, 1 failed, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from nnunet_babloss.core.atomic_output import make_unique_folder
    from nnunet_babloss.command_line import run_reporting_errors
    from nnunet_babloss.apps.demo import DemoSettings, format_report, run_demo
    from nnunet_babloss.apps.synthetic import SyntheticDatasetConfig

    try:  # settings are checked before any folder is made
        settings = DemoSettings(
            work_dir=args.work_dir or Path(tempfile.gettempdir()), dataset_id=args.dataset_id, device=args.device,
            dataset=SyntheticDatasetConfig(seed=args.seed), landmark_threshold=args.landmark_threshold,
        )
    except ValueError as error:
        parser.error(f"--landmark-threshold: {error}")
    if args.work_dir is None:
        # Not mkdtemp: its 0700 would hide the demo's datasets and results from the user's group, unlike nnU-Net's.
        settings = dataclasses.replace(
            settings, work_dir=make_unique_folder(Path(tempfile.gettempdir()), "nnunet_babloss_demo_")
        )
    status, result = run_reporting_errors(parser.prog, lambda: run_demo(settings))
    if result is None:
        return status
    print("\n" + format_report(result))
    print(f"\nraw dataset:    {result.dataset_folder}")
    print(f"trained model:  {result.results_folder}")
    print(f"predictions:    {result.prediction_folder}  (<case>.nii.gz segmentations, <case>.json landmarks in LPS mm)")
    for name, folder in result.baseline_folders.items():
        print(f"baseline:       {folder}  ({name})")
    print(f"metrics:        {result.summary_path}")
    print(f"overlays:       {result.overlay_folder}")
    print(f"demo finished in {result.total_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
