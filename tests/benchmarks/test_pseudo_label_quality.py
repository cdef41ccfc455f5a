"""benchmarks/pseudo_label_quality.py on a plain folder of cases, not only the bundled jsrt_512 split."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    """The benchmark script as a module (it is a script, not part of the package)."""
    if "pseudo_label_quality" in sys.modules:
        return sys.modules["pseudo_label_quality"]
    spec = importlib.util.spec_from_file_location(
        "pseudo_label_quality", REPO_ROOT / "benchmarks" / "pseudo_label_quality.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pseudo_label_quality"] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


def _copy_cases(fixture: Path, target: Path, reference: str) -> Path:
    """The fixture's images and landmarks with one kind of reference masks (no dataset_info.json: defaults)."""
    for sub in ("images", "landmarks", reference):
        shutil.copytree(fixture / sub, target / sub)
    return target


def test_plain_folders_with_bit_flags_or_label_maps_are_scored(shared_data: Path, tmp_path: Path) -> None:
    script = _script()
    fixture = shared_data / "jsrt_fixture_256"
    dice: dict[str, dict[str, list[float]]] = {}
    for reference in ("labels_bits", "labels"):
        folder = _copy_cases(fixture, tmp_path / reference, reference)
        output = tmp_path / f"out_{reference}"
        assert script.main([
            "--cases-folder", str(folder), "--strategy", "contour=contour", "--limit", "3", "--output-dir",
            str(output), "--name", "quality", "--no-progress",
        ]) == 0
        results = json.loads((output / "quality.json").read_text(encoding="utf-8"))
        assert results["cases"] == ["JPCLN001", "JPCLN002", "JPCLN003"] and results["reference"] == reference
        assert str(folder) in results["source"] and results["model"] is None  # contour filling needs no model
        assert set(results["pixel_spacing_mm"].values()) == {1.4}  # from each landmark file
        assert str(folder) in (output / "quality.md").read_text(encoding="utf-8")
        dice[reference] = results["dice"]["contour"]
    # Filled landmark polygons match the SCR masks closely (fixture: 0.98-0.99 for lungs and heart).
    for group in ("RL", "LL", "H"):
        assert min(dice["labels_bits"][group]) > 0.95
    # The heart is never painted over, so both kinds of reference give it the same Dice; the lungs lose their
    # clavicle overlap in the exclusive label map.
    assert dice["labels"]["H"] == dice["labels_bits"]["H"]
    assert dice["labels"]["RL"] != dice["labels_bits"]["RL"]


def test_an_incomplete_folder_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    script = _script()
    (tmp_path / "images").mkdir()
    (tmp_path / "landmarks").mkdir()
    with pytest.raises(FileNotFoundError, match="labels_bits/ or labels/"):
        script.plain_folder(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match="no case has"):
        script.plain_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no images/"):
        script.plain_folder(tmp_path / "nowhere")
