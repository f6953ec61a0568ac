"""Does the oracle's fit find the nearest heatmap, or a local minimum, on decodes far from any heatmap?

    .venv/bin/python benchmarks/oracle_local_minima.py --run study/runs/gaussian-vae-s0 [--decodes 2400]

Decodes codes drawn uniformly inside the box of the run's codes (what benchmarks/explorer_load.py sends, many
of them far from any heatmap) and fits each twice: from the oracle's own start (the better of the
quadratic-form and moment starts) and from the best of those and a third candidate, the nearest of a bank of
precomputed heatmaps on a grid over the log variances and atanh rho (``--grid`` points per axis). Where the two
fits end at different costs, the fit has more than one local minimum; the script prints how many images, by how
much, and their shape residuals against the oracle's threshold (which says whether a verdict could depend on
the minimum found). Gaussian runs only. About half a minute on 2 cores.
"""

from __future__ import annotations

import argparse

import numpy as np

from latent_atlas import oracle as fit
from latent_atlas.models.inference import decode, encode
from latent_atlas.oracle import HeatmapOracle
from latent_atlas.training import load_run

CHUNK = 128


class BankStart:
    """The oracle's start with a third candidate: the nearest heatmap of a fixed bank (least squares, one product)."""

    def __init__(self, grid: fit._Grid, points: int):
        log_variances, atanh_rho = np.linspace(np.log(0.01), np.log(100.0), points), np.linspace(-2.6, 2.6, points)
        self.theta = np.array(np.meshgrid(log_variances, log_variances, atanh_rho, indexing="ij")).reshape(3, -1).T
        bank, *_ = fit._heatmaps(fit._to_factors(self.theta), grid)  # (M, P)
        self.bank_t, self.squared = np.ascontiguousarray(bank.T), (bank * bank).sum(axis=1)

    def __call__(self, target: np.ndarray, grid: fit._Grid) -> tuple[np.ndarray, np.ndarray, object]:
        nearest = (self.squared[None] - 2.0 * target @ self.bank_t).argmin(axis=1)  # (N,)
        return fit._best_start(target, grid, "gaussian", extra=self.theta[nearest])


def fitted(targets: np.ndarray, grid: fit._Grid, start) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) images -> each fit's cost ||f - t||^2 (N,) and shape residual ||f - t|| / ||f|| (N,)."""
    cost, shape = np.empty(len(targets)), np.empty(len(targets))
    for lo in range(0, len(targets), CHUNK):
        target = targets[lo : lo + CHUNK]
        _, f = fit._levenberg_marquardt(target, *start(target, grid), grid)
        cost[lo : lo + CHUNK] = ((f - target) ** 2).sum(axis=1)
        shape[lo : lo + CHUNK] = np.linalg.norm(f - target, axis=1) / np.linalg.norm(f, axis=1)
    return cost, shape


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a Gaussian run folder")
    parser.add_argument("--decodes", type=int, default=2400)
    parser.add_argument("--grid", type=int, default=9, help="bank points per axis (grid^3 heatmaps)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    run = load_run(args.run)
    model, dataset = run.load_model(), run.load_dataset()
    if dataset.config.kind != "gaussian":
        raise SystemExit("oracle_local_minima: a Gaussian run is needed (the bank start is written for 3 factors)")
    oracle = HeatmapOracle.for_dataset(dataset)
    codes, _ = encode(model, dataset.images)
    rng = np.random.default_rng(args.seed)
    uniform = rng.uniform(codes.min(0), codes.max(0), size=(args.decodes, codes.shape[1])).astype(np.float32)
    targets = decode(model, uniform).reshape(args.decodes, -1).astype(np.float64)  # (N, P)
    grid = fit._Grid.build(oracle.axis)

    own_cost, own_shape = fitted(targets, grid, lambda target, grid: fit._best_start(target, grid, "gaussian"))
    bank_cost, bank_shape = fitted(targets, grid, BankStart(grid, args.grid))
    change = (bank_cost - own_cost) / own_cost
    differ = np.abs(change) > 1e-6
    threshold = oracle.shape_threshold
    print(f"{run.path.name}: {args.decodes} decodes of uniform codes; shape threshold {threshold:g}")
    print(f"  fits ending at a different cost (> 1e-6 relative) with the bank's start: {differ.sum()} "
          f"({(change < -1e-6).sum()} lower, {(change > 1e-6).sum()} higher; "
          f"most lower {-change.min():.0%}, most higher {change.max():.0%})")
    if differ.any():
        smallest = np.minimum(own_shape, bank_shape)[differ].min()
        flips = ((own_shape <= threshold) != (bank_shape <= threshold)).sum()
        print(f"  their smallest shape residual: {smallest:.3f} ({smallest / threshold:.1f}x the threshold); "
              f"verdicts that differ between the two fits: {flips}")
    print(f"  images above the threshold: {(own_shape > threshold).mean():.1%} of the decodes")


if __name__ == "__main__":
    main()
