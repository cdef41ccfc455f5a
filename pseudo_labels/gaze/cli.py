"""``nnUNetv2_bab_gaze_pseudo_labels``: images + gaze CSV → nnU-Net raw dataset of nested gaze-level pseudo masks.

The library function is :func:`pseudo_labels.gaze.pipeline.generate_gaze_dataset`; this module only parses
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main", "parse_thresholds"]

_EPILOG = """\
The label map of a case holds the number of thresholds its refined gaze map exceeds (0..L); dataset.json declares
level k as the nnU-Net region of values k..L and carries a "gaze_levels" block. Train with
  nnUNetv2_train DATASET 2d FOLD -tr GazeSupTrainer   (export nnUNet_extTrainer=$(nnUNetv2_bab_trainer_dir))
Pixel lengths (--sigma, --crf-sxy) are given on a 768 px canvas, as in GazeSup, and scaled by max(H, W) / 768.
example:
  nnUNetv2_bab_gaze_pseudo_labels -i images/ --gaze gaze.csv -d 610 -n KvasirGaze --structure polyp \\
      --pixel-spacing 1 --thresholds 0.3 0.5
"""


def parse_thresholds(values: Sequence[str]) -> tuple[float, ...]:
    """Thresholds as floats, sorted ascending.

    Raises:
        ValueError: a value that is not a number.
    """
    try:
        return tuple(sorted(float(value) for value in values))
    except ValueError as error:
        raise ValueError(f"--thresholds must be numbers in [0, 1), got {list(values)}") from error


def build_parser() -> argparse.ArgumentParser:
    from pseudo_labels.gaze.heatmap import DEFAULT_SIGMA_AT_REFERENCE_PX
    from pseudo_labels.gaze.pipeline import DEFAULT_THRESHOLDS

    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_gaze_pseudo_labels",
        description=(
            "Turn eye-tracking fixations (GazeMedSeg CSV layout: IMAGE, CURRENT_FIX_INDEX, CURRENT_FIX_X/_Y "
            "normalised 0-1 from the top-left, CURRENT_FIX_DURATION ms, ...) into GazeSup pseudo masks: a "
            "duration-weighted Gaussian heatmap per image, refined by a dense CRF with the image, thresholded at "
            "several nested levels, written as a new nnU-Net raw dataset."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-i", "--images", required=True, type=Path, help="folder of 2D images (one file per case)")
    parser.add_argument("--gaze", required=True, type=Path, help="gaze CSV in the GazeMedSeg layout")
    parser.add_argument("-d", "--dataset-id", required=True, type=int, help="nnU-Net dataset id of the output (1-999)")
    parser.add_argument("-n", "--dataset-name", required=True, help="dataset name (Dataset<ID>_<name>)")
    parser.add_argument("--raw-folder", type=Path, default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    parser.add_argument("--structure", default="structure", help="name of the gazed-at structure (default: structure)")
    parser.add_argument(
        "--thresholds", nargs="+", default=[str(value) for value in DEFAULT_THRESHOLDS], metavar="T",
        help=f"level thresholds on the refined gaze map, in [0, 1) (default: {' '.join(map(str, DEFAULT_THRESHOLDS))})",
    )
    parser.add_argument(
        "--sigma", type=float, default=DEFAULT_SIGMA_AT_REFERENCE_PX,
        help=f"heatmap Gaussian sigma in px on a 768 px canvas (default: {DEFAULT_SIGMA_AT_REFERENCE_PX:g}; GazeSup "
        "used 50 for prostate MRI, 70 for Kvasir-SEG)",
    )
    parser.add_argument("--no-crf", action="store_true", help="threshold the heatmap itself (no dense CRF)")
    parser.add_argument("--crf-sxy", type=float, default=80.0, help="CRF bilateral sxy, px on a 768 px canvas (80)")
    parser.add_argument("--crf-srgb", type=float, default=13.0, help="CRF bilateral srgb, grey levels 0-255 (13)")
    parser.add_argument("--crf-compat", type=float, default=1.0, help="CRF bilateral compatibility (1)")
    parser.add_argument("--crf-iterations", type=int, default=10, help="CRF mean-field iterations (10)")
    parser.add_argument(
        "--pixel-spacing", type=float, nargs="+", default=None, metavar="MM",
        help="pixel spacing (mm) of PNG/JPEG/TIFF/BMP images: one value, or x y",
    )
    parser.add_argument("--channel-name", default="image", help="dataset.json channel name (default: image)")
    parser.add_argument("--skip-images-without-gaze", action="store_true", help="leave out images without fixations")
    parser.add_argument("--save-maps", action="store_true", help="also write heatmaps and CRF maps to gaze_maps/")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 bad input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from nnunet_babloss.command_line import run_reporting_errors
    from pseudo_labels.gaze.crf import CrfSettings
    from pseudo_labels.gaze.pipeline import GazeDatasetResult, GazePseudoLabelSettings, generate_gaze_dataset

    def run() -> GazeDatasetResult:
        settings = GazePseudoLabelSettings(
            thresholds=parse_thresholds(args.thresholds),
            sigma_at_reference_px=args.sigma,
            crf=None
            if args.no_crf
            else CrfSettings(args.crf_sxy, args.crf_srgb, args.crf_compat, args.crf_iterations),
        )
        spacing = None
        if args.pixel_spacing is not None:
            spacing = args.pixel_spacing[0] if len(args.pixel_spacing) == 1 else tuple(args.pixel_spacing)
        return generate_gaze_dataset(
            args.images,
            args.gaze,
            args.dataset_id,
            args.dataset_name,
            structure=args.structure,
            settings=settings,
            raw_folder=args.raw_folder,
            pixel_spacing_mm=spacing,
            channel_name=args.channel_name,
            skip_images_without_gaze=args.skip_images_without_gaze,
            save_maps=args.save_maps,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            arguments={"command_line": ["nnUNetv2_bab_gaze_pseudo_labels", *(sys.argv[1:] if argv is None else argv)]},
        )

    status, result = run_reporting_errors(parser.prog, run)
    if result is None:
        return status
    for warning in result.warnings:
        print(warning)
    origin = "SIMULATED gaze" if result.simulated else "gaze"
    print(f"{len(result.cases)} cases with {origin} written to {result.dataset_folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
