"""``nnUNetv2_bab_merge``: merge partially labelled nnU-Net raw datasets into one.

Example::

    # a mask-only and a landmark-only JSRT dataset -> one heterogeneous dataset
    nnUNetv2_bab_merge -i 501 502 -d 510 -n JSRTMerged --prefix-case-ids
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dataset_conversion.cli_convert import outcome, parse_pairs, run_and_report

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nnUNetv2_bab_merge``."""
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_bab_merge",
        description=(
            "Merge nnU-Net raw datasets (e.g. one with masks and one with landmarks) into one: labels are matched by "
            "name and renumbered, landmark blocks are united, channels must agree, and every case's source and "
            "annotation kind are recorded in dataset.json. Nothing is written unless every case is valid."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Example::", 1)[1] if __doc__ else None,
    )
    parser.add_argument("-i", "--inputs", nargs="+", required=True, metavar="DATASET",
                        help="two or more datasets: folders, ids or Dataset<ID>_<name> (looked up in --raw-folder)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="output dataset id (1..999)")
    parser.add_argument("-n", "--dataset-name", required=True, help="output dataset name")
    parser.add_argument("--raw-folder", type=Path, default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    parser.add_argument("--label-alias", nargs="+", default=None, metavar="OLD=NEW",
                        help="rename labels of the inputs before matching them by name")
    parser.add_argument("--missing-labels", choices=("error", "background", "ignore"), default="error",
                        help="a dataset whose masks lack labels others have: error (default), background (its "
                        "background is true background) or ignore (its background becomes the ignore label)")
    parser.add_argument("--prefix-case-ids", action="store_true",
                        help="prefix case ids with the source dataset name (needed if they collide)")
    parser.add_argument("--ignore-channel-names", action="store_true",
                        help="allow different channel names (the number of channels must still agree)")
    parser.add_argument("--file-ending", choices=(".nii.gz", ".mha"), default=None,
                        help="output format (default: the first input's)")
    parser.add_argument("--description", default="", help="dataset.json description")
    parser.add_argument("--num-folds", type=int, default=5, help="folds of splits_final.json (default: 5)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the splits (default: 12345)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    parser.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 invalid input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dataset_conversion.merge import MergeSettings, merge_datasets

    try:
        settings = MergeSettings(
            dataset_id=args.dataset_id,
            dataset_name=args.dataset_name,
            raw_folder=args.raw_folder,
            label_aliases=parse_pairs(args.label_alias, "--label-alias"),
            missing_labels=args.missing_labels,
            prefix_case_ids=args.prefix_case_ids,
            ignore_channel_names=args.ignore_channel_names,
            file_ending=args.file_ending,
            description=args.description,
            num_folds=args.num_folds,
            seed=args.seed,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
            progress=not args.no_progress,
        )
    except ValueError as error:
        parser.error(str(error))
    status, result = run_and_report(
        args, argv, lambda arguments: merge_datasets(args.inputs, settings, arguments=arguments), prog=parser.prog
    )
    if result is None:
        return status
    verb, kinds = outcome(result)
    print(f"{verb}: {len(result.annotations)} training cases {kinds}, {result.report.summary()}, "
          f"{result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
