"""Data-loading time per training iteration, with the per-case keypoint cache against the mapping on every draw.

Issue 18, item 2: ``LandmarkDataLoader`` used to map each case's world landmarks to preprocessed voxels on every
draw; it now maps them once per case (``LandmarkDataLoader.case_keypoints``). This measures what that saves with
the 166 JSRT landmarks.

What it does:

1. copies ``--cases`` cases (those with a landmark file, sorted) of an nnU-Net-preprocessed JSRT dataset (default:
   the study's ``Dataset703_JSRTStudy_Mix``, configuration ``2d_study``: 128 x 128 patches at 2.8 mm, batch 4) to a
   work folder, so that nothing of the source is touched;
2. builds two ``LandmarkDataLoader`` on the copy, identical but for the cache: ``cached`` (the package's) and
   ``uncached`` (a subclass that maps on every draw, as before);
3. times ``--iterations`` calls of ``generate_train_batch`` of each, in ``--rounds`` rounds, in one process, the two
   loaders taking turns in blocks of 10 calls (so both see the same load of a shared machine), each with its own
   seeded draws: once without augmentation (the loader alone: load, map, crop)
   and once with nnU-Net's training augmentation made keypoint-aware (what a training iteration waits for).

Reported per setting: the median over rounds of the time per iteration of each loader and the median of the
per-round ratio uncached / cached. On a shared machine only the ratio of the same round is meaningful.

Usage::

    python benchmarks/loader_speed.py            # results in /tmp/loader_speed/loader_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

JSRT_RUN = Path("/work/runs/jsrt")
DATASET = "Dataset703_JSRTStudy_Mix"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loader_speed", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preprocessed", type=Path, default=JSRT_RUN / "nnUNet_preprocessed" / DATASET,
                        help="preprocessed dataset folder, read only (default: %(default)s)")
    parser.add_argument("--landmarks", type=Path, default=JSRT_RUN / "nnUNet_raw" / DATASET / "landmarksTr",
                        help="the dataset's landmarksTr folder, read only (default: %(default)s)")
    parser.add_argument("--configuration", default="2d_study", help="plans configuration (default: 2d_study)")
    parser.add_argument("--cases", type=int, default=20, help="cases to copy and draw from (default: 20)")
    parser.add_argument("--iterations", type=int, default=200, help="generate_train_batch calls per loader and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the order (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/loader_speed"),
                        help="results and work folder, outside the checkout (default: %(default)s)")
    return parser


def _copy_cases(source: Path, landmarks: Path, data_identifier: str, count: int, work: Path) -> list[str]:
    """The first ``count`` cases with a landmark file, with the dataset's json files, copied to ``work``."""
    cases = sorted(path.name[: -len(".json")] for path in landmarks.glob("*.json"))
    cases = [case for case in cases if (source / data_identifier / f"{case}.pkl").is_file()][:count]
    if len(cases) < count:
        raise ValueError(f"{source / data_identifier}: only {len(cases)} preprocessed cases with landmarks")
    if work.exists():
        shutil.rmtree(work)
    (work / data_identifier).mkdir(parents=True)
    for name in ("dataset.json", "nnUNetPlans.json"):
        shutil.copy(source / name, work / name)
    for case in cases:
        for path in (source / data_identifier).glob(f"{case}[._]*"):
            shutil.copy(path, work / data_identifier / path.name)
    return cases


def _loaders(work: Path, configuration: str, cases: Sequence[str], landmarks_folder: Path, augment: bool):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_babloss.core.landmarks.io import read_landmarks
    from nnunet_babloss.core.landmarks.spec import LandmarkSpec
    from nnunet_babloss.nnunet.keypoint_transforms import make_keypoint_aware
    from nnunet_babloss.nnunet.landmark_loader import LandmarkDataLoader, preprocessed_keypoints

    class UncachedLandmarkDataLoader(LandmarkDataLoader):
        """The loader before the cache: the world -> preprocessed mapping on every draw."""

        def case_keypoints(self, key, properties, preprocessed_shape):
            world = self.landmarks_world.get(key)
            if world is None:
                return np.full((self.num_landmarks, 3), np.nan)
            return preprocessed_keypoints(world, properties, self.transpose_forward, preprocessed_shape)

    dataset_json = json.loads((work / "dataset.json").read_text())
    plans = PlansManager(json.loads((work / "nnUNetPlans.json").read_text()))
    config = plans.get_configuration(configuration)
    label_manager = plans.get_label_manager(dataset_json)
    spec = LandmarkSpec.from_dataset_json(dataset_json)
    world = {case: read_landmarks(landmarks_folder / f"{case}.json", spec).points_mm for case in cases}
    patch_size = tuple(config.patch_size)
    transforms = None
    if augment:  # nnU-Net's 2D training pipeline (deep supervision off), carrying the keypoints
        stock = nnUNetTrainer.get_training_transforms(
            patch_size, (-np.pi, np.pi), None, (0, 1), False, use_mask_for_norm=config.use_mask_for_norm,
            foreground_labels=label_manager.foreground_labels, ignore_label=label_manager.ignore_label,
        )
        transforms = make_keypoint_aware(stock, spec.mirror_permutation(), (1,))
    loaders = {}
    for name, cls in (("uncached", UncachedLandmarkDataLoader), ("cached", LandmarkDataLoader)):
        dataset = nnUNetDatasetBlosc2(str(work / config.data_identifier), list(cases))
        loaders[name] = cls(
            dataset, config.batch_size, patch_size, patch_size, label_manager, transforms=transforms,
            landmarks_world=world, num_landmarks=spec.num_landmarks,
            transpose_forward=list(plans.transpose_forward), ignore_label=label_manager.ignore_label,
        )
    return loaders, spec.num_landmarks, config.batch_size, patch_size


def _time(loader, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        loader.generate_train_batch()
    return time.perf_counter() - start


def mapping_microseconds(loader, repeats: int = 500) -> float:
    """Median cost of one case's world -> preprocessed mapping (what the cache saves per draw), in microseconds."""
    from nnunet_babloss.nnunet.landmark_loader import preprocessed_keypoints

    key = sorted(loader.landmarks_world)[0]
    data, _, _, properties = loader._data.load_case(key)
    arguments = (loader.landmarks_world[key], properties, loader.transpose_forward, tuple(data.shape[1:]))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            preprocessed_keypoints(*arguments)
        samples.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(samples)


def measure(loaders: dict, iterations: int, rounds: int, seed: int, block: int = 10) -> dict:
    """Seconds per iteration of both loaders per round, medians and the per-round ratio.

    Within a round the loaders alternate in blocks of ``block`` iterations (which one starts alternates too), so
    both see the same load of the shared machine; each loader draws its own seeded sequence.
    """
    for loader in loaders.values():  # warm-up: file caches, the cached loader's first draw of every case
        _time(loader, max(1, iterations // 10))
    per_round = []
    for round_index in range(rounds):
        order = ("uncached", "cached") if round_index % 2 == 0 else ("cached", "uncached")
        states = {name: np.random.RandomState(seed + round_index).get_state() for name in order}
        seconds = dict.fromkeys(order, 0.0)
        for _ in range(iterations // block):
            for name in order:
                np.random.set_state(states[name])
                seconds[name] += _time(loaders[name], block)
                states[name] = np.random.get_state()
        per_round.append({name: value / (iterations // block * block) for name, value in seconds.items()})
        per_round[-1]["ratio"] = per_round[-1]["uncached"] / per_round[-1]["cached"]
    return {
        "per_round": per_round,
        "median_ms_per_iteration": {
            name: 1000 * statistics.median(entry[name] for entry in per_round) for name in ("uncached", "cached")
        },
        "median_ratio_uncached_over_cached": statistics.median(entry["ratio"] for entry in per_round),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from threadpoolctl import threadpool_limits

    plans = PlansManager(json.loads((args.preprocessed / "nnUNetPlans.json").read_text()))
    data_identifier = plans.get_configuration(args.configuration).data_identifier
    work = args.out / "work"
    cases = _copy_cases(args.preprocessed, args.landmarks, data_identifier, args.cases, work)
    results = {
        "source": str(args.preprocessed), "configuration": args.configuration, "cases": cases,
        "iterations": args.iterations, "rounds": args.rounds, "seed": args.seed,
        "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
    }
    with threadpool_limits(limits=1):
        for augment in (False, True):
            loaders, num_landmarks, batch_size, patch_size = _loaders(
                work, args.configuration, cases, args.landmarks, augment
            )
            setting = "with augmentation" if augment else "loader only"
            results[setting] = measure(loaders, args.iterations, args.rounds, args.seed)
            results["mapping_us_per_case"] = mapping_microseconds(loaders["cached"])
            median = results[setting]["median_ms_per_iteration"]
            print(f"{setting}: uncached {median['uncached']:.2f} ms, cached {median['cached']:.2f} ms per iteration; "
                  f"ratio {results[setting]['median_ratio_uncached_over_cached']:.3f}", flush=True)
    results.update(num_landmarks=num_landmarks, batch_size=batch_size, patch_size=list(patch_size))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Data loading per iteration: {num_landmarks} landmarks, batch {batch_size}, patch {list(patch_size)}, "
        f"{len(cases)} cases, {args.iterations} iterations x {args.rounds} rounds",
        "",
        "| setting | mapping on every draw (ms) | mapped once per case (ms) | ratio (median of rounds) |",
        "| --- | --- | --- | --- |",
    ]
    for setting in ("loader only", "with augmentation"):
        median = results[setting]["median_ms_per_iteration"]
        lines.append(f"| {setting} | {median['uncached']:.2f} | {median['cached']:.2f} | "
                     f"{results[setting]['median_ratio_uncached_over_cached']:.3f} |")
    lines += ["", f"One case's world -> preprocessed mapping: {results['mapping_us_per_case']:.0f} us "
              f"(x {batch_size} cases per iteration without the cache)."]
    (args.out / "loader_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
