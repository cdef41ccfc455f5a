"""Specification of the dataset.json "landmarks" block: parsing, round trip, permutations and every validation rule."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_babloss.core.landmarks.spec import (
    LandmarkSpec,
    LandmarkSpecError,
    has_landmarks_block,
    label_looks_sided,
    landmark_name_problem,
)

LABELS = {"background": 0, "right lung": 1, "left lung": 2, "heart": 3, "lungs": [1, 2], "ignore": 4}


def _dataset_json(**block_overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "names": ["R_apex", "L_apex", "heart_tip"],
        "mirror_pairs": [["R_apex", "L_apex"]],
        "bridge": {"R_apex": ["right lung"], "heart_tip": ["heart", "lungs"]},
        "sigma_mm": 1.5,
        "boundary_range_mm": 4.0,
    }
    block.update(block_overrides)
    return {"channel_names": {"0": "xray"}, "labels": dict(LABELS), "landmarks": block}


def test_reads_every_field() -> None:
    spec = LandmarkSpec.from_dataset_json(_dataset_json())
    assert spec.names == ("R_apex", "L_apex", "heart_tip")
    assert spec.num_landmarks == 3
    assert spec.mirror_pairs == (("R_apex", "L_apex"),)
    assert spec.bridge_map() == {"R_apex": ("right lung",), "heart_tip": ("heart", "lungs")}
    assert (spec.sigma_mm, spec.boundary_range_mm) == (1.5, 4.0)
    assert [spec.index(name) for name in spec.names] == [0, 1, 2]
    assert spec.mirror_permutation() == (1, 0, 2)


def test_optional_fields_take_the_defaults() -> None:
    spec = LandmarkSpec.from_dataset_json({"landmarks": {"names": ["a"]}})
    assert spec == LandmarkSpec(names=("a",))
    assert (spec.mirror_pairs, spec.bridge, spec.sigma_mm, spec.boundary_range_mm) == ((), (), 2.0, 5.0)
    assert spec.mirror_permutation() == (0,)


def test_reads_from_a_path_and_is_hashable(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(_dataset_json()), encoding="utf-8")
    from_path = LandmarkSpec.from_dataset_json(path)
    assert from_path == LandmarkSpec.from_dataset_json(str(path)) == LandmarkSpec.from_dataset_json(_dataset_json())
    assert hash(from_path) == hash(LandmarkSpec.from_dataset_json(_dataset_json()))


def test_constructor_normalises_lists_to_tuples() -> None:
    spec = LandmarkSpec(
        names=["a", "b"], mirror_pairs=[["a", "b"]], bridge=[["a", ["x"]]], sigma_mm=3  # type: ignore[arg-type]
    )
    assert spec.names == ("a", "b") and spec.mirror_pairs == (("a", "b"),) and spec.bridge == (("a", ("x",)),)
    assert isinstance(spec.sigma_mm, float)
    assert LandmarkSpec(names=("a",), bridge={"a": ["x", "y"]}).bridge == (("a", ("x", "y")),)  # type: ignore[arg-type]
    hash(spec)  # only possible when every field is a tuple


@st.composite
def _specs(draw: st.DrawFn) -> LandmarkSpec:
    names = draw(st.lists(st.text(min_size=1, max_size=8).filter(lambda n: landmark_name_problem(n) is None),
                          min_size=1, max_size=8, unique=True))
    shuffled = draw(st.permutations(names))
    num_pairs = draw(st.integers(0, len(names) // 2))
    pairs = tuple((shuffled[2 * i], shuffled[2 * i + 1]) for i in range(num_pairs))
    bridged = draw(st.lists(st.sampled_from(names), unique=True))
    labels = ("background", "right lung", "left lung", "heart", "lungs")
    bridge = tuple((name, tuple(draw(st.lists(st.sampled_from(labels), min_size=1, unique=True)))) for name in bridged)
    positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)
    label_pairs = (("right lung", "left lung"),) if draw(st.booleans()) else ()
    return LandmarkSpec(names, pairs, bridge, draw(positive), draw(positive), label_pairs)


@settings(max_examples=60, deadline=None)
@given(spec=_specs())
def test_json_block_round_trip_is_identity(spec: LandmarkSpec) -> None:
    # through real JSON text, as nnU-Net copies dataset.json
    dataset_json = json.loads(json.dumps({"labels": LABELS, "landmarks": spec.to_json_block()}))
    assert LandmarkSpec.from_dataset_json(dataset_json) == spec


@settings(max_examples=60, deadline=None)
@given(spec=_specs())
def test_mirror_permutation_swaps_pairs_and_is_an_involution(spec: LandmarkSpec) -> None:
    permutation = spec.mirror_permutation()
    assert sorted(permutation) == list(range(spec.num_landmarks))
    assert tuple(permutation[k] for k in permutation) == tuple(range(spec.num_landmarks))
    partner = {a: b for pair in spec.mirror_pairs for a, b in (pair, pair[::-1])}
    for k, name in enumerate(spec.names):
        assert spec.names[permutation[k]] == partner.get(name, name)


def test_missing_block_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LandmarkSpecError, match=r"^dataset\.json: no 'landmarks' block; .*\"names\""):
        LandmarkSpec.from_dataset_json({"labels": LABELS})
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    with pytest.raises(LandmarkSpecError, match="no 'landmarks' block") as caught:
        LandmarkSpec.from_dataset_json(path)
    assert str(caught.value).startswith(str(path))


def test_has_landmarks_block(tmp_path: Path) -> None:
    assert has_landmarks_block(_dataset_json())
    assert not has_landmarks_block({"labels": LABELS})
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"landmarks": {"names": ["a"]}}), encoding="utf-8")
    assert has_landmarks_block(path)


def test_missing_and_invalid_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        LandmarkSpec.from_dataset_json(tmp_path / "nowhere.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(LandmarkSpecError, match="broken.json: not valid JSON"):
        LandmarkSpec.from_dataset_json(broken)
    array = tmp_path / "array.json"
    array.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(LandmarkSpecError, match="array.json: must hold a JSON object"):
        has_landmarks_block(array)


# (block fields to override, field the message must name, other text it must contain)
INVALID_BLOCKS = [
    ({"names": []}, "landmarks.names", "at least one landmark"),
    ({"names": "R_apex"}, "landmarks.names", "must be a list"),
    ({"names": ["a", "", "b"], "mirror_pairs": [], "bridge": {}}, "landmarks.names[1]", "empty, got ''"),
    ({"names": ["a", " b"], "mirror_pairs": [], "bridge": {}}, "landmarks.names[1]", "whitespace, got ' b'"),
    ({"names": ["a", "b\nc"], "mirror_pairs": [], "bridge": {}}, "landmarks.names[1]", "printable"),
    ({"names": ["a", 7], "mirror_pairs": [], "bridge": {}}, "landmarks.names[1]", "string, got int"),
    ({"names": ["a", "b", "a"], "mirror_pairs": [], "bridge": {}}, "landmarks.names[2]", "duplicate landmark name 'a'"),
    ({"mirror_pairs": [["R_apex", "nose"]]}, "landmarks.mirror_pairs[0]", "unknown landmark 'nose'"),
    ({"mirror_pairs": [["R_apex", "L_apex"], ["heart_tip", "L_apex"]]}, "landmarks.mirror_pairs[1]",
     "'L_apex' is already paired in mirror_pairs[0]"),
    ({"mirror_pairs": [["heart_tip", "heart_tip"]]}, "landmarks.mirror_pairs[0]", "with itself"),
    ({"mirror_pairs": [["R_apex", "L_apex", "heart_tip"]]}, "landmarks.mirror_pairs[0]", "pair [left, right]"),
    ({"mirror_pairs": {"R_apex": "L_apex"}}, "landmarks.mirror_pairs", "must be a list"),
    ({"bridge": {"nose": ["heart"]}}, "landmarks.bridge['nose']", "unknown landmark 'nose'"),
    ({"bridge": {"heart_tip": ["spleen"]}}, "landmarks.bridge['heart_tip']", "unknown label 'spleen'"),
    ({"bridge": {"heart_tip": ["ignore"]}}, "landmarks.bridge['heart_tip']", "'ignore' label"),
    ({"bridge": {"heart_tip": []}}, "landmarks.bridge['heart_tip']", "non-empty list"),
    ({"bridge": {"heart_tip": "heart"}}, "landmarks.bridge['heart_tip']", "list of label names, got 'heart'"),
    ({"bridge": {"heart_tip": ["heart", "heart"]}}, "landmarks.bridge['heart_tip']", "twice"),
    ({"bridge": [["heart_tip", ["heart"]]]}, "landmarks.bridge", "must be an object"),
    ({"sigma_mm": 0}, "landmarks.sigma_mm", "> 0 (mm), got 0"),
    ({"sigma_mm": -2.0}, "landmarks.sigma_mm", "got -2.0"),
    ({"sigma_mm": math.inf}, "landmarks.sigma_mm", "finite"),
    ({"sigma_mm": math.nan}, "landmarks.sigma_mm", "got nan"),
    ({"sigma_mm": "2"}, "landmarks.sigma_mm", "got '2'"),
    ({"sigma_mm": True}, "landmarks.sigma_mm", "got True"),
    ({"boundary_range_mm": 0.0}, "landmarks.boundary_range_mm", "got 0.0"),
    ({"sigma": 2.0}, "landmarks", "unknown key(s) ['sigma']"),
    ({"label_mirror_pairs": [["right lung", "spleen"]]}, "landmarks.label_mirror_pairs[0]", "unknown label 'spleen'"),
    ({"label_mirror_pairs": [["right lung", "ignore"]]}, "landmarks.label_mirror_pairs[0]", "'ignore' label"),
    ({"label_mirror_pairs": [["lungs", "heart"]]}, "landmarks.label_mirror_pairs[0]", "single integer value"),
    ({"label_mirror_pairs": [["heart", "heart"]]}, "landmarks.label_mirror_pairs[0]", "with itself"),
    ({"label_mirror_pairs": [["right lung", "left lung"], ["heart", "left lung"]]}, "landmarks.label_mirror_pairs[1]",
     "'left lung' is already paired in label_mirror_pairs[0]"),
    ({"label_mirror_pairs": [["right lung", "left lung", "heart"]]}, "landmarks.label_mirror_pairs[0]",
     "pair [left, right] of label names"),
    ({"label_mirror_pairs": [["right lung", 1]]}, "landmarks.label_mirror_pairs[0]", "non-empty strings, got 1"),
    ({"label_mirror_pairs": {"right lung": "left lung"}}, "landmarks.label_mirror_pairs", "must be a list"),
]


@pytest.mark.parametrize("as_path", [False, True], ids=["mapping", "path"])
@pytest.mark.parametrize(("overrides", "field", "problem"), INVALID_BLOCKS)
def test_each_invalid_block_is_reported_with_file_field_and_value(
    overrides: dict[str, Any], field: str, problem: str, as_path: bool, tmp_path: Path
) -> None:
    dataset_json = _dataset_json(**overrides)
    source: Any = dataset_json
    expected_source = "dataset.json"
    if as_path:
        if any(isinstance(v, float) and not math.isfinite(v) for v in overrides.values()):
            pytest.skip("JSON text cannot hold NaN/inf portably")
        source = tmp_path / "Dataset001" / "dataset.json"
        source.parent.mkdir()
        source.write_text(json.dumps(dataset_json), encoding="utf-8")
        expected_source = str(source)
    with pytest.raises(LandmarkSpecError) as caught:
        LandmarkSpec.from_dataset_json(source)
    message = str(caught.value)
    assert message.startswith(f"{expected_source}: {field}"), message
    assert problem in message, message


def test_block_must_be_an_object_and_names_are_required() -> None:
    with pytest.raises(LandmarkSpecError, match=r"dataset\.json: landmarks: must be an object, got list"):
        LandmarkSpec.from_dataset_json({"landmarks": ["a"]})
    with pytest.raises(LandmarkSpecError, match=r"dataset\.json: landmarks\.names: missing"):
        LandmarkSpec.from_dataset_json({"landmarks": {"sigma_mm": 2.0}})


def test_bridge_needs_a_labels_object() -> None:
    dataset_json = _dataset_json()
    del dataset_json["labels"]
    with pytest.raises(LandmarkSpecError, match=r"dataset\.json: labels: .*needs a 'labels' object"):
        LandmarkSpec.from_dataset_json(dataset_json)
    no_bridge = _dataset_json(bridge={})
    del no_bridge["labels"]
    assert LandmarkSpec.from_dataset_json(no_bridge).bridge == ()


def test_region_labels_can_be_bridged() -> None:
    # "lungs": [1, 2] is a region (nnU-Net region-based training); bridging refers to its name
    spec = LandmarkSpec.from_dataset_json(_dataset_json(bridge={"heart_tip": ["lungs"]}))
    assert spec.bridge_map() == {"heart_tip": ("lungs",)}


def test_reading_does_not_modify_the_mapping() -> None:
    dataset_json = _dataset_json()
    before = copy.deepcopy(dataset_json)
    LandmarkSpec.from_dataset_json(dataset_json)
    assert dataset_json == before


def test_constructor_validates_too() -> None:
    with pytest.raises(LandmarkSpecError, match=r"^LandmarkSpec: names\[1\]: duplicate landmark name 'a'"):
        LandmarkSpec(names=("a", "a"))
    with pytest.raises(LandmarkSpecError, match=r"^LandmarkSpec: mirror_pairs\[0\]: unknown landmark 'c'"):
        LandmarkSpec(names=("a", "b"), mirror_pairs=(("a", "c"),))
    with pytest.raises(LandmarkSpecError, match=r"^LandmarkSpec: sigma_mm: .*got -1"):
        LandmarkSpec(names=("a",), sigma_mm=-1)
    with pytest.raises(LandmarkSpecError, match=r"^LandmarkSpec: names: must be a sequence"):
        LandmarkSpec(names="ab")  # type: ignore[arg-type]


def test_unknown_name_lookup_lists_the_known_names() -> None:
    spec = LandmarkSpec(names=("a", "b"))
    with pytest.raises(LandmarkSpecError, match=r"unknown landmark 'z'; known: \['a', 'b'\]"):
        spec.index("z")
    assert issubclass(LandmarkSpecError, ValueError)


# ---------------------------------------------------------------------------------------------------------------
# label_mirror_pairs: sided labels that swap with the landmark pairs (issue 16, item 1)
# ---------------------------------------------------------------------------------------------------------------
def test_label_mirror_pairs_are_read_and_give_label_values() -> None:
    spec = LandmarkSpec.from_dataset_json(_dataset_json(label_mirror_pairs=[["right lung", "left lung"]]))
    assert spec.label_mirror_pairs == (("right lung", "left lung"),)
    assert spec.label_value_pairs(LABELS) == ((1, 2),)
    assert [spec.label_partner(label) for label in ("right lung", "left lung", "heart")] == ["left lung", "right lung", "heart"]
    assert LandmarkSpec.from_dataset_json(_dataset_json()).label_mirror_pairs == ()
    with pytest.raises(LandmarkSpecError, match="unknown label 'left lung'"):
        spec.label_value_pairs({"right lung": 1})


def test_label_pairs_need_a_labels_object() -> None:
    dataset_json = _dataset_json(bridge={}, label_mirror_pairs=[["right lung", "left lung"]])
    del dataset_json["labels"]
    with pytest.raises(LandmarkSpecError, match=r"^dataset.json: labels: landmarks.label_mirror_pairs"):
        LandmarkSpec.from_dataset_json(dataset_json)


@pytest.mark.parametrize(
    ("name", "sided"),
    [("right lung", True), ("left_lung", True), ("Lung L", True), ("lung_r", True), ("lt_kidney", True),
     ("leftClavicle", True), ("RightLung", True), ("heart", False), ("vertebra_L1", False), ("bright_spot", False),
     ("ligament", False), ("lungs", False)],
)
def test_sided_looking_labels(name: str, sided: bool) -> None:
    assert label_looks_sided(name) is sided


def test_lateral_flip_problems_name_the_unpaired_sided_labels_and_the_field() -> None:
    labels = ("background", "right lung", "left lung", "heart")
    unpaired = LandmarkSpec.from_dataset_json(_dataset_json(bridge={"R_apex": ["right lung"], "L_apex": ["left lung"]}))
    problems = unpaired.lateral_flip_problems(labels)
    assert len(problems) == 2
    assert "['right lung', 'left lung'] look sided" in problems[0] and "label_mirror_pairs" in problems[0]
    assert "'R_apex' and 'L_apex'" in problems[1] and "label_mirror_pairs" in problems[1]
    paired = dataclasses.replace(unpaired, label_mirror_pairs=(("right lung", "left lung"),))
    assert paired.lateral_flip_problems(labels) == ()


def test_bridges_must_swap_with_their_landmarks() -> None:
    labels = ("background", "right lung", "left lung", "heart")
    pairs = [["right lung", "left lung"]]
    # A partner without a bridge claims nothing; an unsided bridge (heart) is the same on both sides.
    consistent = _dataset_json(bridge={"R_apex": ["right lung"], "heart_tip": ["heart"]}, label_mirror_pairs=pairs)
    assert LandmarkSpec.from_dataset_json(consistent).lateral_flip_problems(labels) == ()
    # Both apices on the right lung, or an unpaired landmark on one lung: a flip moves it to the other lung.
    for bridge, who in (({"R_apex": ["right lung"], "L_apex": ["right lung"]}, "'R_apex' and 'L_apex'"),
                        ({"heart_tip": ["heart", "right lung"]}, "landmark 'heart_tip'")):
        problems = LandmarkSpec.from_dataset_json(_dataset_json(bridge=bridge, label_mirror_pairs=pairs)).lateral_flip_problems(labels)
        assert len(problems) == 1 and who in problems[0], problems


def test_the_spec_reads_the_bridge_for_every_user() -> None:
    labels = {"background": 0, "disc": 1, "bar": 2, "region": [1, 2], "ignore": 3}
    spec = LandmarkSpec(names=("a", "b", "c", "d", "e"), bridge={"a": ["bar"], "b": ["bar"], "c": ["disc"], "e": ["disc", "bar"]})
    # BaBLoss and pre-training: groups of label values, -1 for the unbridged landmark
    assert spec.bridge_groups(labels) == ([(2,), (1,), (1, 2)], [0, 0, 1, -1, 2])
    # pseudo labels: every landmark on each of its labels; DenseSeg: only landmarks on exactly one label
    assert spec.rows_by_bridged_label(labels) == {"disc": (2, 4), "bar": (0, 1, 4)}
    assert spec.rows_by_bridged_label(labels, sole_label_only=True) == {"disc": (2,), "bar": (0, 1)}
    with pytest.raises(LandmarkSpecError, match="region label 'region'"):
        LandmarkSpec(names=("a",), bridge={"a": ["region"]}).bridge_groups(labels)
    with pytest.raises(LandmarkSpecError, match="'lung', which is not in the labels"):
        LandmarkSpec(names=("a",), bridge={"a": ["lung"]}).rows_by_bridged_label(labels)
