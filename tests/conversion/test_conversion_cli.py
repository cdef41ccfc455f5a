"""The command line tools and the benchmark dataset recipes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion import cli_convert, cli_merge

REPO_ROOT = Path(__file__).resolve().parents[2]


def _recipes() -> ModuleType:
    """The benchmark script as a module (it is a script, not part of the package)."""
    if "build_datasets" in sys.modules:
        return sys.modules["build_datasets"]
    spec = importlib.util.spec_from_file_location("build_datasets", REPO_ROOT / "benchmarks" / "build_datasets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_datasets"] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("module", [cli_convert, cli_merge])
def test_help_explains_the_options(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--dry-run" in text and "--overwrite" in text and "default" in text


def _convert_args(root: Path, raw: Path, *extra: str) -> list[str]:
    return [
        "-i", str(root / "images"), "--pixel-spacing", "0.5", "--mask-bits", str(root / "masks"),
        "--bits", "a=1", "b=2", "--overlap", "regions", "--landmarks", str(root / "landmarks"),
        "--landmark-format", "labelme", "--bridge", "p=a", "--mirror-pair", "p", "q", "-d", "9", "-n", "Tiny",
        "--raw-folder", str(raw), "--num-folds", "2", "--no-progress", *extra,
    ]


def test_convert_cli_writes_a_dataset(png_dataset: Callable[..., Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = png_dataset()
    assert cli_convert.main(_convert_args(root, tmp_path / "raw", "--dry-run")) == 0
    assert "dry run" in capsys.readouterr().out and not (tmp_path / "raw").exists()
    assert cli_convert.main(_convert_args(root, tmp_path / "raw")) == 0
    dataset = tmp_path / "raw" / "Dataset009_Tiny"
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    assert dataset_json["landmarks"]["mirror_pairs"] == [["p", "q"]]
    assert dataset_json["landmarks"]["bridge"] == {"p": ["a"]}
    assert dataset_json["labels"]["a"] == [1, 3] and dataset_json["regions_class_order"] == [1, 2]
    provenance = json.loads((dataset / "provenance.json").read_text())
    assert provenance["arguments"]["argv"][:2] == ["-i", str(root / "images")]
    # Running again without --overwrite fails with the reason, exit status 1.
    assert cli_convert.main(_convert_args(root, tmp_path / "raw")) == 1
    assert "exists already" in capsys.readouterr().err


def test_convert_cli_reports_every_bad_file(png_dataset: Callable[..., Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = png_dataset()
    (root / "masks" / "c0.png").unlink()
    (root / "landmarks" / "c2.json").unlink()
    assert cli_convert.main(_convert_args(root, tmp_path / "raw")) == 1
    err = capsys.readouterr().err
    assert "2 error(s)" in err and f"{root / 'images' / 'c0.png'}" in err and "has no mask" in err
    assert "no landmark file" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--masks", "m"], "--masks needs the label values"),
        (["--bits", "a=1"], "--bits is given without the mask folder"),
        (["--mask-bits", "m", "--bits", "a"], "--bits: expected NAME=VALUE, got 'a'"),
        (["--masks", "m", "--labels", "a=x"], "the value of 'a' must be an integer"),
        (["--centroid-landmarks", "v=1"], "--centroid-landmarks takes the centroids"),
        (["--landmarks", "l", "--hamedan", "h.json"], "give one landmark source"),
    ],
)
def test_convert_cli_argument_errors(arguments: list[str], message: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_convert.main(["-i", str(tmp_path), "-d", "1", "-n", "X", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_labels_json_reads_totalsegmentator_style_files(shared_data: Path) -> None:
    labels = cli_convert._labels_json(str(shared_data / "totalseg_ct" / "labels.json"))
    assert labels["spleen"] == 1 and labels["vertebrae_T11"] == 33 and len(labels) == 41


def test_convert_cli_totalseg_with_centroid_landmarks(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "totalseg_ct"
    for sub, source in (("images", "example_ct_sm.nii.gz"), ("masks", "example_seg.nii.gz")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "ct.nii.gz").symlink_to(folder / source)
    status = cli_convert.main([
        "-i", str(tmp_path / "images"), "--channel-names", "CT", "--masks", str(tmp_path / "masks"),
        "--labels-json", str(folder / "labels.json"),
        "--centroid-landmarks", "T11=33", "T12=32", "L1=31", "L2=30",
        "--bridge", "T11=vertebrae_T11", "L2=vertebrae_L2", "-d", "8", "-n", "CT",
        "--raw-folder", str(tmp_path / "raw"), "--no-progress",
    ])
    assert status == 0
    dataset_json = json.loads((tmp_path / "raw" / "Dataset008_CT" / "dataset.json").read_text())
    assert dataset_json["landmarks"]["names"] == ["T11", "T12", "L1", "L2"]
    assert dataset_json["channel_names"] == {"0": "CT"}


def test_merge_cli(png_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    for dataset_id, name in ((1, "first"), (2, "second")):
        root = png_dataset(name=name)
        args = _convert_args(root, raw)
        args[args.index("-d") + 1], args[args.index("-n") + 1] = str(dataset_id), name
        assert cli_convert.main(args) == 0
    status = cli_merge.main(["-i", "1", "2", "-d", "3", "-n", "both", "--raw-folder", str(raw), "--num-folds", "2",
                             "--no-progress"])
    assert status == 1 and "--prefix-case-ids" in capsys.readouterr().err
    status = cli_merge.main(["-i", "1", "2", "-d", "3", "-n", "both", "--raw-folder", str(raw), "--num-folds", "2",
                             "--prefix-case-ids", "--no-progress"])
    assert status == 0 and "6 training cases" in capsys.readouterr().out
    sources = json.loads((raw / "Dataset003_both" / "dataset.json").read_text())["sources"]
    assert sources["second_c2"] == {"dataset": "Dataset002_second", "case": "c2"}


def test_recipe_script_help_runs_as_a_script() -> None:
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "build_datasets.py"), "--help"],
                               capture_output=True, text=True, encoding="utf-8", errors="replace", check=True)
    assert "jsrt-hetero" in completed.stdout and "NNUNET_BABLOSS_DATA" in completed.stdout
    assert "--raw-folder" in completed.stdout and "--hamedan-spacing" in completed.stdout


def test_recipe_jsrt_hetero_on_the_fixture(shared_data: Path, tmp_path: Path) -> None:
    recipes = _recipes()
    options = recipes.RecipeOptions(data_root=shared_data, raw_folder=tmp_path, jsrt_folder="jsrt_fixture_256",
                                    num_test=2, num_folds=2, progress=False)
    result = recipes.build_recipe("jsrt-hetero", options)
    assert result.dataset_folder.name == "Dataset504_JSRT_Heterogeneous_JsrtFixture256"
    groups = json.loads((shared_data / "jsrt_512" / "splits.json").read_text())["partial_label_groups"]
    assert len(result.test_cases) == 2 and all(groups[case] == kind for case, kind in result.annotations.items())
    assert result.dataset_json["landmarks"]["mirror_pairs"] == []
    # The same test cases in every JSRT recipe (drawn from the sorted identifiers with the same seed).
    other = recipes.build_recipe("jsrt-landmarks", options)
    assert other.test_cases == result.test_cases
    reference = other.dataset_folder / "referenceTr" / "labels"
    assert len(list(reference.iterdir())) == 6 and set(other.annotations.values()) == {"landmark_only"}
    seg_only = recipes.build_recipe("jsrt-seg", options)
    assert "landmarks" not in seg_only.dataset_json and set(seg_only.annotations.values()) == {"mask_only"}


def test_recipe_hamedan_needs_a_stated_spacing(shared_data: Path, tmp_path: Path) -> None:
    recipes = _recipes()
    options = recipes.RecipeOptions(data_root=shared_data, raw_folder=tmp_path)
    with pytest.raises(ValueError, match="state a nominal one, e.g. --hamedan-spacing 0.1"):
        recipes.build_recipe("hamedan", options)
    assert recipes.main(["hamedan", "--raw-folder", str(tmp_path), "--data-root", str(shared_data)]) == 1


def test_recipe_reports_missing_data(tmp_path: Path) -> None:
    recipes = _recipes()
    options = recipes.RecipeOptions(data_root=tmp_path / "nowhere", raw_folder=tmp_path)
    with pytest.raises(FileNotFoundError, match="NNUNET_BABLOSS_DATA"):
        recipes.build_recipe("jsrt-both", options)


def test_written_2d_images_are_2d(png_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = png_dataset(num_cases=2)
    assert cli_convert.main(_convert_args(root, tmp_path / "raw", "--file-ending", ".mha")) == 0
    image = sitk.ReadImage(str(tmp_path / "raw" / "Dataset009_Tiny" / "imagesTr" / "c0_0000.mha"))
    assert image.GetDimension() == 2 and image.GetSpacing() == (0.5, 0.5)
    assert np.array_equal(sitk.GetArrayFromImage(image).shape, (24, 32))


def test_convert_cli_writes_label_mirror_pairs(png_dataset: Callable[..., Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--label-mirror-pair`` reaches the landmarks block, validated like the rest (issue 16, item 1)."""
    root = png_dataset()
    exclusive = ("--overlap", "priority", "--priority", "a", "b")
    assert cli_convert.main(_convert_args(root, tmp_path / "raw", *exclusive, "--label-mirror-pair", "a", "b")) == 0
    dataset_json = json.loads((tmp_path / "raw" / "Dataset009_Tiny" / "dataset.json").read_text())
    assert dataset_json["landmarks"]["label_mirror_pairs"] == [["a", "b"]]
    # Region labels have no single value to swap: an error naming the field, exit status 1.
    assert cli_convert.main(_convert_args(root, tmp_path / "raw2", "--label-mirror-pair", "a", "b")) == 1
    assert "landmarks.label_mirror_pairs[0]" in capsys.readouterr().err
