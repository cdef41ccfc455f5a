"""The bad-input catalogue (issue 17): what a new user gets wrong, tool by tool, and what each tool answers.

Every case runs a command-line tool's ``main`` on a small, valid set of inputs with one thing broken, and checks:
the exit status (1 bad input, 2 bad arguments, 0 for a warning or an input accepted on purpose), that the message
names the file and the field or value at fault, that no traceback is printed, and, after an error, that nothing
was written or left behind (every file under the workspace, hidden ones included, is as before). The cases run
in-process (cheap); ``test_a_real_process_exits_cleanly`` runs one per tool as a real process, and
``test_a_killed_run_leaves_nothing`` kills the long-running tools mid-run.

Library-level conversion errors (every validation problem with its file) are in
``tests/conversion/test_conversion_bad_input.py``; refused pickle checkpoints in
``tests/nnunet/test_checkpoint_loading.py``. The counts in the README's reliability section are this module's
:data:`CASES` by outcome plus those.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import SimpleITK as sitk

Tool = Literal["convert", "merge", "pseudo_labels", "gaze", "predict", "evaluate", "demo", "train"]
Outcome = Literal["error", "warning", "accepted"]

MODULES: dict[str, str] = {
    "convert": "dataset_conversion.cli_convert",
    "merge": "dataset_conversion.cli_merge",
    "pseudo_labels": "pseudo_labels.cli",
    "gaze": "pseudo_labels.gaze.cli",
    "predict": "nnunet_babloss.cli.predict",
    "evaluate": "nnunet_babloss.cli.evaluate",
    "demo": "nnunet_babloss.cli.demo",
}
PROGS: dict[str, str] = {
    "convert": "nnUNetv2_bab_convert",
    "merge": "nnUNetv2_bab_merge",
    "pseudo_labels": "nnUNetv2_bab_pseudo_labels",
    "gaze": "nnUNetv2_bab_gaze_pseudo_labels",
    "predict": "nnUNetv2_bab_predict",
    "evaluate": "nnUNetv2_bab_evaluate",
    "demo": "nnUNetv2_bab_demo",
}
DATASET = "Dataset003_Tiny"
MODEL = f"{DATASET}/BaBLossTrainer__nnUNetPlans__2d"
# Landmarks p, q, r on three corners of structure a (rows 4..11, columns 4..13), s inside structure b.
LANDMARKS = {"p": [4.0, 4.0], "q": [13.0, 4.0], "r": [13.0, 11.0], "s": [15.0, 12.0]}


# ----------------------------------------------------------------------------------------------- the valid inputs
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8)), str(path))


def _labelme(path: Path, points: dict[str, list[float]]) -> None:
    shapes = [{"label": name, "points": [point], "shape_type": "point", "flags": {}} for name, point in points.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.0.1", "shapes": shapes, "imageWidth": 32, "imageHeight": 24}))


def _image(path: Path, array: np.ndarray, spacing: tuple[float, ...] = (0.5, 0.5)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid workspace, copied for every case: sources, a raw dataset, a model folder, predictions, gaze."""
    from dataset_conversion.convert import ConversionInputs, ConversionSettings, LandmarkOptions, convert_dataset
    from dataset_conversion.landmark_sources import LandmarkFolder
    from dataset_conversion.masks import BitFlagMasks
    from pseudo_labels.gaze.gaze_csv import FixationSequence, write_gaze_csv

    root = tmp_path_factory.mktemp("catalogue")
    source = root / "src"
    for index in range(3):
        bits = np.zeros((24, 32), dtype=np.uint8)
        bits[4:12, 4:14] |= 1
        bits[8:16, 10:20] |= 2
        image = np.where(bits > 0, 200, 10 + index)
        _png(source / "images" / f"c{index}.png", image)
        _png(source / "masks" / f"c{index}.png", bits)
        _labelme(source / "landmarks" / f"c{index}.json", LANDMARKS)
    inputs = ConversionInputs(
        (source / "images",), masks=BitFlagMasks(source / "masks", {"a": 1, "b": 2}),
        landmarks=LandmarkFolder(source / "landmarks", "labelme"),
        annotation_kinds={"c0": "both", "c1": "both", "c2": "landmark_only"},
    )
    settings = ConversionSettings(
        3, "Tiny", raw_folder=root / "raw", pixel_spacing_mm=(0.5,), overlap="priority", num_folds=2, progress=False,
        landmarks=LandmarkOptions(bridge={"[pqr]": ("a",), "s": ("b",)}),
    )
    dataset = convert_dataset(inputs, settings).dataset_folder

    model = root / "results" / MODEL
    (model / "fold_0").mkdir(parents=True)
    shutil.copy(dataset / "dataset.json", model / "dataset.json")
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"")  # never loaded: every case fails before
    (root / "preprocessed").mkdir()
    (root / "predict_in").mkdir()
    shutil.copy(dataset / "imagesTr" / "c0_0000.nii.gz", root / "predict_in" / "c0_0000.nii.gz")

    prediction = root / "prediction"
    shutil.copytree(dataset / "labelsTr", prediction)
    (prediction / "c2.nii.gz").unlink()  # landmark-only: its label map is all 'ignore', no reference
    shutil.copytree(prediction, root / "reference_labels")
    # An earlier evaluation's results: a failed or killed evaluation must leave them exactly as they are.
    _write(root / "eval_out/summary.json", '{"old": true}')
    _write(root / "eval_out/segmentation_per_case.csv", "old")
    shutil.copytree(dataset / "landmarksTr", prediction, dirs_exist_ok=True)  # perfect predictions

    gaze = root / "gaze"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _image(gaze / "images" / f"{name}.nii.gz", rng.normal(100, 10, (40, 50)).astype(np.float32))
    write_gaze_csv(gaze / "gaze.csv", [
        FixationSequence(name, x=np.array([0.3, 0.35, 0.7]), y=np.array([0.5, 0.55, 0.5]),
                         duration_ms=np.array([400.0, 300.0, 60.0]))
        for name in ("a", "b")
    ])
    return root


@pytest.fixture()
def workspace(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "w"
    shutil.copytree(base, work, symlinks=True)
    monkeypatch.setenv("nnUNet_raw", str(work / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(work / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(work / "results"))
    monkeypatch.delenv("NNUNET_BABLOSS_TRACEBACK", raising=False)
    return work


def convert_args(w: Path, *extra: str) -> list[str]:
    return ["-i", str(w / "src/images"), "--pixel-spacing", "0.5", "--mask-bits", str(w / "src/masks"), "--bits",
            "a=1", "b=2", "--overlap", "priority", "--landmarks", str(w / "src/landmarks"), "--landmark-format",
            "labelme", "-d", "4", "-n", "New", "--raw-folder", str(w / "out_raw"), "--num-folds", "2",
            "--no-progress", *extra]


def merge_args(w: Path, *extra: str) -> list[str]:
    other = w / "raw" / "Dataset006_Other"
    if not other.exists():
        shutil.copytree(w / "raw" / DATASET, other)
    return ["-i", str(w / "raw" / DATASET), str(other), "-d", "5", "-n", "Merged", "--raw-folder", str(w / "raw"),
            "--prefix-case-ids", "--num-folds", "2", "--no-progress", *extra]


def pseudo_args(w: Path, *extra: str) -> list[str]:
    return ["-i", str(w / "raw" / DATASET), "-o", str(w / "pseudo_out"), "--backend", "none", "--default-strategy",
            "contour", "--no-progress", *extra]


def gaze_args(w: Path, *extra: str) -> list[str]:
    return ["-i", str(w / "gaze/images"), "--gaze", str(w / "gaze/gaze.csv"), "-d", "7", "-n", "G", "--raw-folder",
            str(w / "gaze_raw"), "--no-crf", "--no-progress", *extra]


def predict_args(w: Path, *extra: str) -> list[str]:
    return ["-i", str(w / "predict_in"), "-o", str(w / "predict_out"), "-d", "3", "-c", "2d", "-f", "0", "-device",
            "cpu", "--disable_progress_bar", *extra]


def evaluate_args(w: Path, *extra: str) -> list[str]:
    dataset = w / "raw" / DATASET
    return ["--pred", str(w / "prediction"), "-djfile", str(dataset / "dataset.json"), "--ref-labels",
            str(w / "reference_labels"), "--ref-landmarks", str(dataset / "landmarksTr"), "-o", str(w / "eval_out"),
            *extra]


# ------------------------------------------------------------------------------------------------- small breakers
def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _edit_json(path: Path, change: Callable[[dict], None]) -> Path:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))
    return path


def _with(arguments: list[str], option: str, value: str) -> list[str]:
    """``arguments`` with the value of ``option`` replaced."""
    changed = list(arguments)
    changed[changed.index(option) + 1] = value
    return changed


def _ds(w: Path) -> Path:
    return w / "raw" / DATASET


def _set_spacing(folder: Path, spacing: tuple[float, float]) -> None:
    for path in sorted(folder.glob("*.nii.gz")):
        image = sitk.ReadImage(str(path))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(path))


def _cast(folder: Path, pixel_type: int) -> None:
    for path in sorted(folder.glob("*.nii.gz")):
        sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(path)), pixel_type), str(path))


def _nan_images(w: Path) -> None:
    folder = w / "src/images"
    for index in range(3):
        (folder / f"c{index}.png").unlink()
        array = np.full((24, 32), 10.0, dtype=np.float32)
        if index == 1:
            array[3, 5] = np.nan
        _image(folder / f"c{index}.mha", array, (0.5, 0.5))


# --------------------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class BadInput:
    """One bad input: how to make it (returns the arguments and the texts the message must hold), what to expect."""

    tool: Tool
    name: str
    make: Callable[[Path], tuple[list[str], list[str]]]
    outcome: Outcome = "error"
    status: int = 1  # 1: bad input; 2: bad arguments (argparse's usage line); 0 for warnings and accepted inputs


def _case(tool: Tool, name: str, outcome: Outcome = "error", status: int | None = None):  # noqa: ANN202
    def register(make: Callable[[Path], tuple[list[str], list[str]]]) -> Callable:
        CASES.append(BadInput(tool, name, make, outcome, status if status is not None else int(outcome == "error")))
        return make

    return register


CASES: list[BadInput] = []

# convert (library-level validation is in tests/conversion/test_conversion_bad_input.py; these go through the CLI)


@_case("convert", "images folder missing")
def _(w: Path):
    shutil.rmtree(w / "src/images")
    return convert_args(w), [str(w / "src/images")]


@_case("convert", "images folder empty")
def _(w: Path):
    for path in (w / "src/images").iterdir():
        path.unlink()
    return convert_args(w), [str(w / "src/images")]


@_case("convert", "NaN or infinite pixels")
def _(w: Path):
    _nan_images(w)
    return convert_args(w)[:2] + convert_args(w)[4:], [str(w / "src/images/c1.mha"), "NaN or infinite"]


@_case("convert", "output folder inside the input folder")
def _(w: Path):
    arguments = _with(convert_args(w), "--raw-folder", str(w / "src/images/raw"))
    return arguments, [str(w / "src/images"), "inside the input folder"]


@_case("convert", "corrupt PNG")
def _(w: Path):
    _write(w / "src/images/c1.png", b"this is not a png")
    return convert_args(w), [str(w / "src/images/c1.png"), "cannot read"]


@_case("convert", "landmark file is not JSON")
def _(w: Path):
    _write(w / "src/landmarks/c1.json", "{not json")
    return convert_args(w), [str(w / "src/landmarks/c1.json")]


@_case("convert", "landmark file is binary")
def _(w: Path):
    _write(w / "src/landmarks/c1.json", bytes(range(256)))
    return convert_args(w), [str(w / "src/landmarks/c1.json")]


@_case("convert", "dataset id out of range")
def _(w: Path):
    return _with(convert_args(w), "-d", "1000"), ["dataset id", "1000"]


@_case("convert", "dataset name with a space")
def _(w: Path):
    return _with(convert_args(w), "-n", "My Data"), ["dataset name", "My Data"]


@_case("convert", "bits not an integer", status=2)
def _(w: Path):
    return _with(convert_args(w), "--bits", "a=one"), ["--bits", "'a'", "'one'"]


@_case("convert", "labels JSON file missing", status=2)
def _(w: Path):
    arguments = convert_args(w)
    start = arguments.index("--mask-bits")
    del arguments[start:start + 5]
    return [*arguments, "--masks", str(w / "src/masks"), "--labels-json", str(w / "nope.json")], [
        str(w / "nope.json")]


@_case("convert", "existing output without --overwrite")
def _(w: Path):
    (w / "out_raw/Dataset004_New").mkdir(parents=True)
    (w / "out_raw/Dataset004_New/dataset.json").write_text("{}")
    return convert_args(w), [str(w / "out_raw/Dataset004_New"), "--overwrite"]


@_case("convert", "negative pixel spacing")
def _(w: Path):
    return _with(convert_args(w), "--pixel-spacing", "-0.5"), [str(w / "src/images/c0.png"), "pixel spacing", "-0.5"]


@_case("convert", "mask folder missing")
def _(w: Path):
    shutil.rmtree(w / "src/masks")
    return convert_args(w), [str(w / "src/masks")]


@_case("convert", "unknown landmark format", status=2)
def _(w: Path):
    return _with(convert_args(w), "--landmark-format", "xml"), ["--landmark-format", "xml"]


@_case("convert", "annotation kinds file not JSON", status=2)
def _(w: Path):
    _write(w / "kinds.json", "{")
    return convert_args(w, "--annotation-kinds", str(w / "kinds.json")), [str(w / "kinds.json")]


@_case("convert", "landmark coordinate is text")
def _(w: Path):
    _edit_json(w / "src/landmarks/c1.json", lambda content: content["shapes"][0].update(points=[["4", "x"]]))
    return convert_args(w), [str(w / "src/landmarks/c1.json")]


@_case("convert", "unknown case requested")
def _(w: Path):
    return convert_args(w, "--cases", "c9"), ["c9"]


@_case("convert", "unknown test case")
def _(w: Path):
    return convert_args(w, "--test-cases", "c9"), ["c9"]


@_case("convert", "no folds")
def _(w: Path):
    return _with(convert_args(w), "--num-folds", "0"), ["num_folds", "0"]


# merge


@_case("merge", "input dataset not found")
def _(w: Path):
    arguments = merge_args(w)
    arguments[1] = str(w / "raw/Dataset009_Missing")
    return arguments, [str(w / "raw/Dataset009_Missing")]


@_case("merge", "input without dataset.json")
def _(w: Path):
    arguments = merge_args(w)
    (w / "raw/Dataset006_Other/dataset.json").unlink()
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "not found"]


@_case("merge", "dataset.json not JSON")
def _(w: Path):
    arguments = merge_args(w)
    _write(w / "raw/Dataset006_Other/dataset.json", "{")
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "not valid JSON"]


@_case("merge", "dataset.json not UTF-8")
def _(w: Path):
    arguments = merge_args(w)
    (w / "raw/Dataset006_Other/dataset.json").write_bytes('{"name": "Gr\u00f6\u00dfe"}'.encode("latin-1"))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "not valid JSON"]


@_case("merge", "dataset.json lacks file_ending")
def _(w: Path):
    arguments = merge_args(w)
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content.pop("file_ending"))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "file_ending"]


@_case("merge", "different channel names")
def _(w: Path):
    arguments = merge_args(w)
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content.update(channel_names={"0": "CT"}))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "channel names", "CT"]


@_case("merge", "colliding case ids without --prefix-case-ids")
def _(w: Path):
    arguments = merge_args(w)
    arguments.remove("--prefix-case-ids")
    return arguments, ["--prefix-case-ids"]


@_case("merge", "output is one of the inputs")
def _(w: Path):
    arguments = merge_args(w, "--overwrite")
    arguments[arguments.index("-d") + 1] = "3"
    arguments[arguments.index("-n") + 1] = "Tiny"
    return arguments, [str(w / "raw" / DATASET), "also an input"]


@_case("merge", "numTraining disagrees with imagesTr")
def _(w: Path):
    arguments = merge_args(w)
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content.update(numTraining=9))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "numTraining"]


@_case("merge", "label value not declared")
def _(w: Path):
    arguments = merge_args(w)
    label = w / "raw/Dataset006_Other/labelsTr/c0.nii.gz"
    image = sitk.ReadImage(str(label))
    array = sitk.GetArrayFromImage(image)
    array[0, 0] = 9
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(label))
    return arguments, [str(label), "9"]


@_case("merge", "corrupt image in an input")
def _(w: Path):
    arguments = merge_args(w)
    _write(w / "raw/Dataset006_Other/imagesTr/c1_0000.nii.gz", b"garbage")
    return arguments, [str(w / "raw/Dataset006_Other/imagesTr/c1_0000.nii.gz")]


@_case("merge", "labels is not an object")
def _(w: Path):
    arguments = merge_args(w)
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content.update(labels=["a", "b"]))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "labels"]


@_case("merge", "broken landmark block in an input")
def _(w: Path):
    arguments = merge_args(w)
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content["landmarks"].update(names="p"))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "names"]


@_case("merge", "label alias without =", status=2)
def _(w: Path):
    return merge_args(w, "--label-alias", "a"), ["--label-alias", "'a'"]


@_case("merge", "alias for a label no input has")
def _(w: Path):
    return merge_args(w, "--label-alias", "liver=organ"), ["liver"]


@_case("merge", "different spacings", outcome="warning")
def _(w: Path):
    arguments = merge_args(w)
    _set_spacing(w / "raw/Dataset006_Other/imagesTr", (2.0, 2.0))
    _set_spacing(w / "raw/Dataset006_Other/labelsTr", (2.0, 2.0))
    return arguments, ["merge-spacing", str(w / "raw/Dataset006_Other/imagesTr/c0_0000.nii.gz")]


@_case("merge", "different pixel types (modalities)", outcome="warning")
def _(w: Path):
    arguments = merge_args(w)
    _cast(w / "raw/Dataset006_Other/imagesTr", sitk.sitkFloat32)
    return arguments, ["merge-pixel-type", str(w / "raw/Dataset006_Other/imagesTr/c0_0000.nii.gz")]


@_case("merge", "different channel names with --ignore-channel-names", outcome="warning")
def _(w: Path):
    arguments = merge_args(w, "--ignore-channel-names")
    _edit_json(w / "raw/Dataset006_Other/dataset.json", lambda content: content.update(channel_names={"0": "CT"}))
    return arguments, [str(w / "raw/Dataset006_Other/dataset.json"), "channel names"]


# pseudo labels


@_case("pseudo_labels", "input dataset missing")
def _(w: Path):
    shutil.rmtree(_ds(w))
    return pseudo_args(w), [str(_ds(w) / "dataset.json"), "not found"]


@_case("pseudo_labels", "dataset.json not JSON")
def _(w: Path):
    _write(_ds(w) / "dataset.json", "{")
    return pseudo_args(w), [str(_ds(w) / "dataset.json"), "not valid JSON"]


@_case("pseudo_labels", "no ignore label")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content["labels"].pop("ignore"))
    return pseudo_args(w), [str(_ds(w) / "dataset.json"), "ignore"]


@_case("pseudo_labels", "no landmarks block")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content.pop("landmarks"))
    return pseudo_args(w), [str(_ds(w) / "dataset.json"), "landmarks"]


@_case("pseudo_labels", "no bridge table")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content["landmarks"].pop("bridge"))
    return pseudo_args(w), ["bridge"]


@_case("pseudo_labels", "strategy for an unknown organ")
def _(w: Path):
    return pseudo_args(w, "--strategy", "liver=contour"), ["liver"]


@_case("pseudo_labels", "strategy without ORGAN=")
def _(w: Path):
    return pseudo_args(w, "--strategy", "contour"), ["--strategy", "ORGAN=SPEC"]


@_case("pseudo_labels", "model strategy without a model")
def _(w: Path):
    return pseudo_args(w, "--strategy", "a=box"), ["'a'", "backend"]


@_case("pseudo_labels", "checkpoint with --backend none")
def _(w: Path):
    return pseudo_args(w, "--checkpoint", str(w / "sam.pth")), ["--checkpoint", "--backend none"]


@_case("pseudo_labels", "output inside the input dataset")
def _(w: Path):
    return _with(pseudo_args(w), "-o", str(_ds(w) / "new")), [str(_ds(w) / "new"), "original dataset"]


@_case("pseudo_labels", "non-empty output without --overwrite")
def _(w: Path):
    _write(w / "pseudo_out/keep.txt", "mine")
    return pseudo_args(w), [str(w / "pseudo_out"), "not empty"]


@_case("pseudo_labels", "bad --intensity")
def _(w: Path):
    return pseudo_args(w, "--intensity", "loud"), ["--intensity", "loud"]


@_case("pseudo_labels", "unknown case")
def _(w: Path):
    return pseudo_args(w, "--cases", "c9"), ["c9", str(_ds(w) / "landmarksTr")]


@_case("pseudo_labels", "landmarksTr missing")
def _(w: Path):
    shutil.rmtree(_ds(w) / "landmarksTr")
    return pseudo_args(w), [str(_ds(w) / "landmarksTr"), "not found"]


@_case("pseudo_labels", "corrupt image of a landmark-only case (after other cases were written)")
def _(w: Path):
    _write(_ds(w) / "imagesTr/c2_0000.nii.gz", b"not an image")
    return pseudo_args(w), [str(_ds(w) / "imagesTr/c2_0000.nii.gz")]


@_case("pseudo_labels", "landmark file not JSON")
def _(w: Path):
    _write(_ds(w) / "landmarksTr/c2.json", "{")
    return pseudo_args(w), [str(_ds(w) / "landmarksTr/c2.json")]


@_case("pseudo_labels", "negative background margin")
def _(w: Path):
    return pseudo_args(w, "--background-margin-mm", "-1"), ["background_margin_mm", "-1"]


@_case("pseudo_labels", "SAM backend without a checkpoint")
def _(w: Path):
    return _with(pseudo_args(w), "--backend", "sam"), ["checkpoint"]


@_case("pseudo_labels", "image missing for a case")
def _(w: Path):
    (_ds(w) / "imagesTr/c2_0000.nii.gz").unlink()
    return pseudo_args(w), [str(_ds(w) / "imagesTr/c2_0000.nii.gz"), "not found"]


@_case("pseudo_labels", "corrupt label map")
def _(w: Path):
    _write(_ds(w) / "labelsTr/c0.nii.gz", b"garbage")
    return pseudo_args(w), [str(_ds(w) / "labelsTr/c0.nii.gz")]


@_case("pseudo_labels", "bridge to a label the dataset lacks")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content["landmarks"].update(bridge={"p": ["liver"]}))
    return pseudo_args(w), [str(_ds(w) / "dataset.json"), "liver"]


@_case("pseudo_labels", "landmark file of another dimension")
def _(w: Path):
    _edit_json(_ds(w) / "landmarksTr/c2.json",
               lambda content: content.update(dimension=3, landmarks={name: [1.0, 1.0, 1.0] for name in "pqrs"}))
    return pseudo_args(w), [str(_ds(w) / "landmarksTr/c2.json"), "3D"]


@_case("pseudo_labels", "image channel the dataset lacks")
def _(w: Path):
    return pseudo_args(w, "--channel", "5"), [str(_ds(w) / "imagesTr/c0_0005.nii.gz")]


@_case("pseudo_labels", "IoU threshold above 1")
def _(w: Path):
    return pseudo_args(w, "--min-iou", "2"), ["min_predicted_iou", "2"]


# gaze


@_case("gaze", "binary gaze CSV")
def _(w: Path):
    _write(w / "gaze/gaze.csv", bytes(range(256)) * 4)
    return gaze_args(w), [str(w / "gaze/gaze.csv"), "binary"]


@_case("gaze", "gaze CSV in another encoding")
def _(w: Path):
    _write(w / "gaze/gaze.csv", "IMAGE,CURRENT_FIX_X\n\xe9,1\n".encode("utf-16"))
    return gaze_args(w), [str(w / "gaze/gaze.csv")]


@_case("gaze", "gaze CSV missing")
def _(w: Path):
    (w / "gaze/gaze.csv").unlink()
    return gaze_args(w), [str(w / "gaze/gaze.csv"), "not found"]


@_case("gaze", "gaze CSV lacks columns")
def _(w: Path):
    _write(w / "gaze/gaze.csv", "IMAGE,X,Y\na,0.5,0.5\n")
    return gaze_args(w), [str(w / "gaze/gaze.csv"), "missing required column"]


@_case("gaze", "fixation outside the image")
def _(w: Path):
    lines = (w / "gaze/gaze.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("CURRENT_FIX_X")] = "1.7"
    _write(w / "gaze/gaze.csv", "\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    return gaze_args(w), [str(w / "gaze/gaze.csv"), "line 2", "1.7"]


@_case("gaze", "gaze for an image that does not exist")
def _(w: Path):
    (w / "gaze/images/b.nii.gz").rename(w / "gaze/images/c.nii.gz")
    return gaze_args(w, "--skip-images-without-gaze"), [str(w / "gaze/gaze.csv"), "'b'"]


@_case("gaze", "an image without gaze")
def _(w: Path):
    _image(w / "gaze/images/z.nii.gz", np.zeros((40, 50), np.float32))
    return gaze_args(w), ["z", "--skip-images-without-gaze"]


@_case("gaze", "images folder missing")
def _(w: Path):
    shutil.rmtree(w / "gaze/images")
    return gaze_args(w), [str(w / "gaze/images")]


@_case("gaze", "threshold outside [0, 1)")
def _(w: Path):
    return gaze_args(w, "--thresholds", "1.5", "0.5"), ["thresholds", "1.5"]


@_case("gaze", "thresholds in increasing order", outcome="accepted")  # sorted on purpose: the order carries no meaning
def _(w: Path):
    return gaze_args(w, "--thresholds", "0.2", "0.5"), []


@_case("gaze", "existing dataset without --overwrite")
def _(w: Path):
    _write(w / "gaze_raw/Dataset007_G/dataset.json", "{}")
    return gaze_args(w), [str(w / "gaze_raw/Dataset007_G"), "--overwrite"]


@_case("gaze", "corrupt image")
def _(w: Path):
    _write(w / "gaze/images/b.nii.gz", b"garbage")
    return gaze_args(w), [str(w / "gaze/images/b.nii.gz")]


@_case("gaze", "empty gaze CSV")
def _(w: Path):
    _write(w / "gaze/gaze.csv", "")
    return gaze_args(w), [str(w / "gaze/gaze.csv")]


@_case("gaze", "pixel spacing for images with their own")
def _(w: Path):
    return gaze_args(w, "--pixel-spacing", "0.5"), [str(w / "gaze/images"), "--pixel-spacing"]


@_case("gaze", "negative pixel spacing")
def _(w: Path):
    for name in ("a", "b"):
        path = w / f"gaze/images/{name}.nii.gz"
        _png(path.with_name(f"{name}.png"), np.clip(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), 0, 255))
        path.unlink()
    return gaze_args(w, "--pixel-spacing", "-1"), [str(w / "gaze/images"), "spacing", "-1"]


@_case("gaze", "sigma 0")
def _(w: Path):
    return gaze_args(w, "--sigma", "0"), ["sigma", "0"]


@_case("gaze", "extra CSV columns", outcome="accepted")
def _(w: Path):
    lines = (w / "gaze/gaze.csv").read_text().splitlines()
    _write(w / "gaze/gaze.csv", "\n".join([lines[0] + ",NOTE", *(line + ",x" for line in lines[1:])]) + "\n")
    return gaze_args(w), []


# predict (no model is loaded: every input is checked first)


@_case("predict", "input folder missing")
def _(w: Path):
    shutil.rmtree(w / "predict_in")
    return predict_args(w), ["-i", str(w / "predict_in"), "not found"]


@_case("predict", "input folder empty")
def _(w: Path):
    (w / "predict_in/c0_0000.nii.gz").unlink()
    return predict_args(w), ["-i", str(w / "predict_in"), "'.nii.gz'", "empty"]


@_case("predict", "no file with the dataset's file ending")
def _(w: Path):
    (w / "predict_in/c0_0000.nii.gz").rename(w / "predict_in/c0_0000.png")
    return predict_args(w), ["-i", str(w / "predict_in"), "'.nii.gz'", "c0_0000.png"]


@_case("predict", "image name without channel number")
def _(w: Path):
    (w / "predict_in/c0_0000.nii.gz").rename(w / "predict_in/c0.nii.gz")
    return predict_args(w), [str(w / "predict_in/c0.nii.gz"), "_XXXX"]


@_case("predict", "a channel the model does not have")
def _(w: Path):
    (w / "predict_in/c0_0000.nii.gz").rename(w / "predict_in/c0_0001.nii.gz")
    return predict_args(w), [str(w / "predict_in"), "'c0'", "0001", "channel_names"]


@_case("predict", "corrupt input image")
def _(w: Path):
    _write(w / "predict_in/c0_0000.nii.gz", b"not an image")
    return predict_args(w), [str(w / "predict_in/c0_0000.nii.gz"), "cannot read"]


@_case("predict", "input is a file")
def _(w: Path):
    return _with(predict_args(w), "-i", str(w / "predict_in/c0_0000.nii.gz")), [
        "-i", str(w / "predict_in/c0_0000.nii.gz")]


@_case("predict", "negative process count", status=2)
def _(w: Path):
    return predict_args(w, "-npp", "-1"), ["-npp", "-1"]


@_case("predict", "previous-stage folder missing")
def _(w: Path):
    return predict_args(w, "-prev_stage_predictions", str(w / "nope")), ["-prev_stage_predictions", str(w / "nope")]


@_case("predict", "configuration not trained")
def _(w: Path):
    return _with(predict_args(w), "-c", "3d_fullres"), ["3d_fullres", "not found"]


@_case("predict", "unknown dataset id")
def _(w: Path):
    return _with(predict_args(w), "-d", "555"), ["-d 555", "no such dataset"]


@_case("predict", "no model of this trainer")
def _(w: Path):
    return predict_args(w, "-tr", "OtherTrainer"), ["OtherTrainer__nnUNetPlans__2d", "not found"]


@_case("predict", "fold without the checkpoint")
def _(w: Path):
    return predict_args(w, "-chk", "checkpoint_best.pth"), ["-f 0", "checkpoint_best.pth", "not found"]


@_case("predict", "missing fold")
def _(w: Path):
    return _with(predict_args(w), "-f", "3"), ["-f 3", str(w / "results" / MODEL / "fold_3")]


@_case("predict", "checkpoint given as a path", status=2)
def _(w: Path):
    return predict_args(w, "-chk", "/tmp/evil.pth"), ["-chk", "/tmp/evil.pth"]


@_case("predict", "fold not a number", status=2)
def _(w: Path):
    return _with(predict_args(w), "-f", "first"), ["-f", "first"]


@_case("predict", "step size 0", status=2)
def _(w: Path):
    return predict_args(w, "-step_size", "0"), ["-step_size", "0"]


@_case("predict", "landmark threshold above 1", status=2)
def _(w: Path):
    return predict_args(w, "--landmark-threshold", "2"), ["--landmark-threshold", "2"]


@_case("predict", "part id outside num parts", status=2)
def _(w: Path):
    return predict_args(w, "-num_parts", "2", "-part_id", "2"), ["-part_id", "2"]


@_case("predict", "unknown device", status=2)
def _(w: Path):
    return _with(predict_args(w), "-device", "tpu"), ["-device", "tpu"]


@_case("predict", "query_uv file missing")
def _(w: Path):
    return predict_args(w, "--query-uv", str(w / "uv.json")), ["--query-uv", str(w / "uv.json"), "not found"]


@_case("predict", "query_uv not JSON")
def _(w: Path):
    _write(w / "uv.json", "{")
    return predict_args(w, "--query-uv", str(w / "uv.json")), ["--query-uv", str(w / "uv.json"), "not valid JSON"]


@_case("predict", "query_uv not an object")
def _(w: Path):
    _write(w / "uv.json", "[1, 2]")
    return predict_args(w, "--query-uv", str(w / "uv.json")), ["--query-uv", str(w / "uv.json"), "object"]


@_case("predict", "output is a file")
def _(w: Path):
    _write(w / "predict_out", "a file")
    return predict_args(w), ["-o", str(w / "predict_out"), "not a folder"]


@_case("predict", "nnUNet_results not set")
def _(w: Path):
    os.environ.pop("nnUNet_results")  # restored by the workspace fixture's monkeypatch
    return predict_args(w), ["nnUNet_results"]


@_case("predict", "model's dataset.json missing")
def _(w: Path):
    (w / "results" / MODEL / "dataset.json").unlink()
    return predict_args(w), [str(w / "results" / MODEL / "dataset.json"), "not found"]


# evaluate


@_case("evaluate", "prediction folder missing")
def _(w: Path):
    shutil.rmtree(w / "prediction")
    return evaluate_args(w), [str(w / "prediction"), "not found"]


@_case("evaluate", "dataset.json missing")
def _(w: Path):
    return _with(evaluate_args(w), "-djfile", str(w / "nope.json")), ["-djfile", str(w / "nope.json"), "not found"]


@_case("evaluate", "dataset.json not JSON")
def _(w: Path):
    _write(_ds(w) / "dataset.json", "{")
    return evaluate_args(w), ["-djfile", str(_ds(w) / "dataset.json"), "not valid JSON"]


@_case("evaluate", "dataset.json lacks file_ending")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content.pop("file_ending"))
    return evaluate_args(w), ["-djfile", str(_ds(w) / "dataset.json"), "file_ending"]


@_case("evaluate", "dataset.json is a list")
def _(w: Path):
    _write(_ds(w) / "dataset.json", "[]")
    return evaluate_args(w), ["-djfile", str(_ds(w) / "dataset.json"), "object"]


@_case("evaluate", "no reference given")
def _(w: Path):
    arguments = evaluate_args(w)
    del arguments[arguments.index("--ref-labels"):arguments.index("-o")]
    return arguments, ["reference labels, reference landmarks"]


@_case("evaluate", "overlays without images")
def _(w: Path):
    return evaluate_args(w, "--overlays"), ["overlays", "images"]


@_case("evaluate", "a reference case without prediction")
def _(w: Path):
    (w / "prediction/c1.nii.gz").unlink()
    return evaluate_args(w), ["c1", str(w / "prediction")]


@_case("evaluate", "predicted label value outside the labels")
def _(w: Path):
    path = w / "prediction/c0.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0] = 7
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(path))
    return evaluate_args(w), [str(path), "7"]


@_case("evaluate", "prediction geometry differs")
def _(w: Path):
    _set_spacing(w / "prediction", (0.7, 0.7))
    return evaluate_args(w), [str(w / "prediction"), "spacing"]


@_case("evaluate", "corrupt prediction image")
def _(w: Path):
    _write(w / "prediction/c0.nii.gz", b"garbage")
    return evaluate_args(w), [str(w / "prediction/c0.nii.gz")]


@_case("evaluate", "predicted landmark file not JSON")
def _(w: Path):
    _write(w / "prediction/c0.json", "{")
    return evaluate_args(w), [str(w / "prediction/c0.json")]


@_case("evaluate", "predicted landmark file with an unknown landmark")
def _(w: Path):
    _edit_json(w / "prediction/c0.json", lambda content: content["landmarks"].update(zz=[1.0, 1.0]))
    return evaluate_args(w), [str(w / "prediction/c0.json"), "zz"]


@_case("evaluate", "a landmark left out of a predicted file", outcome="accepted")  # absent: counted as missed
def _(w: Path):
    _edit_json(w / "prediction/c0.json", lambda content: content["landmarks"].pop("p"))
    return evaluate_args(w), []


@_case("evaluate", "unknown case requested")
def _(w: Path):
    return evaluate_args(w, "--cases", "c9"), ["c9", "no reference"]


@_case("evaluate", "NSD tolerance 0", status=2)
def _(w: Path):
    return evaluate_args(w, "--nsd-tolerance-mm", "0"), ["--nsd-tolerance-mm", "0"]


@_case("evaluate", "unknown surface metric", status=2)
def _(w: Path):
    return evaluate_args(w, "--surface-metric", "mesh"), ["--surface-metric", "mesh"]


@_case("evaluate", "reference label folder without label maps")
def _(w: Path):
    for path in (w / "reference_labels").iterdir():
        path.unlink()
    return evaluate_args(w), [str(w / "reference_labels"), "'.nii.gz'"]


@_case("evaluate", "reference landmark file is binary")
def _(w: Path):
    _write(_ds(w) / "landmarksTr/c1.json", bytes(range(256)))
    return evaluate_args(w), [str(_ds(w) / "landmarksTr/c1.json")]


@_case("evaluate", "prediction of another dimension")
def _(w: Path):
    _image(w / "prediction/c0.nii.gz", np.zeros((2, 24, 32), np.uint8), (0.5, 0.5, 0.5))
    return evaluate_args(w), [str(w / "prediction/c0.nii.gz")]


@_case("evaluate", "images folder for overlays missing")
def _(w: Path):
    return evaluate_args(w, "--overlays", "--images", str(w / "nope")), [str(w / "nope"), "not found"]


@_case("evaluate", "reference landmarks of another dimension")
def _(w: Path):
    _edit_json(_ds(w) / "landmarksTr/c1.json",
               lambda content: content.update(dimension=3, landmarks={name: [1.0, 1.0, 1.0] for name in "pqrs"}))
    return evaluate_args(w), [str(_ds(w) / "landmarksTr/c1.json")]


@_case("evaluate", "labels hold a non-number")
def _(w: Path):
    _edit_json(_ds(w) / "dataset.json", lambda content: content["labels"].update(a="one"))
    return evaluate_args(w), [str(_ds(w) / "dataset.json"), "'a'"]


@_case("evaluate", "extra predictions without reference", outcome="accepted")
def _(w: Path):
    shutil.copy(w / "prediction/c0.nii.gz", w / "prediction/extra.nii.gz")
    return evaluate_args(w), []


# demo (only what fails before its training)


@_case("demo", "landmark threshold above 1", status=2)
def _(w: Path):
    return ["--landmark-threshold", "1.5"], ["--landmark-threshold", "1.5"]


@_case("demo", "work folder is a file")
def _(w: Path):
    _write(w / "demo_work", "a file")
    return ["--work-dir", str(w / "demo_work")], [str(w / "demo_work")]


# ---------------------------------------------------------------------------------------------------------- runs
def _files(root: Path) -> dict[str, float | None]:
    """Every path under ``root`` (hidden ones too), with the modification time of files (folders: ``None``)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.stat().st_mtime for path in sorted(root.rglob("*"))
    }


def _run(tool: str, arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    main = importlib.import_module(MODULES[tool]).main
    environment = dict(os.environ)
    try:
        status = main(arguments)
    except SystemExit as exit_info:  # argparse: bad arguments
        status = exit_info.code if isinstance(exit_info.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(environment)  # predict registers our trainers in nnUNet_extTrainer
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[f"{case.tool}: {case.name}" for case in CASES])
def test_bad_input(case: BadInput, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments, names = case.make(workspace)
    before = _files(workspace)
    status, out, err = _run(case.tool, arguments, capsys)
    text = out + err
    assert status == case.status, text[-3000:]
    assert "Traceback" not in text
    for name in names:
        assert name in text, f"{name!r} not in the message:\n{text[-3000:]}"
    if case.outcome == "error":
        # One message: argparse's usage + error line, or ours (a validation report lists each problem below it).
        assert f"{PROGS[case.tool]}: error:" in err, err
        assert _files(workspace) == before, "an error left or changed files"
    elif case.outcome == "warning":
        assert "warning" in text.lower()


def test_the_valid_workspace_passes(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The inputs the cases break are valid: each tool (but predict, which needs a trained model) succeeds."""
    for tool, arguments in (("convert", convert_args(workspace)), ("merge", merge_args(workspace)),
                            ("pseudo_labels", pseudo_args(workspace)), ("gaze", gaze_args(workspace)),
                            ("evaluate", evaluate_args(workspace))):
        status, out, err = _run(tool, arguments, capsys)
        assert status == 0, f"{tool}: {out[-2000:]}{err[-2000:]}"
    assert "segmentation" in json.loads((workspace / "eval_out/summary.json").read_text())  # replaced
    hidden = [path for path in workspace.rglob(".*") if ".tmp-" in path.name or ".old-" in path.name]
    assert hidden == []
    umask = os.umask(0)
    os.umask(umask)
    for written in ("out_raw/Dataset004_New", "raw/Dataset005_Merged", "pseudo_out", "gaze_raw/Dataset007_G"):
        # The user's umask, as nnU-Net's own outputs (not mkdtemp's 0700).
        assert stat.S_IMODE((workspace / written).stat().st_mode) == 0o777 & ~umask, written


def test_catalogue_counts() -> None:
    """At least one case per tool; the counts quoted in the README's reliability section."""
    counts = {outcome: sum(case.outcome == outcome for case in CASES) for outcome in ("error", "warning", "accepted")}
    assert {case.tool for case in CASES} >= set(MODULES)
    assert sum(counts.values()) == len(CASES) >= 90 - len(TRAIN_CASES)


# ----------------------------------------------------------------------------------- train: what trainers read
# Trainers read the landmark block of dataset.json when they start (LandmarkSpec.from_dataset_json); a bad block
# must fail there, naming the file and the field, before any preprocessing or GPU time.
TRAIN_CASES: dict[str, tuple[Callable[[dict], None], list[str]]] = {
    "landmark names not a list": (lambda content: content["landmarks"].update(names="p"), ["names"]),
    "duplicate landmark names": (lambda content: content["landmarks"].update(names=["p", "p"]), ["names", "'p'"]),
    "bridge to an unknown label": (lambda content: content["landmarks"].update(bridge={"p": ["liver"]}), ["liver"]),
    "unknown key in the block": (lambda content: content["landmarks"].update(sigma=3), ["sigma"]),
    "negative sigma": (lambda content: content["landmarks"].update(sigma_mm=-1), ["sigma_mm", "-1"]),
}


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_bad_landmark_block_fails_before_training(name: str, base: Path, tmp_path: Path) -> None:
    from nnunet_babloss.core.landmarks.spec import LandmarkSpec

    change, names = TRAIN_CASES[name]
    path = tmp_path / "dataset.json"
    shutil.copy(base / "raw" / DATASET / "dataset.json", path)
    _edit_json(path, change)
    with pytest.raises(ValueError) as caught:
        LandmarkSpec.from_dataset_json(path)
    message = str(caught.value)
    assert str(path) in message and all(text in message for text in names), message


# ------------------------------------------------------------------------------------------ real processes, kills
REAL_PROCESS_CASES = ["convert: NaN or infinite pixels", "merge: different channel names",
                      "pseudo_labels: no ignore label", "gaze: binary gaze CSV", "predict: input folder empty",
                      "evaluate: dataset.json not JSON"]


@pytest.mark.parametrize("case_id", REAL_PROCESS_CASES)
def test_a_real_process_exits_cleanly(case_id: str, workspace: Path) -> None:
    case = next(case for case in CASES if f"{case.tool}: {case.name}" == case_id)
    arguments, names = case.make(workspace)
    completed = subprocess.run([sys.executable, "-m", MODULES[case.tool], *arguments], capture_output=True,
                               text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert lines[0].startswith(f"{PROGS[case.tool]}: error:"), completed.stderr
    assert all(name in completed.stderr for name in names)
    with_traceback = subprocess.run([sys.executable, "-m", MODULES[case.tool], *arguments], capture_output=True,
                                    text=True, timeout=120,
                                    env={**os.environ, "OMP_NUM_THREADS": "1", "NNUNET_BABLOSS_TRACEBACK": "1"})
    assert with_traceback.returncode == 1 and "Traceback" in with_traceback.stderr


# The tool runs with one step slowed down (so that it is surely mid-run when the signal comes).
_SLOW = {
    "pseudo_labels": ("pseudo_labels.pipeline", "segment_organ"),
    "evaluate": ("nnunet_babloss.core.evaluation", "_evaluate_landmarks"),
    "convert": ("dataset_conversion.convert", "_convert_case"),
    "gaze": ("pseudo_labels.gaze.pipeline", "_image_like"),
}
_SLOW_RUNNER = """
import importlib, sys, time
module_name, function_name, tool_module = sys.argv[1:4]
module = importlib.import_module(module_name)
original = getattr(module, function_name)
def slow(*args, **kwargs):
    print("STARTED", flush=True)
    time.sleep(60)
    return original(*args, **kwargs)
setattr(module, function_name, slow)
sys.argv = [tool_module, *sys.argv[4:]]
raise SystemExit(importlib.import_module(tool_module).main())
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("tool", list(_SLOW))
def test_a_killed_run_leaves_nothing(tool: str, signal_number: int, workspace: Path) -> None:
    arguments = {"pseudo_labels": pseudo_args, "evaluate": evaluate_args, "convert": convert_args,
                 "gaze": gaze_args}[tool](workspace)
    before = _files(workspace)  # evaluate: with an earlier run's results, which must survive unchanged
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUNNER, *_SLOW[tool], MODULES[tool], *arguments], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a suite started in the background (nohup, `&`) hands its children SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the tool the default disposition a user's terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "STARTED" not in process.stdout.readline():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()  # type: ignore
        process.send_signal(signal_number)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal_number, err
    assert "Traceback" not in err and f"{PROGS[tool]}: interrupted" in err, err
    assert _files(workspace) == before, "a killed run left or changed files"
