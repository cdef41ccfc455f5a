"""Stratified cross-validation splits for partially-labelled datasets.

nnU-Net's default 5-fold split ignores which annotations a case carries, so a fold can end up without any masks
(or any landmarks) and its checkpoint selection breaks. These splits give every fold its share of every kind.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

__all__ = ["ANNOTATION_KINDS", "annotation_kind", "stratified_splits"]

ANNOTATION_KINDS = ("both", "mask_only", "landmark_only")


def annotation_kind(has_mask: bool, has_landmarks: bool) -> str:
    """Name the kind of annotation a case has.

    Raises:
        ValueError: for a case with neither a mask nor landmarks (it cannot be trained on).
    """
    if has_mask and has_landmarks:
        return "both"
    if has_mask:
        return "mask_only"
    if has_landmarks:
        return "landmark_only"
    raise ValueError("a training case needs a mask, landmarks, or both; this one has neither")


def stratified_splits(case_kinds: Mapping[str, str], num_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """Split cases into ``num_folds`` folds so that each fold's validation set holds every kind in proportion.

    Args:
        case_kinds: case identifier -> kind (one of :data:`ANNOTATION_KINDS` or any other label to stratify on).
        num_folds: number of folds (>= 2, and at most the number of cases).
        seed: seed of the shuffle inside each kind; the result is independent of the mapping's order.

    Returns:
        ``[{"train": [...], "val": [...]}, ...]`` in nnU-Net's ``splits_final.json`` layout, lists sorted.

    Raises:
        ValueError: if ``num_folds`` is < 2 or larger than the number of cases.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    if num_folds > len(case_kinds):
        raise ValueError(f"num_folds ({num_folds}) exceeds the number of cases ({len(case_kinds)})")
    rng = random.Random(seed)
    validation: list[list[str]] = [[] for _ in range(num_folds)]
    offset = 0
    for kind in sorted(set(case_kinds.values())):
        cases = sorted(case for case, case_kind in case_kinds.items() if case_kind == kind)
        rng.shuffle(cases)
        for position, case in enumerate(cases):
            # Continue the round robin across kinds so small kinds do not all land in fold 0.
            validation[(offset + position) % num_folds].append(case)
        offset += len(cases)
    all_cases = sorted(case_kinds)
    return [
        {"train": [case for case in all_cases if case not in set(fold)], "val": sorted(fold)} for fold in validation
    ]
