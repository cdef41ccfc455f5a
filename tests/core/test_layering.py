"""Dependencies point one way, checked twice.

``lint-imports`` checks the import-linter contracts of ``pyproject.toml`` on the import graph (the pure core imports
no nnU-Net and nothing above it; the methods do not import each other; nothing imports the applications but the
console entry points; the layers of ``nnunet_babloss`` and of the top-level packages). Importing each pure module in
a fresh interpreter checks what the graph cannot see: a third-party package that drags nnU-Net in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("nnunet_babloss", "dataset_conversion", "pseudo_labels")

PURE_MODULES = [
    "nnunet_babloss.core.landmarks.spec",
    "nnunet_babloss.core.landmarks.io",
    "nnunet_babloss.core.landmarks.geometry",
    "nnunet_babloss.core.landmarks.baseline",
    "nnunet_babloss.core.heatmaps",
    "nnunet_babloss.core.boundary",
    "nnunet_babloss.core.losses",
    "nnunet_babloss.core.network",
    "nnunet_babloss.core.metrics",
    "nnunet_babloss.core.evaluation",
    "nnunet_babloss.core.overlays",
    "nnunet_babloss.core.splits",
    "nnunet_babloss.core.atomic_output",
    "nnunet_babloss.babloss.losses",
    "nnunet_babloss.denseseg.uvmaps",
    "nnunet_babloss.denseseg.losses",
    "nnunet_babloss.denseseg.network",
    "nnunet_babloss.pretraining.losses",
    "nnunet_babloss.apps.synthetic",
    "nnunet_babloss.command_line",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_does_not_import_nnunet(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "bad = sorted(name for name in sys.modules if name.split('.')[0] in ('nnunetv2', 'batchgeneratorsv2', "
        "'batchgenerators', 'dynamic_network_architectures')); print(','.join(bad))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "", f"{module} pulls in {completed.stdout.strip()}"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the packages under ``root`` with the contracts of ``root/pyproject.toml``."""
    pytest.importorskip("importlinter", reason="import-linter is part of the test extra: pip install -e '.[test]'")
    # import-linter prints box-drawing characters: read them as UTF-8 whatever the machine's locale (CI's is ASCII)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
                       PYTHONIOENCODING="utf-8", PYTHONUTF8="1")
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"], cwd=root, env=environment, capture_output=True, encoding="utf-8",
        errors="replace",
    )


def test_import_contracts_hold() -> None:
    completed = _lint_imports(REPOSITORY)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "0 broken" in completed.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("core/heatmaps.py", "import nnunetv2", "The pure core imports no nnU-Net"),
        ("babloss/losses.py", "import nnunet_babloss.gazesup.losses", "The methods do not import each other"),
        ("core/metrics.py", "import nnunet_babloss.apps.demo", "Nothing imports the applications"),
    ],
)
def test_a_broken_contract_fails_the_check(tmp_path: Path, module: str, bad_import: str, contract: str) -> None:
    shutil.copy(REPOSITORY / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(REPOSITORY / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "nnunet_babloss" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}\n", encoding="utf-8")
    completed = _lint_imports(tmp_path)
    assert completed.returncode != 0
    verdicts = [line for line in completed.stdout.splitlines() if line.startswith(contract)]
    assert verdicts and " BROKEN" in verdicts[0], completed.stdout
