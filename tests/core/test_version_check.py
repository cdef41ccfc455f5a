"""The nnU-Net version range is declared once and checked at runtime with a clear warning."""

from __future__ import annotations

import warnings
from importlib import metadata

import pytest

from nnunet_babloss import version_check


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("2.8.1", (2, 8, 1)), ("2.8.0.dev3", (2, 8, 0)), ("2.9rc1", (2, 9)), ("2.10", (2, 10))],
)
def test_parse_version(text: str, parsed: tuple[int, ...]) -> None:
    assert version_check.parse_version(text) == parsed


@pytest.mark.parametrize(("installed", "warns"), [("2.8.1", False), ("2.7.0", True), ("2.9.0", True)])
def test_warns_only_outside_the_tested_range(monkeypatch: pytest.MonkeyPatch, installed: str, warns: bool) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: installed)
    version_check.check_nnunet_version.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert version_check.check_nnunet_version() == installed
        messages = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
        assert bool(messages) == warns
        if warns:
            assert installed in messages[0] and ">=2.8.0,<2.9" in messages[0]
    finally:
        version_check.check_nnunet_version.cache_clear()


def test_setup_declares_the_same_range() -> None:
    from pathlib import Path

    setup_text = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    assert '"nnunetv2>=2.8.0,<2.9"' in setup_text
