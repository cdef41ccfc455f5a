"""Fixtures for the pseudo-label tests (helpers live in pseudo_label_helpers.py, importable from the tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from pseudo_label_helpers import tiny_sam, write_jsrt_raw_dataset


@pytest.fixture(scope="session")
def jsrt_fixture(shared_data: Path) -> Path:
    return shared_data / "jsrt_fixture_256"


@pytest.fixture()
def make_jsrt_dataset(jsrt_fixture: Path, tmp_path: Path) -> Callable[..., Path]:
    def make(landmark_only: Sequence[str], both: Sequence[str] = (), name: str = "Dataset901_JSRT") -> Path:
        return write_jsrt_raw_dataset(jsrt_fixture, tmp_path / name, landmark_only, both)

    return make


@pytest.fixture()
def tiny_sam_factory() -> Callable[..., object]:
    """The tiny-SAM builder, or a skip when segment-anything is missing."""
    pytest.importorskip("segment_anything", reason="segment-anything is not installed (extra [sam])")
    return tiny_sam
