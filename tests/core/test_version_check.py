"""The nnU-Net version range is declared once (setup.py) and checked at runtime with a clear warning."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from nnunet_babloss import version_check

SETUP_PY = Path(__file__).resolve().parents[2] / "setup.py"
# A stand-in range for testing the mechanism; the real one lives in setup.py only.
TEST_REQUIREMENTS = ["nnunetv2<2.9,>=2.8.0", 'segment-anything; extra == "sam"']


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    version_check.check_nnunet_version.cache_clear()
    version_check.supported_nnunet_range.cache_clear()
    yield
    version_check.check_nnunet_version.cache_clear()
    version_check.supported_nnunet_range.cache_clear()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("2.8.1", (2, 8, 1)), ("2.8.0.dev3", (2, 8, 0)), ("2.9rc1", (2, 9)), ("2.10", (2, 10))],
)
def test_parse_version(text: str, parsed: tuple[int, ...]) -> None:
    assert version_check.parse_version(text) == parsed


@pytest.mark.parametrize(("installed", "warns"), [("2.8.1", False), ("2.7.0", True), ("2.9.0", True)])
def test_warns_only_outside_the_tested_range(monkeypatch: pytest.MonkeyPatch, installed: str, warns: bool) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: installed)
    monkeypatch.setattr(metadata, "requires", lambda name: TEST_REQUIREMENTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert version_check.check_nnunet_version() == installed
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
    assert bool(messages) == warns
    if warns:
        assert installed in messages[0] and ">=2.8.0,<2.9" in messages[0]


def test_setup_declares_the_range_read_at_runtime() -> None:
    declared = re.search(r'^NNUNET_REQUIREMENT = "nnunetv2([^"]+)"$', SETUP_PY.read_text(), re.MULTILINE)
    assert declared is not None, "setup.py must declare NNUNET_REQUIREMENT = \"nnunetv2<range>\""
    # Installed metadata reorders the clauses; the range read back is the same set of clauses.
    assert set(version_check.supported_nnunet_range().split(",")) == set(declared.group(1).split(","))


def test_source_tree_without_install_reads_setup_py(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    declared = re.search(r'^NNUNET_REQUIREMENT = "nnunetv2([^"]+)"$', SETUP_PY.read_text(), re.MULTILINE)
    assert set(version_check.supported_nnunet_range().split(",")) == set(declared.group(1).split(","))


def test_unknown_range_is_said_not_guessed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def not_installed(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    monkeypatch.setattr(version_check, "_SETUP_PY", tmp_path / "setup.py")
    monkeypatch.setattr(metadata, "version", lambda name: "2.8.1")
    assert version_check.supported_nnunet_range() is None
    with pytest.warns(RuntimeWarning, match="range is unknown"):
        assert version_check.check_nnunet_version() == "2.8.1"
