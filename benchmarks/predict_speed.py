"""Speed and memory of ``nnUNetv2_bab_predict`` against the stock ``nnUNetv2_predict``, same model, same cases.

What it does, in a work folder of its own (``--work-dir``):

1. writes an nnU-Net raw dataset from the real JSRT fixture (``jsrt_fixture_256``: 8 chest X-rays, 256 x 256 px,
   1.4 mm) with its 166 contour landmarks in the ``landmarks`` block, and runs ``nnUNetv2_plan_and_preprocess -c 2d``
   (nnU-Net's own plan for these images: patch 256 x 256, 7 stages, 32-512 features);
2. saves an *untrained* ``BaBLossTrainer`` checkpoint of that plan (speed does not depend on the weights; a trained
   model would take hours on a CPU): 166 heatmap channels, the worst case of this project's datasets;
3. runs ``nnUNetv2_predict`` and then ``nnUNetv2_bab_predict`` once each, as a user would (fold 0, mirroring on,
   ``-device cpu``, ``-npp 1 -nps 1``), on the same 8 images, and measures wall time, the peak resident memory summed
   over the process tree (sum of proportional set sizes, sampled every 100 ms) and the peak of the largest single process;
4. checks that both wrote byte-identical segmentations, and that one landmark file per case was written;
5. times the sliding window alone in-process (``predict_logits_from_preprocessed_data`` of both predictors on the same
   preprocessed arrays, landmark decoding included for ours): the overhead without process start-up and export.

Results go to ``benchmarks/results/predict_speed.{json,md}``. One run each by default (``--repeats N``: N runs each, in
alternating order, medians reported). On a shared machine, differences of a few percent are within the noise.

Usage::

    python benchmarks/predict_speed.py --work-dir /tmp/predict_speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_FOLDER = REPO_ROOT / "benchmarks" / "results"
DATA_ENV_VAR = "NNUNET_BABLOSS_DATA"
DATASET_ID = 951
DATASET_NAME = f"Dataset{DATASET_ID:03d}_JSRTPredictSpeed"
TRAINER = "BaBLossTrainer"
CONFIGURATION = "2d"
SPACING_MM = 1.4
LABELS = {"background": 0, "right_lung": 1, "left_lung": 2, "heart": 3, "right_clavicle": 4, "left_clavicle": 5}
GROUP_LABELS = {"RL": "right_lung", "LL": "left_lung", "H": "heart", "RCLA": "right_clavicle", "LCLA": "left_clavicle"}
RSS_SAMPLE_SECONDS = 0.1
TIME_COMMAND = "/usr/bin/time"  # GNU time, for the peak resident memory of the largest process


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ENV_VAR, REPO_ROOT.parent / "shared" / "data"))


def write_raw_dataset(fixture: Path, raw_root: Path) -> Path:
    """JSRT fixture -> nnU-Net raw dataset (NIfTI at 1.4 mm); images also copied to ``imagesTs`` for prediction."""
    folder = raw_root / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    cases = sorted(path.stem for path in (fixture / "images").glob("*.png"))
    if not cases:
        raise FileNotFoundError(f"no JSRT images in {fixture / 'images'}")
    names: list[str] = []
    bridge: dict[str, list[str]] = {}
    for case in cases:
        for source, target in ((fixture / "images" / f"{case}.png", folder / "imagesTr" / f"{case}_0000.nii.gz"),
                               (fixture / "labels" / f"{case}.png", folder / "labelsTr" / f"{case}.nii.gz")):
            image = sitk.GetImageFromArray(sitk.GetArrayFromImage(sitk.ReadImage(str(source))))
            image.SetSpacing((SPACING_MM, SPACING_MM))
            sitk.WriteImage(image, str(target))
        shutil.copy(folder / "imagesTr" / f"{case}_0000.nii.gz", folder / "imagesTs" / f"{case}_0000.nii.gz")
        groups = json.loads((fixture / "landmarks" / f"{case}.json").read_text())["landmarks"]
        names = [f"{group}_{index:02d}" for group, points in groups.items() for index in range(len(points))]
        bridge = {name: [GROUP_LABELS[name.split("_")[0]]] for name in names}  # contour points lie on their organ
    dataset_json = {
        "channel_names": {"0": "xray"},
        "labels": LABELS,
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "landmarks": {"names": names, "bridge": bridge, "sigma_mm": 2.0, "boundary_range_mm": 5.0},
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


def nnunet_environment(work_dir: Path) -> dict[str, str]:
    from nnunet_babloss.ext_trainers_path import with_ext_trainer_dir

    environment = with_ext_trainer_dir(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        environment[name] = str(work_dir / name)
    environment.setdefault("nnUNet_compile", "f")
    return environment


def save_untrained_checkpoint(environment: dict[str, str]) -> Path:
    """An initialised (untrained) ``BaBLossTrainer`` model folder for fold 0, ready for both predictors."""
    os.environ.update(environment)
    import torch

    from nnunet_babloss.trainers import BaBLossTrainer

    preprocessed = Path(environment["nnUNet_preprocessed"]) / DATASET_NAME
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # nnUNetTrainer.__init__ pops this key (set by run_training)
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(0)
    trainer = BaBLossTrainer(plans, CONFIGURATION, 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    # Sets the mirroring axes a trained model stores for inference (nnU-Net does it when training starts).
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    model_folder = Path(trainer.output_folder_base)
    (model_folder / "plans.json").write_text(json.dumps(trainer.plans_manager.plans, indent=2))
    shutil.copy(preprocessed / "dataset.json", model_folder / "dataset.json")
    return model_folder


def _pss_bytes(pid: int) -> int:
    """Proportional set size of one process (shared pages divided among their users), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_pss_bytes(root_pid: int) -> int:
    """Memory of ``root_pid`` and all its descendants: the sum of their PSS (no double counting of shared libraries)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    total, frontier = 0, [root_pid]
    while frontier:
        pid = frontier.pop()
        total += _pss_bytes(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return total


def run_measured(command: Sequence[str], environment: dict[str, str], log_path: Path) -> dict[str, float]:
    """Wall time (s), peak memory of the process tree (sum of PSS) and of its largest process (RSS), in MiB.

    The single-process peak is GNU time's ``%M``: the ``ru_maxrss`` that ``wait4`` reports for the command, i.e. the
    largest resident set of any process in its tree (Linux).
    """
    peak = [0]
    maxrss_path = log_path.with_suffix(".maxrss")
    timed = [TIME_COMMAND, "-f", "%M", "-o", str(maxrss_path), *command]
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(timed, env=environment, stdout=log, stderr=subprocess.STDOUT)

        def sample() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], _tree_pss_bytes(process.pid))
                time.sleep(RSS_SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        wall_s = time.perf_counter() - start
        sampler.join()
    if code != 0:
        raise RuntimeError(f"{command[0]} failed ({code}); see {log_path}")
    largest_kib = int(maxrss_path.read_text().split()[-1])
    return {"wall_s": wall_s, "peak_tree_pss_mib": peak[0] / 2**20, "peak_largest_process_rss_mib": largest_kib / 1024}


def compute_only_timing(model_folder: Path, preprocessed_folder: Path) -> dict[str, float]:
    """Seconds of the sliding window (8 cases, mirroring on) for both predictors, on the same preprocessed arrays."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from nnunet_babloss.nnunet.predictor import nnUNetLandmarkPredictor

    plans = json.loads((model_folder / "plans.json").read_text())
    data_folder = preprocessed_folder / plans["configurations"][CONFIGURATION]["data_identifier"]
    dataset = infer_dataset_class(str(data_folder))(str(data_folder))
    cases = [dataset.load_case(key) for key in sorted(dataset.identifiers)]
    arrays = [(torch.from_numpy(np.array(data[:])), properties) for data, _, _, properties in cases]
    stock = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    stock.initialize_from_trained_model_folder(str(model_folder), (0,))
    ours = nnUNetLandmarkPredictor(device=torch.device("cpu"), allow_tqdm=False)
    ours.initialize_from_trained_model_folder(str(model_folder), (0,))
    stock.predict_logits_from_preprocessed_data(arrays[0][0])  # warm-up (thread pools, allocator), not timed
    timings = {}
    start = time.perf_counter()
    for data, _ in arrays:
        stock.predict_logits_from_preprocessed_data(data)
    timings["stock_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for data, properties in arrays:
        ours.predict_preprocessed_case(data, properties)
    timings["ours_s"] = time.perf_counter() - start
    timings["ratio"] = timings["ours_s"] / timings["stock_s"]
    return timings


def _median_run(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-measure median over repeated runs (the single run for ``--repeats 1``)."""
    return {key: float(np.median([run[key] for run in runs])) for key in runs[0]}


def _same_files(first: Path, second: Path, pattern: str) -> bool:
    files = sorted(first.glob(pattern))
    return bool(files) and all((second / path.name).read_bytes() == path.read_bytes() for path in files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="folder for the dataset, model and predictions")
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help=f"real data folder (default: ${DATA_ENV_VAR} or <repo>/../shared/data)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each command, in alternating order; medians are reported (default: 1)")
    parser.add_argument("--results", type=Path, default=RESULTS_FOLDER, help="where to write predict_speed.{json,md}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work_dir = args.work_dir.resolve()
    if (work_dir / "nnUNet_raw" / DATASET_NAME).exists():
        raise FileExistsError(f"{work_dir} already holds {DATASET_NAME}: give an empty --work-dir")
    environment = nnunet_environment(work_dir)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "logs"):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
    raw = write_raw_dataset(args.data_root / "jsrt_fixture_256", work_dir / "nnUNet_raw")
    planning = [sys.executable, "-c", "from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import "
                "plan_and_preprocess_entry as main; main()", "-d", str(DATASET_ID), "-c", CONFIGURATION, "-np", "1",
                "-npfp", "1", "--no_pbar"]
    subprocess.run(planning, env={**environment, "nnUNet_def_n_proc": "1"}, check=True, capture_output=True)
    model_folder = save_untrained_checkpoint(environment)

    common = ["-i", str(raw / "imagesTs"), "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", "0", "-tr", TRAINER,
              "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"]
    commands = {
        "stock": [sys.executable, "-c", "from nnunetv2.inference.predict_from_raw_data import predict_entry_point;"
                  "predict_entry_point()", *common],
        "ours": [sys.executable, "-m", "nnunet_babloss.cli.predict", *common],
    }
    # Warm the page cache for both import paths (not timed).
    subprocess.run([sys.executable, "-c", "import nnunet_babloss.nnunet.predictor"], env=environment, check=True)
    runs: dict[str, list[dict[str, float]]] = {"stock": [], "ours": []}
    for repeat in range(args.repeats):
        # Alternate the order (stock first, then ours first, ...) so that a drift in machine load hits both.
        for name in ("stock", "ours") if repeat % 2 == 0 else ("ours", "stock"):
            output = work_dir / f"{name}_{repeat}"
            runs[name].append(run_measured([*commands[name], "-o", str(output)], environment,
                                           work_dir / "logs" / f"{name}_{repeat}.log"))
    stock, ours = (_median_run(runs[name]) for name in ("stock", "ours"))
    identical = _same_files(work_dir / "stock_0", work_dir / "ours_0", "*.nii.gz")
    num_cases = len(list((raw / "imagesTs").glob("*.nii.gz")))
    landmark_files = len([path for path in (work_dir / "ours_0").glob("*.json")
                          if json.loads(path.read_text()).get("format") == "nnunet_babloss.landmarks"])
    compute = compute_only_timing(model_folder, work_dir / "nnUNet_preprocessed" / DATASET_NAME)

    import torch

    plans = json.loads((model_folder / "plans.json").read_text())["configurations"][CONFIGURATION]
    result = {
        "what": "nnUNetv2_bab_predict vs nnUNetv2_predict, same untrained BaBLossTrainer model",
        "dataset": f"jsrt_fixture_256: {num_cases} chest X-rays, 256 x 256 px at {SPACING_MM} mm, 166 landmarks",
        "plan": {"patch_size": plans["patch_size"], "features_per_stage":
                 plans["architecture"]["arch_kwargs"]["features_per_stage"]},
        "arguments": "-f 0 -device cpu -npp 1 -nps 1 (mirroring TTA on)",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "repeats": args.repeats,
        "stock": stock,
        "ours": ours,
        "runs": runs,
        "time_ratio": ours["wall_s"] / stock["wall_s"],
        "peak_tree_pss_ratio": ours["peak_tree_pss_mib"] / stock["peak_tree_pss_mib"],
        "segmentations_byte_identical": identical,
        "landmark_files_written": landmark_files,
        "sliding_window_only": compute,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "predict_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "predict_speed.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    stock, ours, compute = result["stock"], result["ours"], result["sliding_window_only"]
    return (
        "# Prediction speed: nnUNetv2_bab_predict vs nnUNetv2_predict\n\n"
        f"{result['dataset']}; nnU-Net 2d plan, patch {result['plan']['patch_size']}, features "
        f"{result['plan']['features_per_stage']}; untrained BaBLossTrainer (speed does not depend on the weights); "
        f"`{result['arguments']}`; {result['machine']['cpu_count']} CPU cores (shared machine), torch "
        f"{result['machine']['torch']}. {result['repeats']} run(s) each, alternating order; medians.\n\n"
        "| | nnUNetv2_predict | nnUNetv2_bab_predict | ratio |\n|---|---|---|---|\n"
        f"| wall time (whole command) | {stock['wall_s']:.1f} s | {ours['wall_s']:.1f} s | "
        f"**{result['time_ratio']:.3f}** |\n"
        f"| peak memory, process tree (sum of PSS) | {stock['peak_tree_pss_mib']:.0f} MiB | {ours['peak_tree_pss_mib']:.0f} MiB | "
        f"{result['peak_tree_pss_ratio']:.3f} |\n"
        f"| peak RSS, largest process | {stock['peak_largest_process_rss_mib']:.0f} MiB | "
        f"{ours['peak_largest_process_rss_mib']:.0f} MiB | |\n"
        f"| sliding window only (in-process, 8 cases, one run each) | {compute['stock_s']:.1f} s | "
        f"{compute['ours_s']:.1f} s | {compute['ratio']:.3f} |\n\n"
        f"Segmentations byte-identical: {result['segmentations_byte_identical']}; landmark files written: "
        f"{result['landmark_files_written']}.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
