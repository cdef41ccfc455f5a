"""One table from several per-seed JSRT study reports (the folders ``benchmarks/gpu/jsrt_gpu.sh`` writes).

Each folder ``<label>_s<seed>/jsrt_study.json`` is one study run of one seed; runs are grouped by label and variant,
and each group gets the landmark MRE per seed, mean ± SD over seeds, the mean-training-shape MRE on
the same cases, the training wall time, and the heatmap settings it ran with. Paired ``mix_babloss − mix_heatmap``
differences are listed per seed as the study computed them (bootstrap 95 % intervals over the 40 validation cases).

Usage::

    python benchmarks/gpu/sweep_table.py /tmp/results/lm_default_s0 /tmp/results/lm_sigma3_s0 ... --out DIR/jsrt_gpu
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path


def _landmark_rows(report: dict) -> dict[str, dict]:
    rows = {}
    for variant, scores in report["table"].items():
        for seed_row in scores["validation"]["seeds"]:
            errors = [case["mre"] for case in seed_row["per_case"].values() if case.get("mre") is not None]
            if errors:
                rows[variant] = {"seed": seed_row["seed"], "mre": statistics.fmean(errors)}
    return rows


def summarise(folders: list[Path]) -> dict:
    groups: dict[tuple[str, str], dict] = {}
    paired = []
    for folder in folders:
        match = re.fullmatch(r"(.+)_s(\d+)", folder.name)
        report_path = folder / "jsrt_study.json"
        if match is None or not report_path.is_file():
            continue
        label, report = match.group(1), json.loads(report_path.read_text())
        baseline = next((b for b in report["baselines"] if b["key"] == "mean_shape"), None)
        baseline_mre = None
        if baseline is not None:
            values = [case["mre"] for case in baseline["scores"]["validation"]["per_case"].values()]
            baseline_mre = statistics.fmean(values)
        for variant, row in _landmark_rows(report).items():
            group = groups.setdefault((label, variant), {
                "label": label, "variant": variant, "seeds": [], "mre": [], "wall_s": [],
                "mean_shape_mre": baseline_mre, "heatmap_settings": report.get("heatmap_settings"),
                "schedule": report["schedule"], "device": report["machine"].get("cuda") or report["machine"]["cpu"]})
            group["seeds"].append(row["seed"])
            group["mre"].append(row["mre"])
            group["wall_s"].extend(report["wall_times"].get(variant, []))
        for entry in report["paired"].get("validation", []):
            paired.append({"label": label, "seed": report["seeds"][0], **entry})
    for group in groups.values():
        group["mre_mean"] = statistics.fmean(group["mre"])
        group["mre_sd"] = statistics.stdev(group["mre"]) if len(group["mre"]) > 1 else None
    return {"groups": list(groups.values()), "paired": paired}


def markdown(summary: dict) -> str:
    lines = ["| run | variant | σ min (vox) | seeds | MRE per seed (mm) | MRE mean ± SD | mean shape | train s (mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        sigma = (g["heatmap_settings"] or {}).get("heatmap_min_sigma_vox")
        spread = f"{g['mre_mean']:.2f} ± {g['mre_sd']:.2f}" if g["mre_sd"] is not None else f"{g['mre_mean']:.2f}"
        lines.append(f"| {g['label']} | {g['variant']} | {sigma} | {len(g['seeds'])} | "
                     f"{', '.join(f'{v:.2f}' for v in g['mre'])} | {spread} | {g['mean_shape_mre']:.2f} | "
                     f"{statistics.fmean(g['wall_s']):.0f} |")
    if summary["paired"]:
        lines += ["", "Paired differences (first − second, over the validation cases; 95 % bootstrap interval):", "",
                  "| run | seed | pair | metric | mean difference | 95 % interval | cases better |", "|---|---|---|---|---|---|---|"]
        for p in summary["paired"]:
            lines.append(f"| {p['label']} | {p['seed']} | {p['variant']} − {p['reference']} | {p['metric']} | "
                         f"{p['mean_difference']:+.4f} | [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}] | "
                         f"{p['fraction_of_cases_better']:.0%} of {p['n_cases']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = parser.parse_args()
    summary = summarise(sorted(args.folders))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    args.out.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
