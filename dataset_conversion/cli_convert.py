"""``nnUNetv2_bab_convert``: images + masks + landmark files -> an nnU-Net raw dataset with landmarks.

Examples::

    # JSRT chest X-rays (PNG, 0.7 mm/px), overlapping bit-flag masks as exclusive labels, SCR landmark groups
    nnUNetv2_bab_convert -i jsrt_512/images --pixel-spacing 0.7 \\
        --mask-bits jsrt_512/labels_bits --bits right_lung=1 left_lung=2 heart=4 right_clavicle=8 left_clavicle=16 \\
        --overlap priority --landmarks jsrt_512/landmarks --landmark-format jsrt \\
        --bridge 'RL_*=right_lung' 'LL_*=left_lung' 'H_*=heart' 'RCLA_*=right_clavicle' 'LCLA_*=left_clavicle' \\
        -d 501 -n JSRT

    # Hamedan cephalograms: landmark-only, spacing undocumented -> state a nominal one
    nnUNetv2_bab_convert -i hamedan_ceph/images --pixel-spacing 0.1 \\
        --spacing-note "nominal; not documented by the dataset" \\
        --hamedan hamedan_ceph/landmarks.json --annotator mean -d 505 -n Hamedan
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nnunet_babloss.core.provenance import read_json

if TYPE_CHECKING:
    from dataset_conversion.convert import ConversionInputs, ConversionSettings
    from dataset_conversion.landmark_sources import LandmarkSource
    from dataset_conversion.masks import MaskSource
    from dataset_conversion.validation import ValidationReport

__all__ = ["build_parser", "main", "parse_pairs", "print_warnings"]


def parse_pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``.

    Raises:
        ValueError: an item without ``=`` or with an empty side, or a key given twice (naming the option).
    """
    result: dict[str, str] = {}
    for item in values or ():
        key, separator, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not separator or not key or not value:
            raise ValueError(f"{option}: expected NAME=VALUE, got {item!r}")
        if key in result:
            raise ValueError(f"{option}: {key!r} is given twice")
        result[key] = value
    return result


def _int_pairs(values: Sequence[str] | None, option: str) -> dict[str, int]:
    result = {}
    for key, value in parse_pairs(values, option).items():
        try:
            result[key] = int(value)
        except ValueError:
            raise ValueError(f"{option}: the value of {key!r} must be an integer, got {value!r}") from None
    return result


def _labels_json(path: str) -> dict[str, int]:
    """``{name: value}`` or ``{"value": name}`` (also under a ``"labels"`` key), background/0 dropped."""
    content = read_json(path, "--labels-json")
    if isinstance(content, dict) and isinstance(content.get("labels"), dict):
        content = content["labels"]
    if not isinstance(content, dict):
        raise ValueError(f"{path}: --labels-json must hold an object {{name: value}} or {{value: name}}")
    result: dict[str, int] = {}
    for key, value in content.items():
        if isinstance(value, int) and not isinstance(value, bool):
            name, number = key, value
        elif isinstance(value, str) and key.strip().lstrip("-").isdigit():
            name, number = value, int(key)
        else:
            raise ValueError(f"{path}: entry {key!r}: {value!r} is neither name: value nor \"value\": name")
        if number != 0 and name not in ("background", "ignore"):
            result[name] = number
    return result


def _case_list(values: Sequence[str] | None, option: str) -> list[str]:
    """Case identifiers given directly or as ``@file`` (one per line, or a JSON list)."""
    cases: list[str] = []
    for value in values or ():
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise ValueError(f"{option}: file {path} not found")
            text = path.read_text(encoding="utf-8")
            try:
                content = json.loads(text)
            except json.JSONDecodeError:
                content = [line.strip() for line in text.splitlines() if line.strip()]
            if not isinstance(content, list) or not all(isinstance(item, str) for item in content):
                raise ValueError(f"{option}: {path} must list case identifiers (one per line or a JSON list)")
            cases.extend(content)
        else:
            cases.append(value)
    return cases


def _annotation_kinds(path: str) -> dict[str, str]:
    content = read_json(path, "--annotation-kinds")
    if isinstance(content, dict) and isinstance(content.get("partial_label_groups"), dict):
        content = content["partial_label_groups"]
    if isinstance(content, dict) and isinstance(content.get("annotations"), dict):
        content = content["annotations"]
    if not isinstance(content, dict) or not all(isinstance(value, str) for value in content.values()):
        raise ValueError(
            f"{path}: --annotation-kinds must map case -> kind (or hold 'partial_label_groups'/'annotations' doing so)"
        )
    return dict(content)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nnUNetv2_bab_convert``."""
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_convert",
        description=(
            "Convert images plus optional masks and landmark files into an nnU-Net raw dataset "
            "(imagesTr, labelsTr with the ignore label for mask-less cases, landmarksTr, dataset.json with a "
            "'landmarks' block, stratified splits_final.json, provenance.json). Every case is checked first; errors "
            "are listed together and nothing is written unless all cases are valid."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    output = parser.add_argument_group("output")
    output.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1..999)")
    output.add_argument("-n", "--dataset-name", required=True, help="dataset name (letters, digits, _ . -)")
    output.add_argument("--raw-folder", type=Path, default=None,
                        help="nnUNet_raw folder to write into (default: $nnUNet_raw)")
    output.add_argument("--file-ending", choices=(".nii.gz", ".mha"), default=".nii.gz",
                        help="image format written (default: .nii.gz)")
    output.add_argument("--description", default="", help="dataset.json description")
    output.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    output.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    output.add_argument("--num-folds", type=int, default=5, help="folds of splits_final.json (default: 5)")
    output.add_argument("--seed", type=int, default=12345, help="seed of the splits (default: 12345)")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")

    images = parser.add_argument_group("images")
    images.add_argument("-i", "--images", nargs="+", required=True, type=Path, metavar="FOLDER",
                        help="one folder per channel, files named <case>.<ext> (NIfTI, MHA/MHD, NRRD, PNG, JPEG, TIFF, "
                        "BMP) or <case>/ DICOM series folders")
    images.add_argument("--channel-names", nargs="+", default=None,
                        help="one name per channel (nnU-Net normalises 'CT' specially; default: image)")
    images.add_argument("--pixel-spacing", nargs="+", type=float, default=None, metavar="MM",
                        help="pixel spacing of PNG/JPEG/TIFF/BMP images: one value or one per axis (x y [z]); required "
                        "for them, refused for formats with their own geometry")
    images.add_argument("--spacing-note", default=None,
                        help="where the pixel spacing comes from (recorded in dataset.json and provenance.json)")
    images.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help="convert only these cases (or @file listing them)")
    images.add_argument("--test-cases", nargs="+", default=None, metavar="CASE",
                        help="cases for imagesTs/labelsTs/landmarksTs (or @file listing them)")

    masks = parser.add_argument_group("masks (at most one kind)")
    masks.add_argument("--masks", type=Path, default=None, metavar="FOLDER",
                       help="integer label maps <case>.<ext>; declare values with --labels or --labels-json")
    masks.add_argument("--labels", nargs="+", default=None, metavar="NAME=VALUE",
                       help="label values in the --masks files (label order = this order)")
    masks.add_argument("--labels-json", default=None, metavar="FILE",
                       help="label values as JSON {name: value} or {\"value\": name}")
    masks.add_argument("--unlisted-labels", choices=("error", "background"), default="error",
                       help="values of --masks files not declared: error (default) or make them background")
    masks.add_argument("--mask-bits", type=Path, default=None, metavar="FOLDER",
                       help="bit-flag maps <case>.<ext> of possibly overlapping structures; declare bits with --bits")
    masks.add_argument("--bits", nargs="+", default=None, metavar="NAME=BIT", help="structure bits (1, 2, 4, ...)")
    masks.add_argument("--binary-mask", nargs="+", default=None, metavar="NAME=FOLDER",
                       help="one folder of binary masks {0,1} or {0,255} per structure")
    masks.add_argument("--overlap", choices=("error", "priority", "regions"), default="error",
                       help="overlapping structures: error (default), priority (exclusive labels, later wins; see "
                       "--priority) or regions (nnU-Net region-based labels, nothing lost)")
    masks.add_argument("--priority", nargs="+", default=None, metavar="NAME",
                       help="painting order for --overlap priority, later wins (default: declaration order)")
    masks.add_argument("--declare-labels", nargs="+", default=None, metavar="NAME",
                       help="label names of a dataset without masks (label files are all 'ignore'), e.g. to bridge")
    masks.add_argument("--partial", action="store_true",
                       help="allow cases without a mask (they get the ignore label) or without landmarks")
    masks.add_argument("--annotation-kinds", default=None, metavar="FILE",
                       help="JSON case -> both/mask_only/landmark_only: withhold the other annotation (kept in "
                       "referenceTr/) to simulate partial labels; JSRT's splits.json works as is")

    landmarks = parser.add_argument_group("landmarks")
    landmarks.add_argument("--landmarks", type=Path, default=None, metavar="FOLDER",
                           help="one landmark file per case, <case>.<ext>")
    landmarks.add_argument("--landmark-format", default="auto",
                           choices=("auto", "json", "mrk.json", "fcsv", "csv", "labelme", "isbi", "jsrt"),
                           help="auto (by suffix; .json by content), json (ours, mm), mrk.json/fcsv (Slicer, mm, "
                           "LPS/RAS), csv (name,x,y[,z] mm), labelme / isbi (.txt 'x,y' lines) / jsrt (groups): "
                           "pixel coordinates x=column, y=row")
    landmarks.add_argument("--name-field", choices=("label", "description"), default="label",
                           help="Slicer files: take names from the label (default) or description (AFIDs) field")
    landmarks.add_argument("--duplicates", choices=("drop", "first", "error"), default="drop",
                           help="LabelMe label given twice: drop (warn, absent; default), first (warn), error")
    landmarks.add_argument("--isbi-names", nargs="+", default=None, metavar="NAME",
                           help="names of the lines of ISBI text files (default l1, l2, ...)")
    landmarks.add_argument("--hamedan", type=Path, default=None, metavar="FILE",
                           help="Hamedan landmarks.json (all cases in one file)")
    landmarks.add_argument("--annotator", default="mean", help="Hamedan annotator to use (default: mean)")
    landmarks.add_argument("--centroid-landmarks", nargs="+", default=None, metavar="NAME=VALUE",
                           help="landmarks at centroids of label VALUE of the --masks label maps (e.g. vertebrae)")
    landmarks.add_argument("--select", nargs="+", default=(), metavar="PATTERN",
                           help="keep only landmarks whose names in the files match (fnmatch, e.g. 'RL_*')")
    landmarks.add_argument("--rename", nargs="+", default=None, metavar="OLD=NEW", help="rename landmarks")
    landmarks.add_argument("--landmark-names", nargs="+", default=None, metavar="NAME",
                           help="landmark names in channel order (after renaming; default: as first seen)")
    landmarks.add_argument("--mirror-pair", nargs=2, action="append", default=[], metavar=("LEFT", "RIGHT"),
                           help="a left/right pair swapped by mirroring (repeat the option)")
    landmarks.add_argument("--label-mirror-pair", nargs=2, action="append", default=[], metavar=("LEFT", "RIGHT"),
                           help="a left/right pair of label names (e.g. right_lung left_lung) whose values swap with the "
                                "landmark pairs under mirroring (repeat the option); without it, sided labels switch "
                                "left-right flips off in training")
    landmarks.add_argument("--bridge", nargs="+", default=None, metavar="PATTERN=LABEL[,LABEL]",
                           help="landmarks (fnmatch pattern) lying on the boundary of these labels")
    landmarks.add_argument("--sigma-mm", type=float, default=2.0, help="heatmap sigma in mm (default: 2)")
    landmarks.add_argument("--boundary-range-mm", type=float, default=5.0,
                           help="BaBLoss boundary range in mm (default: 5)")
    landmarks.add_argument("--outside", choices=("error", "drop"), default="error",
                           help="a landmark outside its image: error (default) or drop (warn, absent)")
    return parser


def _build(args: argparse.Namespace) -> tuple[ConversionInputs, ConversionSettings]:
    """``(ConversionInputs, ConversionSettings)`` from the parsed arguments."""
    from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions
    from dataset_conversion.landmark_sources import NameMapping

    masks = _mask_source(args)
    landmarks = _landmark_source(args)
    bridge = {
        pattern: tuple(label.strip() for label in labels.split(",") if label.strip())
        for pattern, labels in parse_pairs(args.bridge, "--bridge").items()
    }
    kinds = _annotation_kinds(args.annotation_kinds) if args.annotation_kinds else None
    inputs = ConversionInputs(
        image_folders=tuple(args.images),
        masks=masks,
        landmarks=landmarks,
        name_mapping=NameMapping(select=tuple(args.select), rename=parse_pairs(args.rename, "--rename")),
        annotation_kinds=kinds,
        test_cases=frozenset(_case_list(args.test_cases, "--test-cases")),
        cases=tuple(_case_list(args.cases, "--cases")) if args.cases else None,
    )
    settings = ConversionSettings(
        dataset_id=args.dataset_id,
        dataset_name=args.dataset_name,
        raw_folder=args.raw_folder,
        channel_names=tuple(args.channel_names) if args.channel_names else None,
        description=args.description,
        file_ending=args.file_ending,
        pixel_spacing_mm=tuple(args.pixel_spacing) if args.pixel_spacing else None,
        pixel_spacing_note=args.spacing_note,
        overlap=args.overlap,
        priority=tuple(args.priority) if args.priority else None,
        declared_labels=tuple(args.declare_labels or ()),
        landmarks=LandmarkOptions(
            names=tuple(args.landmark_names) if args.landmark_names else None,
            mirror_pairs=tuple((left, right) for left, right in args.mirror_pair),
            label_mirror_pairs=tuple((left, right) for left, right in args.label_mirror_pair),
            bridge=bridge,
            sigma_mm=args.sigma_mm,
            boundary_range_mm=args.boundary_range_mm,
            outside=args.outside,
        ),
        partial=args.partial,
        num_folds=args.num_folds,
        seed=args.seed,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        progress=not args.no_progress,
    )
    return inputs, settings


def _mask_source(args: argparse.Namespace) -> MaskSource | None:
    """The masks of ``--masks``, ``--mask-bits`` or ``--binary-mask`` (at most one), or ``None``.

    Raises:
        ValueError: two kinds of masks, label values or bits missing, or label options without their mask folder.
    """
    from dataset_conversion.masks import BinaryMaskFolders, BitFlagMasks, LabelMapMasks

    _at_most_one((("--masks", args.masks), ("--mask-bits", args.mask_bits), ("--binary-mask", args.binary_mask)),
                 "give one kind of masks")
    masks = None
    if args.masks is not None:
        if (args.labels is None) == (args.labels_json is None):
            raise ValueError("--masks needs the label values: give --labels NAME=VALUE ... or --labels-json FILE")
        labels = _int_pairs(args.labels, "--labels") if args.labels else _labels_json(args.labels_json)
        masks = LabelMapMasks(args.masks, labels, unlisted=args.unlisted_labels)
    elif args.mask_bits is not None:
        if not args.bits:
            raise ValueError("--mask-bits needs --bits NAME=BIT ...")
        masks = BitFlagMasks(args.mask_bits, _int_pairs(args.bits, "--bits"))
    elif args.binary_mask:
        masks = BinaryMaskFolders({name: Path(folder) for name, folder in parse_pairs(args.binary_mask,
                                                                                     "--binary-mask").items()})
    for option, value, needs in (("--labels", args.labels, args.masks), ("--labels-json", args.labels_json, args.masks),
                                 ("--bits", args.bits, args.mask_bits)):
        if value and needs is None:
            raise ValueError(f"{option} is given without the mask folder it describes")
    return masks


def _at_most_one(options: Sequence[tuple[str, object]], problem: str) -> None:
    """Raise ``ValueError("<problem>, got [<options given>]")`` when more than one of ``(name, value)`` is given."""
    given = [name for name, value in options if value]
    if len(given) > 1:
        raise ValueError(f"{problem}, got {given}")


def _landmark_source(args: argparse.Namespace) -> LandmarkSource | None:
    """The landmarks of ``--landmarks``, ``--hamedan`` or ``--centroid-landmarks`` (at most one), or ``None``.

    Raises:
        ValueError: two landmark sources, or ``--centroid-landmarks`` without ``--masks``.
    """
    from dataset_conversion.landmark_sources import HamedanFile, LabelCentroids, LandmarkFolder

    _at_most_one((("--landmarks", args.landmarks), ("--hamedan", args.hamedan),
                  ("--centroid-landmarks", args.centroid_landmarks)), "give one landmark source")
    landmarks = None
    if args.landmarks is not None:
        landmarks = LandmarkFolder(
            args.landmarks, args.landmark_format, name_field=args.name_field, duplicates=args.duplicates,
            isbi_names=tuple(args.isbi_names) if args.isbi_names else None,
        )
    elif args.hamedan is not None:
        landmarks = HamedanFile(args.hamedan, annotator=args.annotator)
    elif args.centroid_landmarks:
        if args.masks is None:
            raise ValueError("--centroid-landmarks takes the centroids of labels of the --masks label maps")
        landmarks = LabelCentroids(args.masks, _int_pairs(args.centroid_landmarks, "--centroid-landmarks"))
    return landmarks


def print_warnings(report: ValidationReport, stream: TextIO | None = None) -> None:
    """Print the warnings of a report, one per line (errors are raised and printed by the caller)."""
    for issue in report.warnings:
        print(issue, file=stream or sys.stderr)


def run_and_report(
    args: argparse.Namespace, argv: Sequence[str] | None, action: Callable[[dict], Any], *, prog: str
) -> tuple[int, Any | None]:
    """Run ``action(arguments)`` with the parsed arguments recorded for provenance, as both CLIs do.

    Input errors are printed as one message (a validation report lists every problem with its file; see
    :func:`nnunet_babloss.command_line.run_reporting_errors`, which every tool shares) and give ``(1, None)``
    (``(128 + signal, None)`` when interrupted); on success the report's warnings are printed and ``(0, result)``
    is returned.
    """
    from nnunet_babloss.command_line import run_reporting_errors

    arguments = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    arguments["argv"] = list(argv) if argv is not None else sys.argv[1:]
    status, result = run_reporting_errors(prog, lambda: action(arguments))
    if status == 0:
        print_warnings(result.report)
    return status, result


def outcome(result: Any) -> tuple[str, dict[str, int]]:
    """What happened (written or dry run) and how many training cases of each annotation kind."""
    kinds_listed = list(result.annotations.values())
    kinds = {kind: kinds_listed.count(kind) for kind in sorted(set(kinds_listed))}
    verb = "checked (dry run, nothing written)" if not result.written else f"wrote {result.dataset_folder}"
    return verb, kinds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 invalid input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dataset_conversion.convert import convert_dataset

    try:
        inputs, settings = _build(args)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    status, result = run_and_report(
        args, argv, lambda arguments: convert_dataset(inputs, settings, arguments=arguments), prog=parser.prog
    )
    if result is None:
        return status
    verb, kinds = outcome(result)
    print(
        f"{verb}: {len(result.annotations)} training cases {kinds}, {len(result.test_cases)} test cases, "
        f"{result.report.summary()}, {result.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
