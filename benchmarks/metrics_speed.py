"""Speed and calibration of the continuous disentanglement metrics on the default Gaussian dataset.

    .venv/bin/python benchmarks/metrics_speed.py [--repeats 3] [--oracle-votes 100]

Prints, on one thread: the wall and CPU seconds each metric takes at N = 11,875 for D = 3 and D = 16 (the
true factors plus 13 noise axes), each repeated --repeats times interleaved (median, min, max); the
calibration table (every score for codes equal to the true factors, an increasing map of them, a
45-degree rotation in the (var_x, var_y) plane (equal ranges), and random codes); equal-width against
quantile MIG with ten outlying codes; and, with --oracle-votes > 0, one FactorVAE score made end to end
through the project's renderer with the heatmap oracle as the encoder. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from latent_atlas.analysis.disentanglement import (
    FACTORVAE_BATCH,
    FACTORVAE_VOTES,
    continuous_metrics,
    dci,
    explicitness,
    factorvae_score,
    interventional_batches,
    mig_bin_sensitivity,
    mutual_information_gap,
    quantile_mig,
    uniform_box_sampler,
)
from latent_atlas.config import DataConfig
from latent_atlas.data import make_dataset
from latent_atlas.data.heatmaps import render_from_factors
from latent_atlas.oracle import recover_factors

VOTES, BATCH = FACTORVAE_VOTES, FACTORVAE_BATCH


def _timings(codes, factors, names, train, test, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    steps = {
        "quantile MIG (20 bins)": lambda: quantile_mig(codes, factors, 20, names),
        "MIG at 5/10/20/40 bins": lambda: mig_bin_sensitivity(codes, factors, factor_names=names),
        "DCI lasso": lambda: dci(codes, factors, train, test, "lasso", names),
        "DCI extra trees": lambda: dci(codes, factors, train, test, "trees", names),
        "explicitness (kNN)": lambda: explicitness(codes, factors, train, test, names),
        "continuous_metrics (all)": lambda: continuous_metrics(codes, factors, names, train, test),
    }
    seconds: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            step()
            seconds[name][0].append(time.perf_counter() - started)
            seconds[name][1].append(time.process_time() - started_cpu)
    return seconds


def _rotation(angle_degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _calibration(dataset, names, rng: np.random.Generator) -> None:
    factors = dataset.factors
    low, high = factors.min(axis=0), factors.max(axis=0)
    mean = factors.mean(axis=0)
    rotation = _rotation(45.0)
    noise_rng = np.random.default_rng(5)
    encoders = {
        "true factors": lambda f: f,
        "increasing map": lambda f: np.column_stack([np.log(f[:, 0]), f[:, 1] ** 3, np.arctanh(f[:, 2])]),
        "45-degree rotation": lambda f: (f - mean) @ rotation.T,
        "random codes": lambda f: noise_rng.normal(size=f.shape),
    }
    header = ("codes", "MIG20", "MIG 5/10/20/40", "lasso D/C/I", "trees D/C/I", "explicit", "FactorVAE")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for label, encode in encoders.items():
        codes = encode(factors)
        result = continuous_metrics(codes, factors, names, dataset.train_idx, dataset.test_idx, seed=0)
        # FactorVAE with images = factor rows: the exact renderer followed by an exact oracle.
        batch_codes, fixed = interventional_batches(uniform_box_sampler(low, high), lambda f: f, encode,
                                                    VOTES, BATCH, np.random.default_rng(1))
        vote = factorvae_score(batch_codes, fixed, codes.std(axis=0), len(names), factor_names=names)
        lasso, trees = result["dci_lasso"], result["dci_trees"]
        cells = (
            label,
            f"{result['mig']['mig']:.3f}",
            "/".join(f"{m:.3f}" for m in result["mig_bins"]["mig"]),
            "/".join(f"{lasso[k]:.3f}" for k in ("disentanglement", "completeness", "informativeness")),
            "/".join(f"{trees[k]:.3f}" for k in ("disentanglement", "completeness", "informativeness")),
            f"{result['explicitness']['explicitness']:.3f}",
            f"{vote['factorvae']:.3f}",
        )
        print("| " + " | ".join(cells) + " |")


def _outliers(dataset, names, rng: np.random.Generator) -> None:
    factors = dataset.factors
    for label, codes in (("true factors", factors.copy()),
                         ("VAE-like noisy codes", factors + rng.normal(scale=0.1, size=factors.shape) * factors.std(0))):
        rows = rng.choice(len(codes), size=10, replace=False)
        outlying = codes.copy()
        outlying[rows] += 20.0 * np.ptp(codes, axis=0) * rng.choice([-1.0, 1.0], size=(10, codes.shape[1]))
        scores = [f(c, factors, 20, names)["mig"] for f in (mutual_information_gap, quantile_mig)
                  for c in (codes, outlying)]
        print(f"  {label:<22} equal-width MIG {scores[0]:.3f} -> {scores[1]:.3f} with 10 outliers; "
              f"quantile MIG {scores[2]:.3f} -> {scores[3]:.3f}")


def _oracle_factorvae(dataset, names, votes: int) -> None:
    factors = dataset.factors
    sampler = uniform_box_sampler(factors.min(axis=0), factors.max(axis=0))
    started = time.perf_counter()
    batch_codes, fixed = interventional_batches(
        sampler, lambda f: render_from_factors(f, names, dataset.axis),
        lambda images: recover_factors(images, dataset.axis)[0], votes, BATCH, np.random.default_rng(1))
    score = factorvae_score(batch_codes, fixed, factors.std(axis=0), len(names), factor_names=names)
    print(f"  renderer + oracle as encoder, {votes} votes x {BATCH}: FactorVAE {score['factorvae']:.3f} "
          f"({time.perf_counter() - started:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--oracle-votes", type=int, default=100)
    args = parser.parse_args(argv)
    dataset = make_dataset(DataConfig())
    names = dataset.factor_names
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        noise = rng.normal(size=(len(dataset), 13))
        for label, codes in (("D = 3", dataset.factors), ("D = 16", np.column_stack([dataset.factors, noise]))):
            print(f"seconds at N = {len(codes):,}, {label}, one thread: wall and CPU, "
                  f"median [min, max] of {args.repeats}")
            for name, (wall, cpu) in _timings(codes, dataset.factors, names, dataset.train_idx, dataset.test_idx,
                                              args.repeats).items():
                print(f"  {name:<26} wall {np.median(wall):6.3f} [{min(wall):.3f}, {max(wall):.3f}]"
                      f"   CPU {np.median(cpu):6.3f} [{min(cpu):.3f}, {max(cpu):.3f}]")
        print("\ncalibration on the default dataset (FactorVAE: "
              f"{VOTES} votes of {BATCH}, half held out; chance {1 / len(names):.3f}):")
        _calibration(dataset, names, rng)
        print("\nten outlying codes (20 ranges out, random signs) among 11,875:")
        _outliers(dataset, names, rng)
        if args.oracle_votes > 0:
            print()
            _oracle_factorvae(dataset, names, args.oracle_votes)


if __name__ == "__main__":
    main()
