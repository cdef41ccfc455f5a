"""One runtime check that the installed nnU-Net lies in the range this package is tested against."""

from __future__ import annotations

import functools
import warnings
from importlib import metadata

__all__ = ["check_nnunet_version", "parse_version"]

_MIN_VERSION = (2, 8, 0)
_MAX_VERSION_EXCLUSIVE = (2, 9, 0)


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


@functools.lru_cache(maxsize=1)
def check_nnunet_version() -> str:
    """Warn once if the installed ``nnunetv2`` is outside ``>=2.8.0,<2.9``; return its version string.

    Raises:
        ImportError: if ``nnunetv2`` is not installed at all.
    """
    try:
        version = metadata.version("nnunetv2")
    except metadata.PackageNotFoundError as error:
        raise ImportError(
            "nnunet-babloss needs nnU-Net v2: install it with `pip install 'nnunetv2>=2.8.0,<2.9'`"
        ) from error
    parsed = parse_version(version)
    if not (_MIN_VERSION <= parsed < _MAX_VERSION_EXCLUSIVE):
        warnings.warn(
            f"nnunetv2 {version} is installed, but nnunet-babloss is tested with nnunetv2>=2.8.0,<2.9; "
            "trainer discovery, the predictor and the data loader rely on nnU-Net internals that may differ.",
            RuntimeWarning,
            stacklevel=2,
        )
    return version
