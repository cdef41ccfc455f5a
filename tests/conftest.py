"""Shared pytest fixtures: where the real data lives, and a marker for long real-data runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"


def shared_data_root() -> Path:
    """The real-data folder: ``$NNUNET_BABLOSS_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real data; skips the test (with the reason) when it is not there."""
    root = shared_data_root()
    if not (root / "jsrt_fixture_256").is_dir():
        pytest.skip(f"real data not found at {root} (set {DATA_ENV_VAR} to its location)")
    return root
