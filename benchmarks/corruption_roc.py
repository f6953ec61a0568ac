"""The corruption benchmark on the default grid: ROC per kind, the operating point and the rule, with figures.

    .venv/bin/python benchmarks/corruption_roc.py -o OUT_DIR [--family gaussian student_t] [--seeds 4]
                                                 [--n-per-cell N] [--timing]

For each family: builds the benchmark (``latent_atlas.corruptions``, seed ``BENCHMARK_SEED``), scores it with
the oracle's shape residual, fixes the threshold by the rule, and prints a compact table (AUC per kind,
detection per (kind, grade) at the threshold, the operating point, the band of thresholds the benchmark
cannot tell apart from it), plus the rule's answer for ``--seeds`` further benchmark seeds (stability).
Writes into OUT_DIR: ``corruption_roc.json`` (every number, ROC curves included), ``roc_curves.png`` and
``threshold_examples_{family}.png`` (benchmark images just either side of the threshold, with their shape
residuals). ``--timing`` also times the oracle's verdict on 1,000 noisy test images against the 9,500
training images (with and without novelty). No model is involved anywhere.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from latent_atlas.config import DataConfig
from latent_atlas.corruptions import (
    BENCHMARK_SEED,
    CLEAN,
    KIND_BY_NAME,
    N_PER_CELL,
    Benchmark,
    choose_threshold,
    evaluate,
    make_benchmark,
    shape_residuals,
    shape_threshold_for,
)
from latent_atlas.io import atomic_path, write_json

RULE = (
    "The shape threshold is the candidate, from the fixed round grid 1.00, 1.12, 1.25, ..., 8.00, 9.00 x 10^-3 ... "
    "10^-1 and 1 (R20 series), that maximises Youden's J = TPR - FPR on the corruption benchmark (seed 0, "
    f"{N_PER_CELL} images per cell), where a positive is an image of a corrupt grade, a negative a clean image "
    "or one of a benign grade, an image is flagged when its shape residual exceeds the threshold, and ties go "
    "to the larger candidate. Which grades are benign was fixed a priori from what the images show; no model "
    "is involved."
)


def _timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def plt_colours(n: int) -> list:
    """n distinct colours (tab20: more kinds than tab10 has colours)."""
    return [colormaps["tab20"](k % 20) for k in range(n)]


def roc_figure(reports: dict[str, dict]) -> Figure:
    figure = Figure(figsize=(5.2 * len(reports), 4.8), layout="constrained")
    for ax, (family, report) in zip(figure.subplots(1, len(reports), squeeze=False)[0], reports.items()):
        colours = iter(plt_colours(len(report["roc"])))
        for name, curve in report["roc"].items():
            pooled = name == "pooled"
            label = f"{name} (AUC {report['auc'][name]:.3f})"
            ax.plot(curve["fpr"], curve["tpr"], lw=2.5 if pooled else 1.0, color="black" if pooled else next(colours),
                    label=label, zorder=3 if pooled else 2)
        point = report["operating_point"]
        ax.plot(point["fpr"], point["tpr"], "o", color="crimson", ms=8, zorder=4,
                label=f"threshold {report['threshold']:g}: TPR {point['tpr']:.2f}, FPR {point['fpr']:.2f}")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set(xlabel="false positive rate (clean and benign images flagged)",
               ylabel="true positive rate (corrupt images flagged)",
               title=f"{family}: shape residual, corrupt vs acceptable", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=6.5, loc="lower right")
    return figure


def either_side(benchmark: Benchmark, scores: np.ndarray, threshold: float, per_side: int = 8) -> tuple[np.ndarray, ...]:
    """Rows just below and just above the threshold, at most one per (kind, grade) cell and no clean images."""
    chosen = []
    for below in (True, False):
        side = np.flatnonzero(((scores <= threshold) if below else (scores > threshold)) & (benchmark.kind != CLEAN))
        side = side[np.argsort(np.abs(np.log(scores[side] / threshold)))]  # nearest the threshold first
        picked, seen = [], set()
        for row in side:
            cell = (benchmark.kind[row], benchmark.grade[row])
            if cell not in seen:
                seen.add(cell)
                picked.append(row)
            if len(picked) == per_side:
                break
        chosen.append(np.array(sorted(picked, key=lambda r: scores[r])))
    return tuple(chosen)


def examples_figure(benchmark: Benchmark, scores: np.ndarray, threshold: float, family: str) -> Figure:
    passing, failing = either_side(benchmark, scores, threshold)
    columns = max(len(passing), len(failing))
    figure = Figure(figsize=(1.45 * columns, 3.6), layout="constrained")
    axes = figure.subplots(2, columns, squeeze=False)
    for r, (rows, verdict) in enumerate(((passing, "passes"), (failing, "fails"))):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows):
                ax.set_axis_off()
                continue
            row = rows[c]
            kind = KIND_BY_NAME[str(benchmark.kind[row])]
            status = "corrupt" if benchmark.label[row] else "benign"
            ax.imshow(benchmark.images[row], origin="lower", vmin=0, vmax=1, cmap="viridis")
            ax.set_title(f"{kind.name} {benchmark.severity[row]:g} ({status})\nshape res. {scores[row]:.3f}", fontsize=6.5)
            for spine in ax.spines.values():
                spine.set_edgecolor("seagreen" if r == 0 else "crimson")
                spine.set_linewidth(2)
        axes[r, 0].set_ylabel(verdict, fontsize=9)
    figure.suptitle(f"{family}: benchmark images just either side of the shape threshold {threshold:g} "
                    "(top: shape_ok; bottom: not)", fontsize=9)
    return figure


def print_summary(report: dict, seconds: dict[str, float], stability: list[float]) -> None:
    family, threshold, point = report["family"], report["threshold"], report["operating_point"]
    print(f"\n== {family}: {report['n_images']} images ({report['n_corrupt']} corrupt, {report['n_acceptable']} clean or "
          f"benign); build {seconds['build_wall']:.1f} s wall / {seconds['build_cpu']:.1f} s CPU, score "
          f"{seconds['score_wall']:.1f} s wall / {seconds['score_cpu']:.1f} s CPU")
    band = report["plausible_band"]
    print(f"threshold {threshold:g}: TPR {point['tpr']:.3f}, FPR {point['fpr']:.3f}, J {point['youden_j']:.3f}; "
          f"pooled AUC {report['auc']['pooled']:.3f}; J within one SE of this over [{band[0]:g}, {band[1]:g}]")
    if stability:
        print(f"rule's threshold for benchmark seeds {BENCHMARK_SEED + 1}..{BENCHMARK_SEED + len(stability)}: "
              + ", ".join(f"{t:g}" for t in stability))
    print(f"{'kind':<11} {'AUC':>6}  detected at the threshold, per grade (severity: fraction; * = benign)")
    for kind in dict.fromkeys(cell["kind"] for cell in report["cells"]):
        cells = [cell for cell in report["cells"] if cell["kind"] == kind]
        auc = report["auc"].get(kind)
        parts = [f"{cell['severity']:g}{'*' if cell['label'] != 'corrupt' else ''}: {cell['detected']:.2f}" for cell in cells]
        unit = cells[0]["unit"]
        print(f"{kind:<11} {'' if auc is None else f'{auc:.3f}':>6}  " + "   ".join(parts) + (f"   [{unit}]" if unit else ""))


def timing(family: str) -> dict[str, float]:
    from latent_atlas.data import make_dataset
    from latent_atlas.oracle import HeatmapOracle

    dataset = make_dataset(DataConfig(kind=family))
    oracle = HeatmapOracle.for_dataset(dataset)
    oracle.shape_threshold  # noqa: B018 -- resolved (cached) before timing
    rng = np.random.default_rng(0)
    queries = dataset.images[dataset.test_idx[:1000]] + rng.normal(0.0, 0.01, (1000, *dataset.image_shape))
    oracle.verdict(queries[:10])  # warm-up: builds the nearest-neighbour index
    result = {}
    for novelty in (False, True):
        _, wall, cpu = _timed(functools.partial(oracle.verdict, queries, novelty=novelty))
        result[f"verdict_{'with' if novelty else 'without'}_novelty_wall"] = wall
        result[f"verdict_{'with' if novelty else 'without'}_novelty_cpu"] = cpu
    print(f"verdict on 1,000 noisy {family} test images, {len(dataset.train_idx)} training images: "
          f"{result['verdict_with_novelty_wall']:.2f} s wall / {result['verdict_with_novelty_cpu']:.2f} s CPU with "
          f"novelty, {result['verdict_without_novelty_wall']:.2f} s / {result['verdict_without_novelty_cpu']:.2f} s "
          "without")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for the JSON and the figures")
    parser.add_argument("--family", nargs="+", choices=["gaussian", "student_t"], default=["gaussian", "student_t"])
    parser.add_argument("--seeds", type=int, default=4, help="further benchmark seeds for the stability line")
    parser.add_argument("--n-per-cell", type=int, default=N_PER_CELL)
    parser.add_argument("--timing", action="store_true", help="also time the verdict on 1,000 images")
    args = parser.parse_args(argv)
    print("rule:", RULE)
    reports, everything = {}, {"rule": RULE, "n_per_cell": args.n_per_cell, "seed": BENCHMARK_SEED, "families": {}}
    for family in args.family:
        config = DataConfig(kind=family)
        benchmark, build_wall, build_cpu = _timed(
            functools.partial(make_benchmark, config, np.random.default_rng(BENCHMARK_SEED), args.n_per_cell))
        scores, score_wall, score_cpu = _timed(functools.partial(shape_residuals, benchmark))
        threshold = choose_threshold(scores, benchmark.label)
        if args.n_per_cell == N_PER_CELL:
            assert threshold == shape_threshold_for(config), "the script and the library disagree"
        report = evaluate(benchmark, scores, threshold)
        stability = []
        for seed in range(BENCHMARK_SEED + 1, BENCHMARK_SEED + 1 + args.seeds):
            other = make_benchmark(config, np.random.default_rng(seed), args.n_per_cell)
            stability.append(choose_threshold(shape_residuals(other), other.label))
        seconds = {"build_wall": build_wall, "build_cpu": build_cpu, "score_wall": score_wall, "score_cpu": score_cpu}
        print_summary(report, seconds, stability)
        report.update(seconds=seconds, stability_thresholds=stability)
        if args.timing:
            report["timing"] = timing(family)
        _save(examples_figure(benchmark, scores, threshold, family), args.output / f"threshold_examples_{family}.png")
        reports[family] = report
        everything["families"][family] = report
    _save(roc_figure(reports), args.output / "roc_curves.png")
    write_json(args.output / "corruption_roc.json", everything)
    print(f"\nwrote {args.output}/corruption_roc.json, roc_curves.png, "
          + ", ".join(f"threshold_examples_{family}.png" for family in reports))


if __name__ == "__main__":
    main()
