"""``nnUNetv2_bab_evaluate``: Dice/HD95/NSD and landmark MRE/SDR of a prediction folder."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_babloss.command_line import ArgumentParser, run_reporting_errors
from nnunet_babloss.core.provenance import read_json_object

if TYPE_CHECKING:
    from nnunet_babloss.core.evaluation import EvaluationResult

__all__ = ["RENAMED_OPTIONS", "build_parser", "main", "read_dataset_json"]


#: Spellings before the one CLI style (nnU-Net's -djfile and -o stay; our own options are kebab-case), accepted
#: with a warning for one release.
RENAMED_OPTIONS = {
    "-pred": "--pred",
    "-ref_labels": "--ref-labels",
    "-ref_landmarks": "--ref-landmarks",
    "-images": "--images",
    "--nsd_tolerance_mm": "--nsd-tolerance-mm",
    "--surface_metric": "--surface-metric",
    "--sdr_missed": "--sdr-missed",
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nnUNetv2_bab_evaluate",
        renamed_options=RENAMED_OPTIONS,
        description="Score predicted segmentations and landmarks against references. Writes summary.json, "
        "segmentation_per_case.csv, landmarks_per_case.csv and landmarks_per_landmark.csv (and overlays/ with "
        "--overlays). A metric is reported only where its reference exists; reference cases without a prediction, "
        "label values outside dataset.json's labels and geometry mismatches are errors.",
    )
    parser.add_argument("--pred", required=True, type=Path, help="prediction folder (<case><ending> and <case>.json)")
    parser.add_argument("-djfile", required=True, type=Path, help="the dataset's dataset.json")
    parser.add_argument("--ref-labels", type=Path, default=None, help="folder of reference label maps")
    parser.add_argument("--ref-landmarks", type=Path, default=None, help="folder of reference landmark files")
    parser.add_argument("-o", type=Path, default=None, help="output folder (default: the prediction folder)")
    parser.add_argument("--nsd-tolerance-mm", type=float, default=1.0, help="NSD tolerance in mm (default: 1.0)")
    parser.add_argument("--surface-metric", choices=("voxel", "surface"), default="voxel",
                        help="definition of HD95 and NSD. 'voxel' (default, as MONAI): boundary voxels, each weighing "
                        "1, HD95 with linear interpolation. 'surface' (as DeepMind's surface-distance and the "
                        "challenge toolkits): surface elements on the voxel-corner grid weighted by their length (2D) "
                        "or area (3D); 2D/3D only. summary.json records which one was used")
    parser.add_argument("--sdr-missed", choices=("exclude", "fail"), default="exclude",
                        help="how a missed landmark (reference present, prediction absent) enters the SDR: 'exclude' "
                        "(default) leaves it out of the denominator, 'fail' counts it as a failure at every "
                        "threshold. MRE is over the evaluated landmarks either way; summary.json records the rule")
    parser.add_argument("--cases", nargs="+", default=None,
                        help="evaluate only these cases (default: every case with a reference)")
    parser.add_argument("--overlays", action="store_true",
                        help="write overlays/<case>.png: image, predicted contours, predicted (red +) and reference "
                        "(green o) landmarks; 3D images: the middle slice and every slice holding a landmark")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of the images <case>_0000<file_ending> (required with --overlays)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the traceback of an error (also with NNUNET_BABLOSS_TRACEBACK=1)")
    return parser


def read_dataset_json(path: Path) -> dict:
    """The dataset's ``dataset.json``, checked for what evaluation reads (``labels``, ``file_ending``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not JSON, not an object, or ``labels``/``file_ending`` missing or of the wrong type.
    """
    content = read_json_object(path, "-djfile")
    if not isinstance(content.get("labels"), dict) or not content["labels"]:
        raise ValueError(f'-djfile {path}: "labels" must be an object {{name: value}}, got {content.get("labels")!r}')
    for name, value in content["labels"].items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(item, int) and not isinstance(item, bool) for item in values):
            raise ValueError(
                f'-djfile {path}: "labels" entry {name!r} must be an integer or a list of integers (a region), '
                f"got {value!r}"
            )
    if not isinstance(content.get("file_ending"), str) or not content["file_ending"]:
        raise ValueError(
            f'-djfile {path}: "file_ending" must be a non-empty string, got {content.get("file_ending")!r}'
        )
    return content


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 bad input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.nsd_tolerance_mm <= 0 or not math.isfinite(args.nsd_tolerance_mm):
        parser.error(f"--nsd-tolerance-mm must be a positive number of mm, got {args.nsd_tolerance_mm}")

    def evaluate() -> EvaluationResult:
        from nnunet_babloss.core.evaluation import evaluate_folders

        return evaluate_folders(
            args.pred, read_dataset_json(args.djfile), args.ref_labels, args.ref_landmarks, args.o,
            nsd_tolerance_mm=args.nsd_tolerance_mm, cases=args.cases, images_folder=args.images,
            write_overlays=args.overlays, surface_metric=args.surface_metric, sdr_missed=args.sdr_missed,
        )

    status, result = run_reporting_errors(parser.prog, evaluate, verbose=args.verbose)
    if result is not None:
        print(json.dumps(result.summary, indent=2))
        print(f"summary written to {result.summary_path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
