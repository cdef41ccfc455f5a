"""One runtime check that the installed nnU-Net lies in the range this package is tested against.

The range is written once, as ``NNUNET_REQUIREMENT`` in ``setup.py``. At runtime it is read from the installed
distribution's metadata (``importlib.metadata.requires("nnunet-babloss")``); running from a source tree that was
never installed, it is read from the ``setup.py`` beside the package instead. Only when neither exists is the check
skipped, with a warning that says so.
"""

from __future__ import annotations

import functools
import re
import warnings
from importlib import metadata
from pathlib import Path

__all__ = ["check_nnunet_version", "parse_version", "supported_nnunet_range"]

DISTRIBUTION = "nnunet-babloss"
_SETUP_PY = Path(__file__).resolve().parent.parent / "setup.py"
_SETUP_REQUIREMENT = re.compile(r"""^NNUNET_REQUIREMENT\s*=\s*["']nnunetv2\s*([^"']*)["']""", re.MULTILINE)
_REQUIREMENT = re.compile(r"^nnunetv2\s*(?P<specifier>[^;]*?)\s*(;.*)?$", re.IGNORECASE)
_CLAUSE = re.compile(r"^(?P<operator>>=|<=|==|!=|>|<)\s*(?P<version>[0-9][0-9A-Za-z.]*)$")
# Lower bounds first, so that the range reads ">=2.8.0,<2.9" whichever order the metadata stores.
_OPERATOR_ORDER = {">=": 0, ">": 0, "<": 1, "<=": 1, "==": 2, "!=": 3}


def parse_version(version: str) -> tuple[int, ...]:
    """Return the leading numeric release parts of ``version`` (``"2.8.1.dev0"`` -> ``(2, 8, 1)``)."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def _declared_specifier() -> tuple[str, str] | None:
    """``(specifier, where)``: the ``nnunetv2`` specifier of the installed metadata, else of ``setup.py``."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requirements = None
    if requirements is not None:
        for requirement in requirements:
            match = _REQUIREMENT.match(requirement.strip())
            if match and "extra" not in (match.group(2) or ""):
                return match.group("specifier"), f"the installed {DISTRIBUTION} metadata"
    if _SETUP_PY.is_file():
        match = _SETUP_REQUIREMENT.search(_SETUP_PY.read_text(encoding="utf-8"))
        if match:
            return match.group(1), str(_SETUP_PY)
    return None


def _clauses(specifier: str, where: str) -> list[tuple[str, str]]:
    clauses = []
    for text in filter(None, (part.strip() for part in specifier.split(","))):
        match = _CLAUSE.match(text)
        if match is None:
            raise ValueError(f"{where}: cannot read the nnunetv2 version clause {text!r} (in {specifier!r})")
        clauses.append((match.group("operator"), match.group("version")))
    return sorted(clauses, key=lambda clause: _OPERATOR_ORDER[clause[0]])


@functools.lru_cache(maxsize=1)
def supported_nnunet_range() -> str | None:
    """The supported ``nnunetv2`` range as declared in ``setup.py`` (e.g. ``">=2.8.0,<2.9"``), ``None`` if unknown.

    Raises:
        ValueError: the declared range has a clause other than ``>=``, ``>``, ``<=``, ``<``, ``==``, ``!=`` with a
            plain version.
    """
    declared = _declared_specifier()
    if declared is None:
        return None
    return ",".join(operator + version for operator, version in _clauses(*declared))


def _satisfies(version: tuple[int, ...], operator: str, bound: tuple[int, ...]) -> bool:
    width = max(len(version), len(bound))
    left, right = version + (0,) * (width - len(version)), bound + (0,) * (width - len(bound))
    return {
        ">=": left >= right, ">": left > right, "<=": left <= right, "<": left < right,
        "==": left == right, "!=": left != right,
    }[operator]


@functools.lru_cache(maxsize=1)
def check_nnunet_version() -> str:
    """Warn once if the installed ``nnunetv2`` is outside :func:`supported_nnunet_range`; return its version.

    Raises:
        ImportError: if ``nnunetv2`` is not installed at all.
    """
    supported = supported_nnunet_range()
    try:
        version = metadata.version("nnunetv2")
    except metadata.PackageNotFoundError as error:
        raise ImportError(
            f"nnunet-babloss needs nnU-Net v2: install it with `pip install 'nnunetv2{supported or ''}'`"
        ) from error
    if supported is None:
        warnings.warn(
            f"the supported nnunetv2 range is unknown ({DISTRIBUTION} is not installed and no setup.py lies beside "
            f"the package), so nnunetv2 {version} is not checked; install the package with `pip install -e .`",
            RuntimeWarning,
            stacklevel=2,
        )
        return version
    parsed = parse_version(version)
    clauses = _clauses(supported, "the supported range")
    if not all(_satisfies(parsed, operator, parse_version(bound)) for operator, bound in clauses):
        warnings.warn(
            f"nnunetv2 {version} is installed, but nnunet-babloss is tested with nnunetv2{supported}; "
            "trainer discovery, the predictor and the data loader rely on nnU-Net internals that may differ.",
            RuntimeWarning,
            stacklevel=2,
        )
    return version
