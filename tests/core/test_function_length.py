"""No function of the packages grows past a length limit (issue 18: long functions broken into named steps).

A function's length is counted from its first statement after the docstring to its last line: Google-style
docstrings with ``Args``/``Raises`` are wanted and do not count. The functions still over the limit are listed in
:data:`ALLOWED`, each with its length now and why it stays; the list may only shrink (an entry that is no longer
over the limit, or no longer exists, fails too, so it is taken off).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("nnunet_babloss", "dataset_conversion", "pseudo_labels")
MAX_CODE_LINES = 60

# "<file relative to the repository>::<qualified name>" -> code lines now. Each stays for the reason given.
ALLOWED: dict[str, int] = {
    # argparse declarations: a flat list of options, one add_argument each; splitting scatters the --help order.
    "dataset_conversion/cli_convert.py::build_parser": 106,
    "pseudo_labels/cli.py::build_parser": 76,
    # Mirrors nnUNetv2_predict's argument handling step for step (same options, same order of checks).
    "nnunet_babloss/cli/predict.py::predict_with_landmarks": 78,
    # Overrides nnUNetTrainer.get_dataloaders, which is one long method in nnU-Net itself; kept parallel to it so a
    # diff against nnU-Net's stays readable.
    "nnunet_babloss/nnunet/heatmap_trainer.py::HeatmapTrainer.get_dataloaders": 65,
}


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1  # type: ignore[operator]


def _function_lengths() -> dict[str, int]:
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                lengths[f"{path}::{name}"] = _code_lines(child)
                visit(child, f"{name}.", path)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", path)
            else:
                visit(child, prefix, path)

    for package in PACKAGES:
        for file in sorted((REPOSITORY / package).rglob("*.py")):
            path = file.relative_to(REPOSITORY).as_posix()
            visit(ast.parse(file.read_text(encoding="utf-8")), "", path)
    return lengths


def test_no_function_exceeds_the_line_limit() -> None:
    lengths = _function_lengths()
    too_long = {
        name: length for name, length in lengths.items() if length > MAX_CODE_LINES and name not in ALLOWED
    }
    assert not too_long, (
        f"functions over {MAX_CODE_LINES} lines of code (docstring not counted); break them into named steps: "
        f"{too_long}"
    )


def test_allow_list_only_shrinks() -> None:
    lengths = _function_lengths()
    stale = {name: lengths.get(name) for name in ALLOWED if lengths.get(name, 0) <= MAX_CODE_LINES}
    assert not stale, f"take these off ALLOWED (gone, or now within {MAX_CODE_LINES} lines): {stale}"
    grown = {name: (ALLOWED[name], lengths[name]) for name in ALLOWED if lengths[name] > ALLOWED[name]}
    assert not grown, f"allow-listed functions grew (allowed, now): {grown}"
