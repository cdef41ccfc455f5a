"""``nnUNetv2_bab_predict``: ``nnUNetv2_predict`` plus landmarks (world LPS mm, with confidence) for every case.

Takes exactly ``nnUNetv2_predict``'s arguments (nnU-Net builds its parser inside its entry point, so the arguments
are mirrored here) plus ``--landmark-threshold``, ``--save-slicer`` and (DenseSeg models) ``--query-uv``. Segmentations are bit-identical to
``nnUNetv2_predict``'s; next to each ``<case><file_ending>`` it writes ``<case>.json`` (landmarks, ``null`` where
absent, per-landmark confidence) and, with ``--save-slicer``, ``<case>.mrk.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_babloss.command_line import ArgumentParser, run_reporting_errors
from nnunet_babloss.ext_trainers_path import with_ext_trainer_dir
from nnunet_babloss.nnunet.checkpoint_loading import UNSAFE_LOAD_ENV_VAR, require_checkpoint_file_name
from nnunet_babloss.core.provenance import file_sha256, provenance_record, read_json_object, write_json

__all__ = ["RENAMED_OPTIONS", "PredictionSettings", "build_parser", "check_input_images", "main", "predict_with_landmarks"]

DEFAULT_LANDMARK_THRESHOLD = 0.3  # the predictor's default (kept here so --help needs no heavy import)
_DEVICES = ("cuda", "cpu", "mps")
# File endings whose headers SimpleITK reads (nnU-Net's readers for them are SimpleITK or read the same files).
_HEADER_CHECKED_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".bmp", ".tif", ".tiff")


def _environment_int(name: str, default: int) -> int:
    """An integer default that an environment variable may override (as nnU-Net does for -npp/-nps)."""
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class PredictionSettings:
    """Everything :func:`predict_with_landmarks` needs (the command line's arguments, typed)."""

    input_folder: Path
    output_folder: Path
    dataset: str
    configuration: str
    trainer: str = "BaBLossTrainer"
    plans: str = "nnUNetPlans"
    folds: tuple[int | str, ...] = (0, 1, 2, 3, 4)
    step_size: float = 0.5
    use_mirroring: bool = True
    verbose: bool = False
    save_probabilities: bool = False
    continue_prediction: bool = False
    checkpoint: str = "checkpoint_final.pth"
    num_processes_preprocessing: int = 3
    num_processes_export: int = 3
    previous_stage_predictions: Path | None = None
    num_parts: int = 1
    part_id: int = 0
    device: str = "cuda"
    progress_bar: bool = True
    perform_everything_on_device: bool = True
    landmark_threshold: float = DEFAULT_LANDMARK_THRESHOLD
    save_slicer: bool = False
    query_uv: Path | None = None

    def __post_init__(self) -> None:
        if self.device not in _DEVICES:
            raise ValueError(f"-device must be one of {list(_DEVICES)}, got {self.device!r}")
        if not 0 <= self.part_id < self.num_parts:
            raise ValueError(f"-part_id must be in [0, num_parts - 1] = [0, {self.num_parts - 1}], got {self.part_id}")
        if not 0.0 < self.step_size <= 1.0:
            raise ValueError(f"-step_size must be in (0, 1], got {self.step_size}")
        if not 0.0 <= self.landmark_threshold <= 1.0:
            raise ValueError(f"--landmark-threshold must be in [0, 1], got {self.landmark_threshold}")
        require_checkpoint_file_name(self.checkpoint, "-chk")
        if self.num_processes_preprocessing < 0 or self.num_processes_export < 0:
            raise ValueError(
                f"-npp and -nps must be >= 0, got {self.num_processes_preprocessing} and {self.num_processes_export}"
            )


def predict_with_landmarks(settings: PredictionSettings) -> Path:
    """Predict segmentations and landmarks for every case of ``settings.input_folder``.

    Returns:
        The output folder (segmentations, ``<case>.json`` landmark files, nnU-Net's argument/plans copies and a
        ``provenance.json`` with arguments, versions, checkpoint hashes and ``"complete": true`` once every case is
        written).

    Raises:
        FileNotFoundError: the input folder, the trained model or a fold's checkpoint does not exist.
        ValueError: no input image has the model's file ending, an image lacks a channel, the model has no
            landmark heatmap head, or a setting is invalid.
        UnsafeCheckpointError: a checkpoint holds more than nnU-Net's weights and numbers (refused, not executed).
    """
    import torch
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_babloss.nnunet.predictor import nnUNetLandmarkPredictor

    if not settings.input_folder.is_dir():
        raise FileNotFoundError(f"-i: input folder not found: {settings.input_folder}")
    if settings.output_folder.exists() and not settings.output_folder.is_dir():
        raise NotADirectoryError(f"-o: {settings.output_folder} exists and is not a folder")
    previous_stage = settings.previous_stage_predictions
    if previous_stage is not None and not previous_stage.is_dir():
        raise FileNotFoundError(f"-prev_stage_predictions: folder not found: {previous_stage}")
    uv_queries = _read_uv_queries(settings.query_uv) if settings.query_uv is not None else None
    if not os.environ.get("nnUNet_results"):
        raise ValueError("the environment variable nnUNet_results is not set; it must name the trained models' folder")
    # Our trainer classes must be found by nnU-Net's trainer lookup (it reads the variable when called).
    os.environ.update(with_ext_trainer_dir(os.environ))
    try:
        model_folder = Path(
            get_output_folder(settings.dataset, settings.trainer, settings.plans, settings.configuration)
        )
    except RuntimeError:  # nnU-Net's lookup of the dataset id; its message is a page long
        raise ValueError(
            f"-d {settings.dataset}: no such dataset in nnUNet_raw, nnUNet_preprocessed or nnUNet_results "
            f"({os.environ.get('nnUNet_results')})"
        ) from None
    if not model_folder.is_dir():
        raise FileNotFoundError(
            f"trained model not found: {model_folder} (dataset {settings.dataset!r}, trainer {settings.trainer!r}, "
            f"plans {settings.plans!r}, configuration {settings.configuration!r}; is nnUNet_results set?)"
        )
    check_input_images(settings.input_folder, model_folder / "dataset.json")
    for fold in settings.folds:
        checkpoint = model_folder / f"fold_{fold}" / settings.checkpoint
        if not checkpoint.is_file():
            raise FileNotFoundError(f"-f {fold} -chk {settings.checkpoint}: checkpoint not found: {checkpoint}")
    if settings.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    elif settings.device == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    predictor = nnUNetLandmarkPredictor(
        tile_step_size=settings.step_size,
        use_gaussian=True,
        use_mirroring=settings.use_mirroring,
        perform_everything_on_device=settings.perform_everything_on_device,
        device=torch.device(settings.device),
        verbose=settings.verbose,
        verbose_preprocessing=settings.verbose,
        allow_tqdm=settings.progress_bar,
        landmark_threshold=settings.landmark_threshold,
        save_slicer=settings.save_slicer,
        uv_queries=uv_queries,
    )
    predictor.initialize_from_trained_model_folder(str(model_folder), settings.folds, settings.checkpoint)
    settings.output_folder.mkdir(parents=True, exist_ok=True)
    if predictor.denseseg_template is not None:
        # The canonical frame of each structure, so that users can define new landmarks as uv coordinates.
        template_path = settings.output_folder / "denseseg_template.json"
        template_path.write_text(json.dumps(predictor.denseseg_template.to_json(), indent=2) + "\n")
    provenance = _provenance(settings, model_folder)
    _write_provenance(settings.output_folder, provenance, complete=False)
    previous = None if settings.previous_stage_predictions is None else str(settings.previous_stage_predictions)
    if settings.num_processes_preprocessing == 0 and settings.num_processes_export == 0:
        predictor.predict_from_files_sequential(
            str(settings.input_folder), str(settings.output_folder), save_probabilities=settings.save_probabilities,
            overwrite=not settings.continue_prediction, folder_with_segs_from_prev_stage=previous,
        )
    else:
        predictor.predict_from_files(
            str(settings.input_folder), str(settings.output_folder), save_probabilities=settings.save_probabilities,
            overwrite=not settings.continue_prediction,
            num_processes_preprocessing=max(1, settings.num_processes_preprocessing),
            num_processes_segmentation_export=max(1, settings.num_processes_export),
            folder_with_segs_from_prev_stage=previous, num_parts=settings.num_parts, part_id=settings.part_id,
        )
    _write_provenance(settings.output_folder, provenance, complete=True)
    return settings.output_folder


def check_input_images(input_folder: Path, dataset_json_path: Path) -> list[str]:
    """The cases of ``input_folder`` (``<case>_XXXX<file_ending>``, one file per channel of the training dataset).

    Raises:
        FileNotFoundError: the model's ``dataset.json`` is missing.
        ValueError: ``dataset.json`` lacks ``file_ending``/``channel_names``; the input folder holds no file with the
            file ending; a file name lacks the ``_XXXX`` channel suffix; a case lacks a channel or has an extra one;
            an image header cannot be read.
    """
    dataset_json = read_json_object(dataset_json_path, "the trained model's dataset.json")
    file_ending = dataset_json.get("file_ending")
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(file_ending, str) or not file_ending or not isinstance(channels, dict) or not channels:
        raise ValueError(f'{dataset_json_path}: needs "file_ending" and "channel_names"')
    files = sorted(path.name for path in input_folder.iterdir() if path.is_file() and path.name.endswith(file_ending))
    if not files:
        others = sorted(path.name for path in input_folder.iterdir() if not path.name.startswith("."))
        found = f"it holds {len(others)} other entries, e.g. {others[:3]}" if others else "it is empty"
        raise ValueError(
            f"-i {input_folder}: no image ends in the model's file ending {file_ending!r} (from {dataset_json_path}); "
            f"{found}"
        )
    expected = {f"{int(channel):04d}" for channel in channels}
    cases: dict[str, set[str]] = {}
    for name in files:
        stem = name[: -len(file_ending)]
        case, separator, channel = stem.rpartition("_")
        if not separator or not case or len(channel) != 4 or not channel.isdigit():
            raise ValueError(
                f"{input_folder / name}: image names must be <case>_XXXX{file_ending} with a 4-digit channel number "
                f"(channels {sorted(expected)} from {dataset_json_path})"
            )
        cases.setdefault(case, set()).add(channel)
    for case, found_channels in sorted(cases.items()):
        if found_channels != expected:
            raise ValueError(
                f"-i {input_folder}: case {case!r} has channels {sorted(found_channels)}, the model needs "
                f"{sorted(expected)} (channel_names of {dataset_json_path})"
            )
    if file_ending.lower() in _HEADER_CHECKED_ENDINGS:
        # nnU-Net reads images in worker processes, where a corrupt file ends in a worker's traceback and a hang or
        # a "background worker died"; reading every header here (milliseconds each) names the file instead.
        import SimpleITK as sitk

        for name in files:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(input_folder / name))
            try:
                reader.ReadImageInformation()
            except RuntimeError as error:
                reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
                raise ValueError(f"{input_folder / name}: cannot read the image header ({reason})") from None
    return sorted(cases)


def _read_uv_queries(path: Path) -> dict:
    """The ``--query-uv`` file: ``{label name: {landmark name: [u, v] or trained landmark name}}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not JSON or not an object (the entries are checked against the model's template later).
    """
    return read_json_object(path, "--query-uv")


def _provenance(settings: PredictionSettings, model_folder: Path) -> dict:
    """Arguments, model folder, checkpoint hashes and versions (hashed once: checkpoints can be large)."""
    checkpoints = {}
    for fold in settings.folds:
        path = model_folder / f"fold_{fold}" / settings.checkpoint
        if path.is_file():
            checkpoints[str(path)] = file_sha256(path)
    return provenance_record(
        "nnUNetv2_bab_predict", arguments=vars(settings), model_folder=model_folder, checkpoint_sha256=checkpoints
    )


def _write_provenance(output_folder: Path, provenance: dict, *, complete: bool) -> None:
    """``provenance.json``, written before predicting with ``"complete": false`` and rewritten at the end.

    Predictions are written case by case (as nnU-Net does, so that ``--continue_prediction`` can resume), so the
    folder of a killed run holds some cases: ``"complete"`` is the marker that tells a reader whether it is whole.
    """
    write_json(output_folder / "provenance.json", {"complete": complete, **provenance}, atomic=True)


#: Our own options in nnU-Net's snake_case before the one CLI style; accepted with a warning for one release.
RENAMED_OPTIONS = {
    "--landmark_threshold": "--landmark-threshold",
    "--save_slicer": "--save-slicer",
    "--query_uv": "--query-uv",
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nnUNetv2_bab_predict",
        renamed_options=RENAMED_OPTIONS,
        description="nnUNetv2_predict for models trained with an nnunet-babloss trainer: writes the same "
        "segmentations (bit-identical) plus <case>.json landmark files (world LPS mm, per-landmark confidence, null "
        "for landmarks whose heatmap peak is below --landmark-threshold). Arguments are nnUNetv2_predict's, spelled as there; our own are kebab-case.",
    )
    parser.add_argument("-i", required=True, type=Path,
                        help="input folder (<case>_XXXX<file_ending> images, file ending of the training dataset)")
    parser.add_argument("-o", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("-d", required=True, help="dataset name or id")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    parser.add_argument("-tr", default="BaBLossTrainer",
                        help="trainer class used for training (default: BaBLossTrainer; nnUNetv2_predict's default, "
                        "nnUNetTrainer, has no landmark head)")
    parser.add_argument("-c", required=True, help="configuration (e.g. 2d, 3d_fullres)")
    parser.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"],
                        help="folds to ensemble, or 'all' (default: 0 1 2 3 4)")
    parser.add_argument("-step_size", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch size (default: 0.5)")
    parser.add_argument("--disable_tta", action="store_true",
                        help="disable mirroring test-time augmentation (faster, less accurate)")
    parser.add_argument("--verbose", action="store_true", help="talk a lot")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also export class probabilities (.npz/.pkl), as nnUNetv2_predict does")
    parser.add_argument("--continue_prediction", action="store_true",
                        help="skip cases whose outputs exist (a landmark file is always written before its "
                        "segmentation)")
    parser.add_argument("-chk", default="checkpoint_final.pth", type=_checkpoint_name,
                        help="checkpoint file name inside each fold_X folder of the model, not a path (default: "
                        "checkpoint_final.pth). Checkpoints are loaded weights-only: a file holding anything but "
                        f"nnU-Net's weights and numbers is refused unless {UNSAFE_LOAD_ENV_VAR}=1 is set (trusted "
                        "files only: it runs code stored in the file)")
    parser.add_argument("-npp", type=int, default=_environment_int("nnUNet_npp", 3),
                        help="preprocessing processes (default: 3 or $nnUNet_npp; -npp 0 -nps 0 runs sequentially)")
    parser.add_argument("-nps", type=int, default=_environment_int("nnUNet_nps", 3),
                        help="segmentation export processes (default: 3 or $nnUNet_nps)")
    parser.add_argument("-prev_stage_predictions", type=Path, default=None,
                        help="predictions of the previous stage (cascaded configurations only)")
    parser.add_argument("-num_parts", type=int, default=1, help="number of parallel calls (default: 1)")
    parser.add_argument("-part_id", type=int, default=0, help="which of the -num_parts calls this is (0-based)")
    parser.add_argument("-device", default="cuda", choices=_DEVICES, help="cuda, cpu or mps (default: cuda)")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no progress bar")
    parser.add_argument("--not_on_device", action="store_true",
                        help="keep the sliding-window results in CPU memory (large cases)")
    parser.add_argument("--landmark-threshold", type=float, default=DEFAULT_LANDMARK_THRESHOLD,
                        help="heatmap peak (0-1) below which a landmark is written as null (absent); "
                        f"default: {DEFAULT_LANDMARK_THRESHOLD}")
    parser.add_argument("--save-slicer", action="store_true",
                        help="also write <case>.mrk.json (3D Slicer markups, LPS) beside each <case>.json")
    parser.add_argument("--query-uv", type=Path, default=None, metavar="FILE",
                        help="DenseSeg models only: JSON {label name: {new landmark name: [u, v]}} of canonical uv "
                        "coordinates (see denseseg_template.json, written to the output folder) to locate without "
                        "retraining; results go to <output>/queried_landmarks/<case>.json. Default: none")
    return parser


def _checkpoint_name(value: str) -> str:
    try:
        return require_checkpoint_file_name(value, "-chk")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fold(value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"-f takes fold numbers or 'all', got {value!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line tool; returns the exit status (0 ok, 1 bad input, 2 bad arguments, 128 + signal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = PredictionSettings(
            input_folder=args.i, output_folder=args.o, dataset=args.d, configuration=args.c, trainer=args.tr,
            plans=args.p, folds=tuple(_fold(value) for value in args.f), step_size=args.step_size,
            use_mirroring=not args.disable_tta, verbose=args.verbose, save_probabilities=args.save_probabilities,
            continue_prediction=args.continue_prediction, checkpoint=args.chk, num_processes_preprocessing=args.npp,
            num_processes_export=args.nps, previous_stage_predictions=args.prev_stage_predictions,
            num_parts=args.num_parts, part_id=args.part_id, device=args.device,
            progress_bar=not args.disable_progress_bar, perform_everything_on_device=not args.not_on_device,
            landmark_threshold=args.landmark_threshold, save_slicer=args.save_slicer, query_uv=args.query_uv,
        )
    except ValueError as error:
        parser.error(str(error))
    status, output_folder = run_reporting_errors(
        parser.prog, lambda: predict_with_landmarks(settings), verbose=args.verbose
    )
    if status == 0:
        print(f"segmentations and landmark files written to {output_folder}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
