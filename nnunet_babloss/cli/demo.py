"""``nnUNetv2_bab_demo``: run the whole pipeline on a built-in synthetic heterogeneous dataset (CPU, minutes)."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_demo",
        description="Generate a small synthetic heterogeneous dataset (mask-only, landmark-only and fully labelled "
        "cases), then run nnUNetv2_plan_and_preprocess, nnUNetv2_train, nnUNetv2_predict and our evaluation on it. "
        "Everything is written to a work folder with its own nnUNet_raw/preprocessed/results; your nnU-Net folders "
        "are not touched.",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="folder for all outputs (default: a new temporary folder, printed at the end)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="training device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (default: 0)")
    parser.add_argument("--dataset-id", type=int, default=987, help="nnU-Net dataset id to use (default: 987)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nnunet_babloss.demo import DemoSettings, run_demo
    from nnunet_babloss.synthetic import SyntheticDatasetConfig

    work_dir = args.work_dir if args.work_dir is not None else Path(tempfile.mkdtemp(prefix="nnunet_babloss_demo_"))
    settings = DemoSettings(
        work_dir=work_dir, dataset_id=args.dataset_id, device=args.device, dataset=SyntheticDatasetConfig(seed=args.seed)
    )
    result = run_demo(settings)
    print("\nMean metrics on the held-out synthetic test cases:")
    print(json.dumps(result.summary.get("segmentation", {}).get("mean_per_label", {}), indent=2))
    print(f"\nraw dataset:    {result.dataset_folder}")
    print(f"trained model:  {result.results_folder}")
    print(f"predictions:    {result.prediction_folder}")
    print(f"metrics:        {result.summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
