"""Speed and accuracy of the heatmap oracle on the default datasets.

    .venv/bin/python benchmarks/oracle_speed.py [--calls 300] [--clients 8] [--run RUN_DIR]

Prints: accuracy against the generator (max / p99 relative variance error, absolute rho error, df
classification) on the gaussian and Student t datasets; single-image latency (wall and CPU, p50 / p99)
on real images, noisy images and, with --run, decodes of random latent points (what the explorer sends);
the same under --clients concurrent threads in one process; throughput on 2,000 images and on the full
datasets; with a Gaussian --run, the fit's iterations per batch of 8 decodes with and without its Newton
steps. Bounded: about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np

from latent_atlas.config import DataConfig
from latent_atlas.data import HeatmapDataset, make_dataset
from latent_atlas.oracle import HeatmapOracle
from latent_atlas.training import load_run


def _accuracy(name: str, oracle: HeatmapOracle, dataset: HeatmapDataset, rows: np.ndarray) -> None:
    result = oracle.recover(dataset.images[rows])
    true = dataset.factors[rows]
    parts = []
    for k, factor in enumerate(("var_x", "var_y", "rho")):
        error = np.abs(result.factors[:, k] - true[:, k]) / (true[:, k] if k < 2 else 1.0)
        parts.append(f"{factor} {'rel' if k < 2 else 'abs'} max {error.max():.1e} p99 {np.percentile(error, 99):.1e}")
    if "df" in dataset.factor_names:
        df, true_df = result.factor("df"), true[:, 3]
        parts.append(f"df>20 accuracy {np.mean((df > 20) == (true_df > 20)):.4f} ({len(df)} images), "
                     f"df rel max {np.max(np.abs(df / true_df - 1)):.1e}")
    parts.append(f"residual max {result.residual.max():.1e}")
    print(f"  {name:<28} " + "; ".join(parts))


def _latencies(call: Callable[[np.ndarray], object], images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    call(images[0])  # warm-up
    wall, cpu = [], []
    for image in images:
        started, started_cpu = time.perf_counter(), time.thread_time()
        call(image)
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return np.array(wall) * 1e3, np.array(cpu) * 1e3


def _concurrent(call: Callable[[np.ndarray], object], images: np.ndarray, clients: int) -> np.ndarray:
    walls: list[np.ndarray] = [np.empty(0)] * clients

    def client(i: int) -> None:
        walls[i] = _latencies(call, images[i::clients])[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.concatenate(walls)


def _run_images(run_dir: str, n: int, seed: int, box: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The run's data kind; decodes of ``n`` random codes (beyond the data too); its reconstructions of the test
    images (what the explorer and the study's evaluation give the oracle); and decodes of ``box`` codes drawn
    uniformly inside the box of the run's codes (what benchmarks/explorer_load.py sends, many of them far from
    any heatmap)."""
    from latent_atlas.models.inference import decode, encode

    run = load_run(run_dir)
    model, dataset = run.load_model(), run.load_dataset()
    all_codes, _ = encode(model, dataset.images)
    codes = all_codes[dataset.test_idx]
    rng = np.random.default_rng(seed)
    points = codes.mean(0) + 1.5 * codes.std(0) * rng.standard_normal((n, codes.shape[1]))
    uniform = np.random.default_rng(seed).uniform(all_codes.min(0), all_codes.max(0), (box, codes.shape[1]))
    return dataset.config.kind, decode(model, points), decode(model, codes), decode(model, uniform)


def _newton_steps(oracle: HeatmapOracle, images: np.ndarray, size: int = 8) -> None:
    """Per batch of ``size`` images: Levenberg-Marquardt iterations (those of the batch's slowest image: one heatmap
    evaluation each) and ms, with the Gaussian's Newton steps and with Gauss-Newton only, the two alternating
    batch by batch (which goes first alternates too) so that the machine's drift falls on both alike."""
    from latent_atlas import oracle as module

    heatmap_and_tangent, newton_below = module._heatmap_and_tangent, module._NEWTON_BELOW
    calls = [0]

    def counted(*args):
        calls[0] += 1
        return heatmap_and_tangent(*args)

    settings = {"with Newton steps": newton_below, "Gauss-Newton only": 0.0}
    counts: dict[str, list] = {name: [] for name in settings}
    times: dict[str, list] = {name: [] for name in settings}
    factors: dict[str, list] = {name: [] for name in settings}
    batches = [images[i : i + size] for i in range(0, len(images) - size + 1, size)]
    try:
        module._heatmap_and_tangent = counted
        for number, batch in enumerate(batches):
            for name in (list(settings) if number % 2 == 0 else list(settings)[::-1]):
                module._NEWTON_BELOW = settings[name]
                calls[0] = 0
                started = time.perf_counter()
                factors[name].append(oracle.recover(batch).factors)
                times[name].append((time.perf_counter() - started) * 1e3)
                counts[name].append(calls[0])
    finally:
        module._heatmap_and_tangent, module._NEWTON_BELOW = heatmap_and_tangent, newton_below
    for name in settings:
        count, time_ms = np.array(counts[name]), np.array(times[name])
        print(f"  {name:<18} iterations per batch of {size}: mean {count.mean():.2f} p99 "
              f"{np.percentile(count, 99):.1f} max {count.max()}; ms per batch mean {time_ms.mean():.2f} p50 "
              f"{np.median(time_ms):.2f} p99 {np.percentile(time_ms, 99):.2f}")
    difference = np.abs(np.concatenate(factors["with Newton steps"]) / np.concatenate(factors["Gauss-Newton only"]) - 1)
    print(f"  factors, Newton against Gauss-Newton: relative difference median {np.median(difference):.1e}, "
          f"p99 {np.percentile(difference, 99):.1e}, max {difference.max():.1e}")


def _batches(call: Callable[[np.ndarray], object], images: np.ndarray, size: int) -> float:
    """Mean ms per call on consecutive batches of ``size`` images."""
    batches = [images[i : i + size] for i in range(0, len(images) - size + 1, size)]
    started = time.perf_counter()
    for batch in batches:
        call(batch)
    return (time.perf_counter() - started) / len(batches) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="single-image calls per latency measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent threads for the shared-process test")
    parser.add_argument("--run", default=None,
                        help="a run folder: also time decodes of random codes and the run's reconstructions")
    parser.add_argument("--box-decodes", type=int, default=2000,
                        help="with a Gaussian --run: decodes of uniform codes for the Newton / Gauss-Newton comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    datasets = {kind: make_dataset(DataConfig(kind=kind)) for kind in ("gaussian", "student_t")}
    oracles = {kind: HeatmapOracle.for_dataset(ds) for kind, ds in datasets.items()}
    gaussian = datasets["gaussian"]

    print("accuracy against the generator")
    for kind, dataset in datasets.items():
        _accuracy(f"{kind} test split", oracles[kind], dataset, dataset.test_idx)
        _accuracy(f"{kind} all {len(dataset)}", oracles[kind], dataset, np.arange(len(dataset)))
    random = make_dataset(DataConfig(sampling="random", seed=args.seed))
    _accuracy("gaussian random factors", oracles["gaussian"], random, np.arange(len(random)))

    test = gaussian.images[gaussian.test_idx[rng.permutation(len(gaussian.test_idx))[: args.calls]]]
    inputs = {
        "gaussian real": (oracles["gaussian"], test),
        "gaussian noisy (sigma 0.02)": (oracles["gaussian"], test + rng.normal(0.0, 0.02, test.shape)),
        "student_t real": (oracles["student_t"], datasets["student_t"].images[: len(test) * 37 : 37]),
    }
    if args.run:
        run_kind, decoded, reconstructions, box_decoded = _run_images(args.run, args.calls, args.seed,
                                                                      args.box_decodes)
        inputs[f"{run_kind} decoded random codes"] = (oracles[run_kind], decoded)
    print(f"single-image latency in ms over {args.calls} calls (one thread; then {args.clients} threads sharing "
          "one process)")
    for name, (oracle, images) in inputs.items():
        wall, cpu = _latencies(oracle.recover, images)
        shared = _concurrent(oracle.recover, images, args.clients)
        print(f"  {name:<30} wall p50 {np.percentile(wall, 50):.2f} p99 {np.percentile(wall, 99):.2f} | "
              f"cpu p50 {np.percentile(cpu, 50):.2f} p99 {np.percentile(cpu, 99):.2f} max {cpu.max():.2f} | "
              f"{args.clients} clients wall p50 {np.percentile(shared, 50):.2f} p99 {np.percentile(shared, 99):.2f}")

    print("throughput")
    for kind, dataset in datasets.items():
        for n in (2000, len(dataset)):
            started = time.perf_counter()
            oracles[kind].recover(dataset.images[:n])
            elapsed = time.perf_counter() - started
            print(f"  {kind:<10} {n:>6} images: {elapsed:.2f} s ({n / elapsed:,.0f} images/s)")
    if args.run:
        oracle = oracles[run_kind]
        started = time.perf_counter()
        oracle.recover(reconstructions)
        elapsed = time.perf_counter() - started
        print(f"  {run_kind:<10} {len(reconstructions):>6} reconstructions of the test images: {elapsed:.2f} s "
              f"({len(reconstructions) / elapsed:,.0f} images/s); decodes in batches of 8: "
              f"{_batches(oracle.recover, decoded, 8):.2f} ms per batch")
        if run_kind == "gaussian":
            print(f"decodes of {args.box_decodes} uniform codes in the box of the run's codes (the explorer load test's)")
            _newton_steps(oracle, box_decoded)


if __name__ == "__main__":
    main()
