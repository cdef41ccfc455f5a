"""Stratified splits: every fold validates on every kind of annotation; folds partition the cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_babloss.core.splits import annotation_kind, stratified_splits


@settings(max_examples=50, deadline=None)
@given(
    counts=st.tuples(st.integers(2, 12), st.integers(2, 12), st.integers(2, 6)),
    num_folds=st.integers(2, 2),
    seed=st.integers(0, 1000),
)
def test_every_fold_sees_every_kind_and_folds_partition_the_cases(counts, num_folds, seed) -> None:
    kinds = {}
    for kind, count in zip(("mask_only", "landmark_only", "both"), counts):
        kinds.update({f"{kind}_{index}": kind for index in range(count)})
    splits = stratified_splits(kinds, num_folds=num_folds, seed=seed)

    assert len(splits) == num_folds
    validation = [case for fold in splits for case in fold["val"]]
    assert sorted(validation) == sorted(kinds)  # each case validated exactly once
    for fold in splits:
        assert set(fold["train"]).isdisjoint(fold["val"])
        assert set(fold["train"]) | set(fold["val"]) == set(kinds)
        # With at least num_folds cases of a kind, every fold validates on that kind.
        assert {kinds[case] for case in fold["val"]} == {"mask_only", "landmark_only", "both"}


def test_split_is_independent_of_mapping_order() -> None:
    kinds = {f"case_{index}": ("mask_only", "landmark_only")[index % 2] for index in range(10)}
    reversed_kinds = dict(reversed(list(kinds.items())))
    assert stratified_splits(kinds, 5, seed=3) == stratified_splits(reversed_kinds, 5, seed=3)


@pytest.mark.parametrize("num_folds", [1, 11])
def test_invalid_fold_counts_are_rejected(num_folds: int) -> None:
    kinds = {f"case_{index}": "both" for index in range(10)}
    with pytest.raises(ValueError, match="num_folds"):
        stratified_splits(kinds, num_folds)


def test_annotation_kind_names_and_rejects_unlabelled_cases() -> None:
    assert annotation_kind(True, True) == "both"
    assert annotation_kind(True, False) == "mask_only"
    assert annotation_kind(False, True) == "landmark_only"
    with pytest.raises(ValueError, match="neither"):
        annotation_kind(False, False)
