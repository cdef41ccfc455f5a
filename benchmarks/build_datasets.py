"""Build the nnU-Net raw datasets the benchmarks use, from the real data in ``../shared/data``.

Recipes (default dataset ids; ``--id-base`` shifts them):

==================  ====  =========================================================================================
recipe              id    content
==================  ====  =========================================================================================
``jsrt-seg``        501   JSRT, masks only (no landmark block)
``jsrt-landmarks``  502   JSRT, landmarks only: label files are all "ignore"; the masks go to ``referenceTr/labels``
``jsrt-both``       503   JSRT, masks and landmarks for every case
``jsrt-hetero``     504   JSRT as in ``jsrt_512/splits.json``: 78 mask-only, 78 landmark-only, 39 both; the withheld
                          annotations go to ``referenceTr/`` (masks of landmark-only cases, landmarks of mask-only)
``hamedan``         505   Hamedan cephalograms, landmarks only, at a stated nominal pixel spacing
==================  ====  =========================================================================================

JSRT: 0.7 mm/px at 512 px (``--jsrt-folder jsrt_fixture_256``: the 8-case 1.4 mm/px fixture). The structures
overlap (clavicles over lungs): ``--overlap priority`` (default) paints right lung, left lung, heart, right clavicle,
left clavicle in that order, which reproduces the dataset's exclusive ``labels/`` maps exactly;
``--overlap regions`` keeps the overlap with nnU-Net's region-based labels. Landmarks are named ``<group>_<ii>``
(``RL_00 ... RL_43``, ``LL_00 ... LL_49``, ``H_00 ... H_25``, ``RCLA_00 ... RCLA_22``, ``LCLA_00 ... LCLA_22``) and
bridged to the structure they outline. No mirror pairs: the right and left lung contours have different numbers of
points (44 vs 50), so there is no 1:1 left/right pairing (a mirroring augmentation must then stay off, or predict
the two lungs' contours under the flipped names).

``--num-test N`` moves the same N JSRT cases (chosen with ``--test-seed`` from the sorted identifiers) into
``imagesTs``/``labelsTs``/``landmarksTs`` of every JSRT recipe, with both annotations.

Hamedan: its pixel spacing is not documented, so ``--hamedan-spacing MM`` must state a nominal one (e.g. 0.1 mm,
the spacing of the similar ISBI 2015 cephalograms); it is recorded as nominal in ``dataset.json`` and
``provenance.json``. Errors in mm are then mm *at that nominal spacing*. ``--hamedan-annotator`` picks ``mean``
(default), ``mollabashi`` or ``farhadifar``.

Usage::

    python benchmarks/build_datasets.py all --hamedan-spacing 0.1 --raw-folder $nnUNet_raw
    python benchmarks/build_datasets.py jsrt-hetero --num-test 40 --overlap regions --raw-folder /tmp/raw
    NNUNET_BABLOSS_DATA=/my/data python benchmarks/build_datasets.py hamedan --hamedan-spacing 0.1 --raw-folder /tmp/raw
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from dataset_conversion.convert import (  # noqa: E402
    ConversionInputs,
    ConversionResult,
    ConversionSettings,
    LandmarkOptions,
    convert_dataset,
)
from dataset_conversion.landmark_sources import HamedanFile, LandmarkFolder  # noqa: E402
from dataset_conversion.masks import BitFlagMasks, OverlapMode  # noqa: E402
from dataset_conversion.validation import DatasetValidationError  # noqa: E402
from dataset_conversion.writing import nnunet_raw_folder  # noqa: E402

DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"
RECIPES = ("jsrt-seg", "jsrt-landmarks", "jsrt-both", "jsrt-hetero", "hamedan")
DEFAULT_ID_BASE = 500
JSRT_BITS = {"right_lung": 1, "left_lung": 2, "heart": 4, "right_clavicle": 8, "left_clavicle": 16}
JSRT_BRIDGE = {
    "RL_*": ("right_lung",),
    "LL_*": ("left_lung",),
    "H_*": ("heart",),
    "RCLA_*": ("right_clavicle",),
    "LCLA_*": ("left_clavicle",),
}
JSRT_SPACING_NOTE = "documented by the dataset (jsrt dataset_info.json pixel_spacing_mm)"
HAMEDAN_SPACING_NOTE = (
    "nominal, stated by the user: the Hamedan dataset does not document its pixel spacing; errors in mm are mm at "
    "this nominal spacing"
)

__all__ = ["RECIPES", "RecipeOptions", "build_parser", "build_recipe", "main"]


@dataclass(frozen=True)
class RecipeOptions:
    """Options shared by the recipes (see the module docstring)."""

    data_root: Path
    raw_folder: Path
    id_base: int = DEFAULT_ID_BASE
    jsrt_folder: str = "jsrt_512"
    overlap: OverlapMode = "priority"
    num_test: int = 0
    test_seed: int = 0
    hamedan_spacing_mm: float | None = None
    hamedan_annotator: str = "mean"
    num_folds: int = 5
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True


def default_data_root() -> Path:
    """``$NNUNET_BABLOSS_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


def jsrt_test_cases(case_ids: Sequence[str], num_test: int, seed: int) -> list[str]:
    """``num_test`` cases drawn reproducibly from the sorted identifiers.

    Raises:
        ValueError: ``num_test`` is negative or not below the number of cases.
    """
    if not 0 <= num_test < len(case_ids):
        raise ValueError(f"--num-test must be in 0..{len(case_ids) - 1}, got {num_test}")
    return sorted(random.Random(seed).sample(sorted(case_ids), num_test))


def _dataset_name(recipe: str, options: RecipeOptions) -> str:
    names = {
        "jsrt-seg": "JSRT_SegOnly",
        "jsrt-landmarks": "JSRT_LandmarkOnly",
        "jsrt-both": "JSRT_Both",
        "jsrt-hetero": "JSRT_Heterogeneous",
        "hamedan": "Hamedan_LandmarkOnly",
    }
    name = names[recipe]
    if recipe.startswith("jsrt") and options.jsrt_folder != "jsrt_512":
        name += "_" + "".join(part.capitalize() for part in options.jsrt_folder.split("_"))
    return name


def build_recipe(recipe: str, options: RecipeOptions) -> ConversionResult:
    """Build one recipe's dataset; returns the :class:`~dataset_conversion.convert.ConversionResult`.

    Raises:
        ValueError: unknown recipe or invalid option.
        FileNotFoundError: the data is not where ``options.data_root`` says.
        DatasetValidationError: the data has errors (listed).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {list(RECIPES)}")
    dataset_id = options.id_base + 1 + RECIPES.index(recipe)
    common = {
        "dataset_id": dataset_id,
        "dataset_name": _dataset_name(recipe, options),
        "raw_folder": options.raw_folder,
        "num_folds": options.num_folds,
        "overwrite": options.overwrite,
        "dry_run": options.dry_run,
        "progress": options.progress,
        "tool": f"benchmarks/build_datasets.py {recipe}",
    }
    if recipe == "hamedan":
        if options.hamedan_spacing_mm is None:
            raise ValueError(
                "the Hamedan pixel spacing is not documented: state a nominal one, e.g. --hamedan-spacing 0.1 "
                "(recorded as nominal in dataset.json and provenance.json)"
            )
        folder = options.data_root / "hamedan_ceph"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: Hamedan data not found (set {DATA_ENV_VAR} or --data-root)")
        inputs = ConversionInputs(
            image_folders=(folder / "images",),
            landmarks=HamedanFile(folder / "landmarks.json", annotator=options.hamedan_annotator),
        )
        settings = ConversionSettings(
            **common,  # type: ignore[arg-type]
            description=f"Hamedan lateral cephalograms, landmark-only (annotator {options.hamedan_annotator})",
            pixel_spacing_mm=(options.hamedan_spacing_mm,),
            pixel_spacing_note=HAMEDAN_SPACING_NOTE,
            extra_dataset_json={"nominal_pixel_spacing_mm": options.hamedan_spacing_mm,
                                "annotator": options.hamedan_annotator},
        )
        return convert_dataset(inputs, settings, arguments=_arguments(recipe, options))

    folder = options.data_root / options.jsrt_folder
    info_path = folder / "dataset_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path}: JSRT data not found (set {DATA_ENV_VAR} or --data-root)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    spacing_mm = float(info["pixel_spacing_mm"])
    case_ids = sorted(path.stem for path in (folder / "images").glob("*.png"))
    test_cases = jsrt_test_cases(case_ids, options.num_test, options.test_seed)
    training = [case_id for case_id in case_ids if case_id not in set(test_cases)]
    if recipe == "jsrt-hetero":
        splits_path = folder / "splits.json"
        if not splits_path.is_file():
            splits_path = options.data_root / "jsrt_512" / "splits.json"
        groups = json.loads(splits_path.read_text(encoding="utf-8"))["partial_label_groups"]
        kinds = {case_id: groups[case_id] for case_id in training if case_id in groups}
        if len(kinds) != len(training):
            lacking = [case_id for case_id in training if case_id not in groups]
            raise ValueError(f"{splits_path}: no partial-label group for case(s) {lacking[:10]}")
    else:
        kind = {"jsrt-seg": "mask_only", "jsrt-landmarks": "landmark_only", "jsrt-both": "both"}[recipe]
        kinds = {case_id: kind for case_id in training}
    with_landmarks = recipe != "jsrt-seg"
    inputs = ConversionInputs(
        image_folders=(folder / "images",),
        masks=BitFlagMasks(folder / "labels_bits", JSRT_BITS),
        landmarks=LandmarkFolder(folder / "landmarks", "jsrt") if with_landmarks else None,
        annotation_kinds=kinds,
        test_cases=frozenset(test_cases),
    )
    settings = ConversionSettings(
        **common,  # type: ignore[arg-type]
        description=f"JSRT chest X-rays ({recipe}), SCR masks and landmarks, {spacing_mm} mm/px",
        pixel_spacing_mm=(spacing_mm,),
        pixel_spacing_note=JSRT_SPACING_NOTE,
        channel_names=("xray",),
        overlap=options.overlap,
        landmarks=LandmarkOptions(bridge=JSRT_BRIDGE) if with_landmarks else LandmarkOptions(),
        extra_dataset_json={"mirror_pairs_note": "none: right and left lung contours have 44 and 50 points, so "
                            "there is no 1:1 left/right pairing"} if with_landmarks else {},
    )
    return convert_dataset(inputs, settings, arguments=_arguments(recipe, options))


def _arguments(recipe: str, options: RecipeOptions) -> dict[str, object]:
    return {"recipe": recipe, **{key: str(value) if isinstance(value, Path) else value
                                 for key, value in vars(options).items()}, "argv": sys.argv[1:]}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of this script."""
    parser = argparse.ArgumentParser(
        prog="build_datasets.py",
        description=__doc__.split("Usage::", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Usage::" + __doc__.split("Usage::", 1)[1] if __doc__ else None,
    )
    parser.add_argument("recipes", nargs="+", choices=(*RECIPES, "all"), help="what to build ('all': every recipe)")
    parser.add_argument("--raw-folder", type=Path, default=None,
                        help="nnUNet_raw to write into (default: $nnUNet_raw)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help=f"the shared data folder (default: ${DATA_ENV_VAR} or <repo>/../shared/data)")
    parser.add_argument("--id-base", type=int, default=DEFAULT_ID_BASE,
                        help=f"dataset ids are id-base + 1..5 in recipe order (default: {DEFAULT_ID_BASE})")
    parser.add_argument("--jsrt-folder", default="jsrt_512", choices=("jsrt_512", "jsrt_fixture_256"),
                        help="JSRT variant (default: jsrt_512, 195 cases at 0.7 mm/px)")
    parser.add_argument("--overlap", choices=("priority", "regions"), default="priority",
                        help="JSRT overlapping structures: priority (exclusive, clavicles over lungs; default) or "
                        "regions (nnU-Net region-based labels)")
    parser.add_argument("--num-test", type=int, default=0, help="JSRT cases held out as a test folder (default: 0)")
    parser.add_argument("--test-seed", type=int, default=0, help="seed choosing the test cases (default: 0)")
    parser.add_argument("--hamedan-spacing", type=float, default=None, metavar="MM",
                        help="nominal Hamedan pixel spacing in mm, required for the hamedan recipe because the "
                        "dataset does not document it (e.g. 0.1, the spacing of the similar ISBI 2015 cephalograms)")
    parser.add_argument("--hamedan-annotator", default="mean", choices=("mean", "mollabashi", "farhadifar"),
                        help="Hamedan annotator (default: mean of both)")
    parser.add_argument("--num-folds", type=int, default=5, help="folds of splits_final.json (default: 5)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    parser.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Build the requested recipes; returns 0, or 1 if one failed."""
    args = build_parser().parse_args(argv)
    try:
        raw_folder = nnunet_raw_folder(args.raw_folder)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = RecipeOptions(
        data_root=args.data_root or default_data_root(),
        raw_folder=raw_folder,
        id_base=args.id_base,
        jsrt_folder=args.jsrt_folder,
        overlap=args.overlap,
        num_test=args.num_test,
        test_seed=args.test_seed,
        hamedan_spacing_mm=args.hamedan_spacing,
        hamedan_annotator=args.hamedan_annotator,
        num_folds=args.num_folds,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        progress=not args.no_progress,
    )
    recipes = RECIPES if "all" in args.recipes else tuple(dict.fromkeys(args.recipes))
    status = 0
    for recipe in recipes:
        try:
            result = build_recipe(recipe, options)
        except (DatasetValidationError, ValueError, FileNotFoundError, FileExistsError) as error:
            print(f"{recipe}: {error}", file=sys.stderr)
            status = 1
            continue
        for issue in result.report.warnings:
            print(f"{recipe}: {issue}", file=sys.stderr)
        kinds = sorted(set(result.annotations.values()))
        counts = {kind: list(result.annotations.values()).count(kind) for kind in kinds}
        verb = "checked" if options.dry_run else "wrote"
        print(f"{recipe}: {verb} {result.dataset_folder} ({counts}, {len(result.test_cases)} test cases, "
              f"{result.seconds:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
