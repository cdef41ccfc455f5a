"""The landmark specification: the ``"landmarks"`` block of ``dataset.json``, read once into a frozen dataclass.

nnU-Net copies ``dataset.json`` verbatim into its preprocessed and results folders, so this block travels with a
trained model and inference rebuilds the very same :class:`LandmarkSpec` from it::

    "landmarks": {
        "names": ["AC", "PC", "R_MB", "L_MB"],          # required: unique, non-empty, printable
        "mirror_pairs": [["R_MB", "L_MB"]],              # left/right partners swapped by mirroring
        "bridge": {"R_MB": ["midbrain"]},                # landmark -> label names whose boundary it lies on
        "label_mirror_pairs": [["right_lung", "left_lung"]],  # sided labels swapped by mirroring, like mirror_pairs
        "sigma_mm": 2.0,                                 # heatmap Gaussian sigma
        "boundary_range_mm": 5.0                         # BaBLoss boundary-proximity range n
    }

Every field but ``names`` is optional. Label names in ``bridge`` are keys of ``dataset.json["labels"]`` (their
values may be an int or, for region-based training, a list of ints); the ``"ignore"`` label marks unannotated
voxels, has no boundary, and cannot be bridged.

A left-right flip turns a right lung into something that looks like a left lung. ``mirror_pairs`` say how the
landmarks swap; ``label_mirror_pairs`` say how the label values of sided structures swap under the same flip, so that
every landmark still lies on the boundary of its bridged label. Its entries are keys of ``dataset.json["labels"]``
with a single integer value (not ``"ignore"``, not region lists), each in at most one pair.
:meth:`LandmarkSpec.lateral_flip_problems` lists what would make a flip inconsistent (sided-looking labels without a
pair, bridges that do not swap with their landmarks); the trainers switch left-right flips off when it is not empty.

Landmark names must be non-empty printable strings (``str.isprintable``: no control characters, tabs or line
breaks) without leading or trailing whitespace, so that they survive every landmark file format unchanged.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_babloss.core.provenance import JsonFileError, read_json_object

__all__ = [
    "DATASET_JSON_KEY",
    "LandmarkSpec",
    "LandmarkSpecError",
    "has_landmarks_block",
    "label_looks_sided",
    "landmark_name_problem",
]

DATASET_JSON_KEY = "landmarks"
"""The key of the landmark block in ``dataset.json``."""

_BLOCK_FIELDS = ("names", "mirror_pairs", "bridge", "label_mirror_pairs", "sigma_mm", "boundary_range_mm")
# nnU-Net's label for unannotated voxels: it is not a structure and has no boundary to bridge to.
_IGNORE_LABEL = "ignore"
# What error messages call a dataset.json given as an in-memory mapping.
_MAPPING_SOURCE = "dataset.json"
# Short tokens of a label name that give it a side ("lung_r", "Lung L", "lt_kidney"); see label_looks_sided.
_SIDE_TOKENS = frozenset({"l", "r", "lt", "rt"})


class LandmarkSpecError(ValueError):
    """An invalid landmark specification; the message names the file, the field and the offending value."""


def landmark_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid landmark name, or ``None`` if it is valid.

    Valid names are non-empty printable strings without leading/trailing whitespace (see the module docstring).
    """
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if name != name.strip():
        return "must not start or end with whitespace"
    if not name.isprintable():
        return "must be printable (no control characters, tabs or line breaks)"
    return None


def _is_real_number(value: object) -> bool:
    """True for ints and floats, False for bools (which Python counts as ints) and everything else."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def label_looks_sided(name: str) -> bool:
    """Whether a label name says it is the left or right one of a pair (a heuristic on its words).

    The name is split into tokens at characters other than letters and digits; a token ``l``/``r``/``lt``/``rt``
    (any case), or a word of a token (split at lower-to-upper case changes) that starts with ``left``/``right``, makes
    the label sided. ``L1`` (a vertebra) or ``bright_spot`` do not.

    Example:
        >>> [label_looks_sided(n) for n in ("right_lung", "Lung L", "leftClavicle", "heart", "vertebra_L1")]
        [True, True, True, False, False]
    """
    for token in re.split(r"[^A-Za-z0-9]+", name):
        if token.lower() in _SIDE_TOKENS:
            return True
        for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token):
            if word.lower().startswith(("left", "right")):
                return True
    return False


def _check_fields(
    *,
    names: Sequence[Any],
    mirror_pairs: Sequence[Any],
    bridge: Sequence[tuple[Any, Any]],
    label_mirror_pairs: Sequence[Any],
    sigma_mm: Any,
    boundary_range_mm: Any,
    source: str,
    prefix: str,
) -> None:
    """Check the specification's rules; messages read ``"<source>: <prefix><field>: <rule>, got <value>"``.

    Raises:
        LandmarkSpecError: the first rule broken.
    """

    def fail(field: str, problem: str) -> LandmarkSpecError:
        return LandmarkSpecError(f"{source}: {prefix}{field}: {problem}")

    first_index = _check_names(names, fail)
    _check_mirror_pairs(mirror_pairs, first_index, fail)
    _check_bridge_entries(bridge, first_index, fail)
    _check_label_mirror_pairs(label_mirror_pairs, fail)
    for field, value in (("sigma_mm", sigma_mm), ("boundary_range_mm", boundary_range_mm)):
        if not _is_real_number(value) or not math.isfinite(value) or value <= 0:
            raise fail(field, f"must be a finite number > 0 (mm), got {value!r}")


def _check_names(names: Sequence[Any], fail: Callable[[str, str], LandmarkSpecError]) -> dict[str, int]:
    """Check that ``names`` is a non-empty list of valid, distinct landmark names; return name -> index.

    Raises:
        LandmarkSpecError: (made by ``fail``) the first rule broken.
    """
    if len(names) == 0:
        raise fail("names", "must list at least one landmark, got an empty list")
    first_index: dict[str, int] = {}
    for index, name in enumerate(names):
        problem = landmark_name_problem(name)
        if problem is not None:
            raise fail(f"names[{index}]", f"landmark name {problem}, got {name!r}")
        if name in first_index:
            raise fail(f"names[{index}]", f"duplicate landmark name {name!r} (also names[{first_index[name]}])")
        first_index[name] = index
    return first_index


def _check_mirror_pairs(
    mirror_pairs: Sequence[Any], first_index: Mapping[str, int], fail: Callable[[str, str], LandmarkSpecError]
) -> None:
    """Check that every mirror pair holds two different known landmarks, each landmark in at most one pair.

    Raises:
        LandmarkSpecError: (made by ``fail``) the first rule broken.
    """
    paired_in: dict[str, int] = {}
    for index, pair in enumerate(mirror_pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise fail(f"mirror_pairs[{index}]", f"must be a pair [left, right] of landmark names, got {pair!r}")
        for name in pair:
            if not isinstance(name, str) or name not in first_index:
                raise fail(f"mirror_pairs[{index}]", f"unknown landmark {name!r} (not in names), got {list(pair)!r}")
        if pair[0] == pair[1]:
            raise fail(f"mirror_pairs[{index}]", f"pairs a landmark with itself, got {list(pair)!r}")
        for name in pair:
            if name in paired_in:
                raise fail(
                    f"mirror_pairs[{index}]",
                    f"landmark {name!r} is already paired in mirror_pairs[{paired_in[name]}], got {list(pair)!r}",
                )
            paired_in[name] = index


def _check_bridge_entries(
    bridge: Sequence[tuple[Any, Any]], first_index: Mapping[str, int], fail: Callable[[str, str], LandmarkSpecError]
) -> None:
    """Check that every bridge entry is a known landmark, listed once, with a non-empty list of distinct label names.

    Raises:
        LandmarkSpecError: (made by ``fail``) the first rule broken.
    """
    seen_bridge: set[str] = set()
    for name, labels in bridge:
        field = f"bridge[{name!r}]"
        if not isinstance(name, str) or name not in first_index:
            raise fail(field, f"unknown landmark {name!r} (not in names)")
        if name in seen_bridge:
            raise fail(field, f"landmark {name!r} is listed twice")
        seen_bridge.add(name)
        if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
            raise fail(field, f"must be a non-empty list of label names, got {labels!r}")
        for label in labels:
            if not isinstance(label, str) or not label:
                raise fail(field, f"label names must be non-empty strings, got {label!r} in {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise fail(field, f"lists a label twice, got {list(labels)!r}")


def _check_label_mirror_pairs(
    label_mirror_pairs: Sequence[Any], fail: Callable[[str, str], LandmarkSpecError]
) -> None:
    """Check that every label mirror pair holds two different label names, each label in at most one pair.

    Raises:
        LandmarkSpecError: (made by ``fail``) the first rule broken.
    """
    label_paired_in: dict[str, int] = {}
    for index, pair in enumerate(label_mirror_pairs):
        field = f"label_mirror_pairs[{index}]"
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise fail(field, f"must be a pair [left, right] of label names, got {pair!r}")
        for label in pair:
            if not isinstance(label, str) or not label:
                raise fail(field, f"label names must be non-empty strings, got {label!r} in {list(pair)!r}")
        if pair[0] == pair[1]:
            raise fail(field, f"pairs a label with itself, got {list(pair)!r}")
        for label in pair:
            if label in label_paired_in:
                raise fail(
                    field,
                    f"label {label!r} is already paired in label_mirror_pairs[{label_paired_in[label]}], "
                    f"got {list(pair)!r}",
                )
            label_paired_in[label] = index


def _labels_object(dataset_json: Mapping[str, Any], source: str, field: str) -> Mapping[str, Any]:
    """``dataset_json["labels"]``, which ``landmarks.<field>`` refers to.

    Raises:
        LandmarkSpecError: it is missing or not an object.
    """
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping):
        raise LandmarkSpecError(
            f"{source}: labels: {DATASET_JSON_KEY}.{field} names label(s), so dataset.json needs a 'labels' object "
            f"(label name -> value), got {labels!r}"
        )
    return labels


def _check_bridge_labels(
    bridge: Iterable[tuple[str, Sequence[str]]], dataset_json: Mapping[str, Any], source: str
) -> None:
    """Check that every bridged label is a key of ``dataset_json["labels"]`` (and not the ignore label).

    Raises:
        LandmarkSpecError: ``labels`` is missing/not an object, or a bridged label is unknown or ``"ignore"``.
    """
    bridge = list(bridge)
    if not bridge:
        return
    labels = _labels_object(dataset_json, source, "bridge")
    for name, bridged in bridge:
        for label in bridged:
            if label == _IGNORE_LABEL:
                raise LandmarkSpecError(
                    f"{source}: landmarks.bridge[{name!r}]: the {_IGNORE_LABEL!r} label marks unannotated voxels "
                    f"and has no boundary; bridge to an organ label instead, got {list(bridged)!r}"
                )
            if label not in labels:
                known = [key for key in labels if key != _IGNORE_LABEL]
                raise LandmarkSpecError(
                    f"{source}: landmarks.bridge[{name!r}]: unknown label {label!r} (not a key of 'labels'; known: "
                    f"{known})"
                )


def _check_label_pair_labels(
    label_mirror_pairs: Iterable[Sequence[str]], dataset_json: Mapping[str, Any], source: str
) -> None:
    """Check that every label of ``label_mirror_pairs`` is a key of ``dataset_json["labels"]`` with one int value.

    Raises:
        LandmarkSpecError: ``labels`` is missing/not an object, or a paired label is unknown, ``"ignore"`` or a
            region (a list of values), which has no single value to swap.
    """
    pairs = list(label_mirror_pairs)
    if not pairs:
        return
    labels = _labels_object(dataset_json, source, "label_mirror_pairs")
    known = [key for key in labels if key != _IGNORE_LABEL]
    for index, pair in enumerate(pairs):
        field = f"{source}: {DATASET_JSON_KEY}.label_mirror_pairs[{index}]"
        for label in pair:
            if label == _IGNORE_LABEL:
                raise LandmarkSpecError(
                    f"{field}: the {_IGNORE_LABEL!r} label marks unannotated voxels and has no side, got {list(pair)!r}"
                )
            if label not in labels:
                raise LandmarkSpecError(f"{field}: unknown label {label!r} (not a key of 'labels'; known: {known})")
            value = labels[label]
            if not isinstance(value, int) or isinstance(value, bool):
                raise LandmarkSpecError(
                    f"{field}: label {label!r} must have a single integer value to swap (region-based labels are not "
                    f"supported), got {value!r}"
                )


def _load_dataset_json(dataset_json: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[Mapping[str, Any], str]:
    """Return ``(dataset_json as a mapping, name to use in error messages)``.

    Raises:
        FileNotFoundError: the path does not exist.
        LandmarkSpecError: the file is not JSON or not a JSON object; the argument has an unsupported type.
    """
    if isinstance(dataset_json, Mapping):
        return dataset_json, _MAPPING_SOURCE
    if not isinstance(dataset_json, (str, os.PathLike)):
        raise LandmarkSpecError(
            f"dataset_json must be a mapping or a path to dataset.json, got {type(dataset_json).__name__}"
        )
    path = Path(dataset_json)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset.json not found")
    try:
        content = read_json_object(path)
    except JsonFileError as error:
        raise LandmarkSpecError(str(error)) from None
    return content, str(path)


def has_landmarks_block(dataset_json: Mapping[str, Any] | str | os.PathLike[str]) -> bool:
    """Whether ``dataset.json`` (a mapping or a path) has a ``"landmarks"`` block; its content is not checked.

    Raises:
        FileNotFoundError: the path does not exist.
        LandmarkSpecError: the file is not a JSON object.
    """
    content, _ = _load_dataset_json(dataset_json)
    return DATASET_JSON_KEY in content


@dataclass(frozen=True)
class LandmarkSpec:
    """Which landmarks a dataset has, how they pair under mirroring and which labels they lie on.

    Constructor arguments are validated and normalised to tuples and floats; ``bridge`` may also be given as a
    mapping ``{landmark name: label names}``.

    Attributes:
        names: Landmark names; their order is the channel order of heatmaps and rows of ``(K, D)`` arrays.
        mirror_pairs: ``(left, right)`` name pairs that swap under a left-right flip; each landmark in at most one.
        bridge: ``(landmark name, label names)`` entries: the labels whose boundary the landmark lies on (BaBLoss).
        sigma_mm: Gaussian sigma of the training heatmaps, mm.
        boundary_range_mm: Range ``n`` of the boundary-proximity map (0 at distance >= n), mm.
        label_mirror_pairs: ``(left, right)`` label-name pairs whose values swap under a left-right flip (sided
            structures such as right/left lung); each label in at most one pair. Last, so that positional
            construction of the older fields keeps working.

    Raises:
        LandmarkSpecError: (from the constructor) a rule of the module docstring is broken.

    Example:
        >>> spec = LandmarkSpec(names=("L_eye", "R_eye", "nose"), mirror_pairs=(("L_eye", "R_eye"),))
        >>> spec.mirror_permutation()
        (1, 0, 2)
    """

    names: tuple[str, ...]
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    bridge: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sigma_mm: float = 2.0
    boundary_range_mm: float = 5.0
    label_mirror_pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = self._as_tuple(self.names, "names")
        pairs = tuple(
            tuple(pair) if isinstance(pair, Sequence) and not isinstance(pair, str) else pair
            for pair in self._as_tuple(self.mirror_pairs, "mirror_pairs")
        )
        bridge_entries = (
            tuple(self.bridge.items()) if isinstance(self.bridge, Mapping) else self._as_tuple(self.bridge, "bridge")
        )
        for index, entry in enumerate(bridge_entries):
            if isinstance(entry, str) or not isinstance(entry, Sequence) or len(entry) != 2:
                raise LandmarkSpecError(
                    f"LandmarkSpec: bridge[{index}]: must be a (landmark name, label names) pair, got {entry!r}"
                )
        bridge = tuple(
            (name, tuple(labels) if isinstance(labels, Sequence) and not isinstance(labels, str) else labels)
            for name, labels in bridge_entries
        )
        label_pairs = tuple(
            tuple(pair) if isinstance(pair, Sequence) and not isinstance(pair, str) else pair
            for pair in self._as_tuple(self.label_mirror_pairs, "label_mirror_pairs")
        )
        _check_fields(
            names=names,
            mirror_pairs=pairs,
            bridge=bridge,
            label_mirror_pairs=label_pairs,
            sigma_mm=self.sigma_mm,
            boundary_range_mm=self.boundary_range_mm,
            source="LandmarkSpec",
            prefix="",
        )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "mirror_pairs", pairs)
        object.__setattr__(self, "bridge", bridge)
        object.__setattr__(self, "label_mirror_pairs", label_pairs)
        object.__setattr__(self, "sigma_mm", float(self.sigma_mm))
        object.__setattr__(self, "boundary_range_mm", float(self.boundary_range_mm))

    @staticmethod
    def _as_tuple(value: object, field: str) -> tuple[Any, ...]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise LandmarkSpecError(f"LandmarkSpec: {field}: must be a sequence, got {value!r}")
        return tuple(value)

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks ``K``."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Row/channel index of landmark ``name``.

        Raises:
            LandmarkSpecError: ``name`` is not a landmark of this specification.
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise LandmarkSpecError(f"unknown landmark {name!r}; known: {list(self.names)}") from None

    def mirror_permutation(self) -> tuple[int, ...]:
        """Channel permutation for a left-right flip: ``perm[k]`` is the index of ``k``'s partner (``k`` if unpaired).

        ``heatmaps[:, perm]`` reorders the channels of a flipped prediction; the permutation is its own inverse.
        """
        permutation = list(range(self.num_landmarks))
        for left, right in self.mirror_pairs:
            left_index, right_index = self.index(left), self.index(right)
            permutation[left_index], permutation[right_index] = right_index, left_index
        return tuple(permutation)

    def bridge_map(self) -> dict[str, tuple[str, ...]]:
        """``{landmark name: label names}`` for the bridged landmarks (others are absent)."""
        return dict(self.bridge)

    def _bridged_value(self, landmark: str, label: str, labels: Mapping[str, Any]) -> int:
        """The value of ``label`` in ``labels``, for ``landmark``'s bridge (one integer, or the bridge is unusable)."""
        if label not in labels:
            raise LandmarkSpecError(
                f"labels: landmarks.bridge[{landmark!r}] names label {label!r}, which is not in the labels "
                f"{sorted(labels)}"
            )
        value = labels[label]
        if isinstance(value, bool) or not isinstance(value, int):
            raise LandmarkSpecError(
                f"labels: bridge of landmark {landmark!r} names region label {label!r} = {value!r}; use single labels "
                "(a bridged label must have one integer value to have a boundary in the label map)"
            )
        return value

    def bridge_groups(self, labels: Mapping[str, Any]) -> tuple[list[tuple[int, ...]], list[int]]:
        """Group the landmarks by the set of label values they lie on (BaBLoss and boundary pre-training).

        Args:
            labels: ``dataset.json["labels"]`` (label name -> value).

        Returns:
            ``(group_label_values, landmark_groups)``: the sorted label values of each group (in order of first
            appearance), and each landmark's group index (``-1`` for a landmark without a bridge).

        Raises:
            LandmarkSpecError: a bridged label is not in ``labels`` or is a region (a list of values).
        """
        groups: list[tuple[int, ...]] = []
        landmark_groups = []
        bridge = self.bridge_map()
        for name in self.names:
            if name not in bridge:
                landmark_groups.append(-1)
                continue
            key = tuple(sorted(self._bridged_value(name, label, labels) for label in bridge[name]))
            if key not in groups:
                groups.append(key)
            landmark_groups.append(groups.index(key))
        return groups, landmark_groups

    def rows_by_bridged_label(
        self, labels: Mapping[str, Any], *, sole_label_only: bool = False
    ) -> dict[str, tuple[int, ...]]:
        """The landmark rows lying on each bridged label, labels by ascending value (then name).

        Args:
            labels: ``dataset.json["labels"]`` (label name -> value).
            sole_label_only: count only landmarks bridged to exactly one label (DenseSeg's structures); otherwise a
                landmark counts for each of its labels (the organs pseudo labels segment).

        Returns:
            ``{label name: landmark rows in spec order}``; labels without landmarks are absent.

        Raises:
            LandmarkSpecError: a returned label is not in ``labels`` or is a region (a list of values).
        """
        rows: dict[str, list[int]] = {}
        values: dict[str, int] = {}
        for row, name in enumerate(self.names):
            bridged = dict(self.bridge).get(name, ())
            if sole_label_only and len(bridged) != 1:
                continue
            for label in bridged:
                values[label] = self._bridged_value(name, label, labels)
                rows.setdefault(label, []).append(row)
        return {label: tuple(rows[label]) for label in sorted(rows, key=lambda label: (values[label], label))}

    def label_partner(self, label: str) -> str:
        """The label that ``label`` becomes under a left-right flip (itself when unpaired)."""
        for left, right in self.label_mirror_pairs:
            if label == left:
                return right
            if label == right:
                return left
        return label

    def label_value_pairs(self, labels: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
        """``label_mirror_pairs`` as label values, for swapping them in a label map.

        Args:
            labels: ``dataset.json["labels"]`` (label name -> value).

        Returns:
            ``(left value, right value)`` pairs in the order of ``label_mirror_pairs``.

        Raises:
            LandmarkSpecError: a paired label is not in ``labels``, is ``"ignore"`` or has no single integer value.
        """
        _check_label_pair_labels(self.label_mirror_pairs, {"labels": labels}, "labels")
        return tuple((int(labels[left]), int(labels[right])) for left, right in self.label_mirror_pairs)

    def lateral_flip_problems(self, label_names: Iterable[str]) -> tuple[str, ...]:
        """Why a left-right flip would teach wrong targets even with the pairs declared here (empty: it would not).

        A flip swaps the rows of ``mirror_pairs`` and the values of ``label_mirror_pairs``. It is consistent when
        (1) no sided-looking label (:func:`label_looks_sided`) is left out of ``label_mirror_pairs``, and (2) every
        bridged landmark whose partner (itself when unpaired) is bridged too lies on the partner's labels swapped:
        ``bridge[partner] == {label_partner(l) for l in bridge[landmark]}``. Landmark pairs themselves are not
        checked here (without ``mirror_pairs`` a flip is only safe if no landmark has a side, which names cannot tell).

        Args:
            label_names: The keys of ``dataset.json["labels"]``.

        Returns:
            One sentence per problem, naming the labels or landmarks and the ``dataset.json`` field to fix.
        """
        problems = []
        paired = {label for pair in self.label_mirror_pairs for label in pair}
        unpaired_sided = [
            name for name in label_names if name != _IGNORE_LABEL and name not in paired and label_looks_sided(name)
        ]
        if unpaired_sided:
            problems.append(
                f"label(s) {unpaired_sided} look sided but are not in {DATASET_JSON_KEY}.label_mirror_pairs: a flip "
                "would keep their values while their anatomy changes sides (add e.g. "
                f'"label_mirror_pairs": [["right_lung", "left_lung"]] to the {DATASET_JSON_KEY} block of dataset.json)'
            )
        bridge = self.bridge_map()
        names = self.names
        permutation = self.mirror_permutation()
        for index, name in enumerate(names):
            partner = names[permutation[index]]
            if name not in bridge or partner not in bridge or index > permutation[index]:
                continue
            flipped = {self.label_partner(label) for label in bridge[name]}
            if flipped != set(bridge[partner]):
                who = f"landmark {name!r}" if partner == name else f"landmarks {name!r} and {partner!r}"
                problems.append(
                    f"{who}: bridge[{name!r}] = {list(bridge[name])} becomes {sorted(flipped)} under a flip "
                    f"(label_mirror_pairs {[list(pair) for pair in self.label_mirror_pairs]}), but "
                    f"bridge[{partner!r}] = {list(bridge[partner])}; pair the sided labels in "
                    f"{DATASET_JSON_KEY}.label_mirror_pairs (or correct the bridge) so the landmarks keep their boundaries"
                )
        return tuple(problems)

    def to_json_block(self) -> dict[str, Any]:
        """The ``"landmarks"`` block of ``dataset.json``; :meth:`from_dataset_json` reads it back to an equal spec."""
        return {
            "names": list(self.names),
            "mirror_pairs": [list(pair) for pair in self.mirror_pairs],
            "bridge": {name: list(labels) for name, labels in self.bridge},
            "label_mirror_pairs": [list(pair) for pair in self.label_mirror_pairs],
            "sigma_mm": self.sigma_mm,
            "boundary_range_mm": self.boundary_range_mm,
        }

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping[str, Any] | str | os.PathLike[str]) -> LandmarkSpec:
        """Read the ``"landmarks"`` block of ``dataset.json``.

        Args:
            dataset_json: The parsed ``dataset.json`` or its path.

        Returns:
            The validated specification.

        Raises:
            FileNotFoundError: the path does not exist.
            LandmarkSpecError: no ``"landmarks"`` block, an unknown key, a wrong type, or a broken rule (see the
                module docstring); the message names the file (``"dataset.json"`` for a mapping), the field and
                the value.
        """
        content, source = _load_dataset_json(dataset_json)
        block = _landmarks_block(content, source)

        def field_list(field: str, default: list[Any]) -> list[Any]:
            value = block.get(field, default)
            if not isinstance(value, list):
                raise LandmarkSpecError(
                    f"{source}: {DATASET_JSON_KEY}.{field}: must be a list, got {type(value).__name__}: {value!r}"
                )
            return value

        names = field_list("names", [])
        pairs = field_list("mirror_pairs", [])
        label_pairs = field_list("label_mirror_pairs", [])
        bridge = _bridge_entries(block, source)
        sigma_mm = block.get("sigma_mm", cls.sigma_mm)
        boundary_range_mm = block.get("boundary_range_mm", cls.boundary_range_mm)
        _check_fields(
            names=names,
            mirror_pairs=pairs,
            bridge=bridge,
            label_mirror_pairs=label_pairs,
            sigma_mm=sigma_mm,
            boundary_range_mm=boundary_range_mm,
            source=source,
            prefix=f"{DATASET_JSON_KEY}.",
        )
        _check_bridge_labels(bridge, content, source)
        _check_label_pair_labels(label_pairs, content, source)
        return cls(
            names=tuple(names),
            mirror_pairs=tuple((left, right) for left, right in pairs),
            bridge=tuple((name, tuple(labels)) for name, labels in bridge),
            label_mirror_pairs=tuple((left, right) for left, right in label_pairs),
            sigma_mm=float(sigma_mm),
            boundary_range_mm=float(boundary_range_mm),
        )


def _landmarks_block(content: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The ``"landmarks"`` block of ``dataset.json``, checked to be an object of known keys that lists ``names``.

    Raises:
        LandmarkSpecError: no block, not an object, an unknown key, or no ``names``.
    """
    if DATASET_JSON_KEY not in content:
        raise LandmarkSpecError(
            f"{source}: no {DATASET_JSON_KEY!r} block; a dataset with landmarks declares them as "
            f'"{DATASET_JSON_KEY}": {{"names": ["name1", "name2", ...]}} (optional: mirror_pairs, bridge, '
            "label_mirror_pairs, sigma_mm, boundary_range_mm)"
        )
    block = content[DATASET_JSON_KEY]
    if not isinstance(block, Mapping):
        raise LandmarkSpecError(
            f"{source}: {DATASET_JSON_KEY}: must be an object, got {type(block).__name__}: {block!r}"
        )
    unknown = [key for key in block if key not in _BLOCK_FIELDS]
    if unknown:
        raise LandmarkSpecError(
            f"{source}: {DATASET_JSON_KEY}: unknown key(s) {unknown}; allowed: {list(_BLOCK_FIELDS)}"
        )
    if "names" not in block:
        raise LandmarkSpecError(f"{source}: {DATASET_JSON_KEY}.names: missing (the list of landmark names)")
    return block


def _bridge_entries(block: Mapping[str, Any], source: str) -> list[tuple[Any, Any]]:
    """``(landmark name, label names)`` entries of the block's ``bridge`` object (none without one).

    Raises:
        LandmarkSpecError: ``bridge`` is not an object, or an entry's labels are not a list.
    """
    bridge_block = block.get("bridge", {})
    if not isinstance(bridge_block, Mapping):
        raise LandmarkSpecError(
            f"{source}: {DATASET_JSON_KEY}.bridge: must be an object (landmark name -> [label names]), "
            f"got {type(bridge_block).__name__}: {bridge_block!r}"
        )
    bridge = list(bridge_block.items())
    for name, labels in bridge:
        if not isinstance(labels, list):
            raise LandmarkSpecError(
                f"{source}: {DATASET_JSON_KEY}.bridge[{name!r}]: must be a list of label names, got {labels!r}"
            )
    return bridge
