"""Masks in, nnU-Net label maps out: exclusive label maps, bit flags, binary masks, and overlapping structures.

nnU-Net trains on one integer label map per case whose values are consecutive (``0, 1, ..., N``, then the
``ignore`` label ``N + 1``). Inputs come in three shapes (:class:`MaskSource` subclasses):

* :class:`LabelMapMasks`: an integer label map with declared values (any values: they are renumbered);
* :class:`BitFlagMasks`: one integer map whose bits flag structures that may overlap (JSRT ``labels_bits``);
* :class:`BinaryMaskFolders`: one binary mask per structure, each in its own folder (the SCR layout).

Overlapping structures (the clavicles lie over the lungs in chest X-rays) are encoded by :class:`LabelEncoding`
in one of two ways:

* ``"priority"``: an exclusive map; structures are painted in a priority order, later ones win (the lung under a
  clavicle becomes clavicle). Label values follow the declaration order of the structures.
* ``"regions"``: nnU-Net's region-based training. Each pixel's value is the bit code of the *set* of structures
  covering it (structure ``i`` has bit ``2**i``, so a right lung + right clavicle pixel is ``1 + 8 = 9``); each
  structure is the region ``[all codes containing its bit]`` in ``dataset.json["labels"]``, and
  ``regions_class_order`` lists each structure's own bit (what nnU-Net writes into exported predictions, later
  regions winning). Nothing is lost in training; the ignore label is ``2**S`` (the highest value, as nnU-Net
  requires), which nnU-Net's ``LabelManager`` accepts together with regions.

The default ``"error"`` refuses overlapping input and names the file, the structures and how many pixels overlap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from dataset_conversion.images import find_case_file, geometry_mismatch, list_case_files
from dataset_conversion.validation import ValidationReport

__all__ = [
    "IGNORE_LABEL_NAME",
    "MAX_REGION_STRUCTURES",
    "BinaryMaskFolders",
    "BitFlagMasks",
    "LabelEncoding",
    "LabelMapMasks",
    "LoadedMask",
    "MaskSource",
    "OverlapMode",
    "label_dtype",
]

IGNORE_LABEL_NAME = "ignore"
OverlapMode = Literal["error", "priority", "regions"]
_OVERLAP_MODES = ("error", "priority", "regions")
MAX_REGION_STRUCTURES = 15
"""Region codes of ``S`` structures go up to ``2**S``; 15 keeps them in uint16."""
_RESERVED_NAMES = ("background", IGNORE_LABEL_NAME)


def label_dtype(max_value: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned dtype holding ``0..max_value``."""
    return np.uint8 if max_value <= np.iinfo(np.uint8).max else np.uint16


def _check_structure_names(names: Sequence[str], what: str) -> None:
    if not names:
        raise ValueError(f"{what}: at least one structure is needed")
    for name in names:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{what}: structure names must be non-empty strings without outer spaces, got {name!r}")
        if name in _RESERVED_NAMES:
            raise ValueError(f"{what}: {name!r} is reserved by nnU-Net and cannot name a structure")
    duplicated = sorted({name for name in names if list(names).count(name) > 1})
    if duplicated:
        raise ValueError(f"{what}: structure name(s) {duplicated} given twice")


@dataclass(frozen=True)
class LoadedMask:
    """One case's annotation before encoding.

    Attributes:
        image: The (first) mask image; its geometry is checked against the case's image.
        file: The mask file(s), for messages.
        exclusive: ``(*spatial)`` label map with values ``0..S`` in structure order, or ``None``.
        structures: Structure name -> ``(*spatial)`` bool mask (may overlap), or ``None``.
    """

    image: sitk.Image
    file: str
    exclusive: NDArray[np.integer[Any]] | None = None
    structures: Mapping[str, NDArray[np.bool_]] | None = None


class MaskSource(ABC):
    """Per-case masks of one input layout."""

    @property
    @abstractmethod
    def structures(self) -> tuple[str, ...]:
        """Structure names, in label order (label ``i + 1`` of an exclusive map is ``structures[i]``)."""

    @property
    @abstractmethod
    def may_overlap(self) -> bool:
        """Whether this layout can describe overlapping structures."""

    @abstractmethod
    def describe(self) -> str:
        """A short description for provenance and messages."""

    @abstractmethod
    def case_files(self, report: ValidationReport) -> dict[str, str]:
        """Case identifier -> mask file, for every case with a mask."""

    @abstractmethod
    def load(self, case_id: str, report: ValidationReport) -> LoadedMask | None:
        """The mask of ``case_id``, or ``None`` if it is unusable (the problem is in ``report``)."""


def _listed(folder: Path, report: ValidationReport) -> dict[str, str]:
    try:
        return {case_id: str(path) for case_id, path in list_case_files(folder, allow_dicom_folders=False).items()}
    except (FileNotFoundError, ValueError) as error:
        report.error(folder, str(error).removeprefix(f"{folder}: "))
        return {}


def _read_mask(folder: Path, case_id: str, report: ValidationReport) -> tuple[sitk.Image, NDArray[Any], Path] | None:
    try:
        path = find_case_file(folder, case_id)
    except ValueError as error:
        report.error(folder, str(error).removeprefix(f"{folder}: "), case=case_id)
        return None
    if path is None:
        report.error(folder, f"no mask file for case {case_id!r}", case=case_id)
        return None
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        report.error(path, f"cannot read the mask: {str(error).strip().splitlines()[-1]}", case=case_id)
        return None
    if image.GetNumberOfComponentsPerPixel() != 1:
        report.error(path, f"mask has {image.GetNumberOfComponentsPerPixel()} channels; masks must be single-channel",
                     case=case_id)
        return None
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            report.error(path, f"mask has non-integer values (pixel type {image.GetPixelIDTypeAsString()})",
                         case=case_id)
            return None
        array = array.astype(np.int64)
    return image, array, path


def _value_list(values: NDArray[Any], limit: int = 12) -> str:
    shown = [int(value) for value in values[:limit]]
    return f"{shown}{' ...' if len(values) > limit else ''}"


@dataclass
class LabelMapMasks(MaskSource):
    """Integer label maps ``<case><ending>`` in one folder, with declared label values.

    Attributes:
        folder: The folder.
        labels: Structure name -> its value in the files (not 0). Output values are ``1..S`` in this order.
        unlisted: Values that are neither 0 nor listed: ``"error"`` (default) or ``"background"`` (to keep a
            subset of a many-label map).
    """

    folder: Path
    labels: Mapping[str, int]
    unlisted: Literal["error", "background"] = "error"
    _lookup: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        _check_structure_names(list(self.labels), "labels")
        values = list(self.labels.values())
        for name, value in self.labels.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"labels[{name!r}]: the value in the files must be an integer > 0, got {value!r}")
        duplicated = sorted({int(value) for value in values if values.count(value) > 1})
        if duplicated:
            raise ValueError(f"labels: value(s) {duplicated} given to several structures: {dict(self.labels)}")
        if self.unlisted not in ("error", "background"):
            raise ValueError(f"unlisted must be 'error' or 'background', got {self.unlisted!r}")

    @property
    def structures(self) -> tuple[str, ...]:
        return tuple(self.labels)

    @property
    def may_overlap(self) -> bool:
        return False

    def describe(self) -> str:
        return f"label maps in {self.folder} with labels {dict(self.labels)}"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        return _listed(self.folder, report)

    def load(self, case_id: str, report: ValidationReport) -> LoadedMask | None:
        loaded = _read_mask(self.folder, case_id, report)
        if loaded is None:
            return None
        image, array, path = loaded
        found = np.unique(array)
        known = np.array([0, *self.labels.values()])
        unknown = found[~np.isin(found, known)]
        if len(unknown) and self.unlisted == "error":
            report.error(
                path,
                f"unexpected label value(s) {_value_list(unknown)}; declared: {dict(self.labels)} (and 0 = background)",
                case=case_id,
            )
            return None
        output = np.zeros(array.shape, dtype=label_dtype(len(self.labels)))
        for index, value in enumerate(self.labels.values(), start=1):
            output[array == value] = index
        return LoadedMask(image, str(path), exclusive=output)


@dataclass
class BitFlagMasks(MaskSource):
    """Integer maps ``<case><ending>`` whose bits flag (possibly overlapping) structures.

    Attributes:
        folder: The folder.
        bits: Structure name -> its bit value (a power of two), e.g. ``{"right_lung": 1, "heart": 4}``.
    """

    folder: Path
    bits: Mapping[str, int]

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        _check_structure_names(list(self.bits), "bits")
        for name, bit in self.bits.items():
            if isinstance(bit, bool) or not isinstance(bit, (int, np.integer)) or bit <= 0 or bit & (bit - 1):
                raise ValueError(f"bits[{name!r}]: must be a power of two (1, 2, 4, ...), got {bit!r}")
        values = list(self.bits.values())
        if len(set(values)) != len(values):
            raise ValueError(f"bits: a bit is given to several structures: {dict(self.bits)}")

    @property
    def structures(self) -> tuple[str, ...]:
        return tuple(self.bits)

    @property
    def may_overlap(self) -> bool:
        return True

    def describe(self) -> str:
        return f"bit-flag masks in {self.folder} with bits {dict(self.bits)}"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        return _listed(self.folder, report)

    def load(self, case_id: str, report: ValidationReport) -> LoadedMask | None:
        loaded = _read_mask(self.folder, case_id, report)
        if loaded is None:
            return None
        image, array, path = loaded
        all_bits = int(sum(self.bits.values()))
        found = np.unique(array).astype(np.int64)
        unknown = found[(found < 0) | ((found & ~all_bits) != 0)]
        if len(unknown):
            report.error(
                path,
                f"value(s) {_value_list(unknown)} use bits no structure is declared for; declared: {dict(self.bits)}",
                case=case_id,
            )
            return None
        structures = {name: (array & bit) != 0 for name, bit in self.bits.items()}
        return LoadedMask(image, str(path), structures=structures)


@dataclass
class BinaryMaskFolders(MaskSource):
    """One binary mask per structure: ``folders[name]/<case><ending>`` with values {0, 1} (or {0, 255}).

    Attributes:
        folders: Structure name -> folder of its binary masks (structure order = label order).
    """

    folders: Mapping[str, Path]

    def __post_init__(self) -> None:
        _check_structure_names(list(self.folders), "binary masks")
        self.folders = {name: Path(folder) for name, folder in self.folders.items()}

    @property
    def structures(self) -> tuple[str, ...]:
        return tuple(self.folders)

    @property
    def may_overlap(self) -> bool:
        return len(self.folders) > 1

    def describe(self) -> str:
        return f"binary masks {{structure: folder}} {dict((name, str(path)) for name, path in self.folders.items())}"

    def case_files(self, report: ValidationReport) -> dict[str, str]:
        per_folder = {name: _listed(folder, report) for name, folder in self.folders.items()}
        first_name = next(iter(per_folder))
        cases = sorted(set().union(*per_folder.values()))
        result: dict[str, str] = {}
        for case_id in cases:
            lacking = [name for name, files in per_folder.items() if case_id not in files]
            if lacking:
                report.error(
                    self.folders[lacking[0]],
                    f"no mask of structure(s) {lacking} for case {case_id!r} (other structures have one); every "
                    "structure needs a mask for every case with masks",
                    case=case_id,
                )
                continue
            result[case_id] = per_folder[first_name][case_id]
        return result

    def load(self, case_id: str, report: ValidationReport) -> LoadedMask | None:
        structures: dict[str, NDArray[np.bool_]] = {}
        first: tuple[sitk.Image, Path] | None = None
        ok = True
        for name, folder in self.folders.items():
            loaded = _read_mask(folder, case_id, report)
            if loaded is None:
                ok = False
                continue
            image, array, path = loaded
            values = np.unique(array)
            if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
                report.error(
                    path,
                    f"mask of {name!r} is not binary: values {_value_list(values)}; expected {{0, 1}} or {{0, 255}} "
                    "(for a multi-label map use a label-map input instead)",
                    case=case_id,
                )
                ok = False
                continue
            if first is None:
                first = (image, path)
            else:
                mismatch = geometry_mismatch(first[0], image)
                if mismatch:
                    report.error(path, f"geometry differs from {first[1]}: {mismatch}", case=case_id)
                    ok = False
                    continue
            structures[name] = array != 0
        if not ok or first is None:
            return None
        return LoadedMask(first[0], str(first[1]), structures=structures)


@dataclass(frozen=True)
class LabelEncoding:
    """How structures become nnU-Net's label map and the ``labels`` block of ``dataset.json``.

    Attributes:
        structures: Structure names in label order.
        overlap: ``"error"``, ``"priority"`` or ``"regions"`` (see the module docstring).
        priority: Painting order for ``"priority"`` (later wins); default: ``structures``.
    """

    structures: tuple[str, ...]
    overlap: OverlapMode = "error"
    priority: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "structures", tuple(self.structures))
        _check_structure_names(self.structures, "structures")
        if self.overlap not in _OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {list(_OVERLAP_MODES)}, got {self.overlap!r}")
        if self.priority is not None:
            if self.overlap != "priority":
                raise ValueError(f"a priority order applies only with overlap='priority', got overlap={self.overlap!r}")
            priority = tuple(self.priority)
            if sorted(priority) != sorted(self.structures):
                raise ValueError(
                    f"priority must list every structure exactly once: structures {list(self.structures)}, "
                    f"got {list(priority)}"
                )
            object.__setattr__(self, "priority", priority)
        if self.overlap == "regions" and len(self.structures) > MAX_REGION_STRUCTURES:
            raise ValueError(
                f"region-based labels support at most {MAX_REGION_STRUCTURES} structures (codes 2**S), got "
                f"{len(self.structures)}"
            )

    @property
    def uses_regions(self) -> bool:
        """Whether ``dataset.json`` gets region-based labels."""
        return self.overlap == "regions"

    @property
    def ignore_value(self) -> int:
        """The ignore label: one above the highest label value."""
        return 2 ** len(self.structures) if self.uses_regions else len(self.structures) + 1

    @property
    def dtype(self) -> type[np.unsignedinteger[Any]]:
        """Pixel type of the written label maps."""
        return label_dtype(self.ignore_value)

    def labels_json(self, with_ignore: bool) -> dict[str, int | list[int]]:
        """The ``labels`` block of ``dataset.json`` (``ignore`` last, as the highest value)."""
        labels: dict[str, int | list[int]] = {"background": 0}
        if self.uses_regions:
            codes = range(1, 2 ** len(self.structures))
            for index, name in enumerate(self.structures):
                labels[name] = [code for code in codes if code & (1 << index)]
        else:
            for index, name in enumerate(self.structures, start=1):
                labels[name] = index
        if with_ignore:
            labels[IGNORE_LABEL_NAME] = self.ignore_value
        return labels

    def regions_class_order(self) -> list[int] | None:
        """``dataset.json["regions_class_order"]`` for region-based labels (each structure's own bit), else ``None``."""
        if not self.uses_regions:
            return None
        return [1 << index for index in range(len(self.structures))]

    def encode(
        self, mask: LoadedMask, report: ValidationReport, case_id: str
    ) -> NDArray[np.unsignedinteger[Any]] | None:
        """The label map of one case, or ``None`` if it cannot be encoded (overlap with ``overlap="error"``).

        Raises:
            ValueError: ``mask`` names structures this encoding does not know.
        """
        if mask.exclusive is not None:
            if self.uses_regions:
                # An exclusive value v (structure v - 1) is the code with only that structure's bit.
                lookup = np.array([0] + [1 << index for index in range(len(self.structures))], dtype=np.int64)
                return lookup[mask.exclusive].astype(self.dtype)
            return mask.exclusive.astype(self.dtype)
        structures = mask.structures or {}
        unknown = [name for name in structures if name not in self.structures]
        if unknown:
            raise ValueError(f"{mask.file}: structure(s) {unknown} not in the encoding {list(self.structures)}")
        shape = next(iter(structures.values())).shape
        if self.uses_regions:
            codes = np.zeros(shape, dtype=self.dtype)
            for index, name in enumerate(self.structures):
                if name in structures:
                    codes[structures[name]] |= 1 << index
            return codes
        if self.overlap == "error":
            overlaps = self._overlaps(structures)
            if overlaps:
                report.error(
                    mask.file,
                    f"structures overlap ({overlaps}); choose --overlap priority (exclusive labels, later structures "
                    "win) or --overlap regions (nnU-Net region-based labels)",
                    case=case_id,
                )
                return None
        output = np.zeros(shape, dtype=self.dtype)
        value_of = {name: index for index, name in enumerate(self.structures, start=1)}
        for name in self.priority or self.structures:
            if name in structures:
                output[structures[name]] = value_of[name]
        return output

    @staticmethod
    def _overlaps(structures: Mapping[str, NDArray[np.bool_]]) -> str:
        names = list(structures)
        parts = []
        for first_index, first in enumerate(names):
            for second in names[first_index + 1:]:
                count = int(np.count_nonzero(structures[first] & structures[second]))
                if count:
                    parts.append(f"{first} & {second}: {count} pixels")
        return "; ".join(parts)

    def decode_structures(self, label_map: NDArray[Any]) -> dict[str, NDArray[np.bool_]]:
        """Structure masks of an encoded label map (ignore pixels belong to no structure).

        For ``"priority"`` maps a structure covered by a later one is cut there, as it was encoded.
        """
        array = np.asarray(label_map)
        if self.uses_regions:
            valid = array < self.ignore_value
            return {name: valid & ((array & (1 << index)) != 0) for index, name in enumerate(self.structures)}
        return {name: array == index for index, name in enumerate(self.structures, start=1)}
