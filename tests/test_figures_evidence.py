import numpy as np
import pytest
from matplotlib.colors import to_hex

from latent_atlas.errors import AtlasError
from latent_atlas.report import figures_evidence as figures

from .figure_checks import assert_renders, by_gid, png_bytes

BLUE, RED = figures.COLOURS[0], figures.COLOURS[1]


def xy(line) -> np.ndarray:
    return np.asarray(line.get_xydata(), dtype=np.float64)


def stats(per_seed: dict, mean=None, low=None, high=None) -> dict:
    return {"per_seed": per_seed, "n": len(per_seed), "mean": mean, "sd": None, "low": low, "high": high,
            "confidence": 0.95}


# -- 1. seed comparison ----------------------------------------------------------------------------------------


@pytest.fixture()
def entries() -> dict:
    vae = {"0": 0.30, "1": 0.34, "2": 0.32}
    ae = {"0": 0.25, "1": 0.24, "2": 0.27}
    return {
        "test_frobenius_mean": {
            "label": "test Frobenius error, mean", "better": "lower", "margin": 0.02,
            "by_model": {"vae": stats(vae, 0.32, 0.27, 0.37), "ae": stats(ae, 0.2533, 0.21, 0.29)},
            "paired": {"verdict": {"kind": "a_greater", "verdict": "VAE > AE", "statement": "VAE > AE: ..."}},
        },
        "isovariance_pct": {  # one seed for one model, None for another seed, nothing for the other model
            "label": "isovariance path: percentile", "better": None, "margin": 10.0,
            "by_model": {"vae": stats({}), "ae": stats({"1": 28.0, "2": None}, 28.0)},
        },
        "dci": {  # an interval far wider than the points: clipped, with a triangle at the cut end
            "label": "DCI disentanglement", "better": "higher", "margin": 0.05,
            "by_model": {"vae": stats({"0": 0.1, "1": 0.7}, 0.4, -3.6, 4.4), "ae": stats({"0": 0.2, "1": 0.21}, 0.205,
                                                                                         0.14, 0.27)},
            "paired": {"verdict": {"kind": "not_detected", "verdict": "not detected at n = 2 pairs, MDD 5.25"}},
        },
    }


def test_seed_comparison_draws_seeds_pairs_means_and_verdicts(entries):
    fig = figures.seed_comparison(entries, ["vae", "ae"], ncols=2)
    assert_renders(fig, 3)  # the fourth cell of the 2 x 2 grid is removed
    ax = fig.axes[0]
    points = by_gid(ax, "points/")
    np.testing.assert_allclose(xy(points["points/vae"]), [[0, 0.30], [0, 0.34], [0, 0.32]])
    np.testing.assert_allclose(xy(points["points/ae"]), [[1, 0.25], [1, 0.24], [1, 0.27]])
    assert to_hex(points["points/vae"].get_color()) == BLUE and to_hex(points["points/ae"].get_color()) == RED
    pairs = by_gid(ax, "pair/")
    assert sorted(pairs) == ["pair/0", "pair/1", "pair/2"]
    np.testing.assert_allclose(xy(pairs["pair/1"]), [[0, 0.34], [1, 0.24]])
    np.testing.assert_allclose(xy(by_gid(ax, "mean/")["mean/ae"])[0, 1], 0.2533)
    np.testing.assert_allclose(xy(by_gid(ax, "interval/")["interval/vae"])[:, 1], [0.27, 0.37])
    assert not by_gid(ax, "clipped/")
    assert "test Frobenius error, mean" in ax.get_title() and ax.get_title().endswith("VAE > AE")
    assert ax.get_ylabel() == "lower is better"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["VAE", "AE"]


def test_seed_comparison_skips_none_and_handles_a_single_seed(entries):
    ax = figures.seed_comparison(entries, ["vae", "ae"]).axes[1]
    assert sorted(by_gid(ax, "points/")) == ["points/ae"]
    np.testing.assert_allclose(xy(by_gid(ax, "points/")["points/ae"]), [[1, 28.0]])
    assert not by_gid(ax, "pair/") and not by_gid(ax, "interval/")  # one seed: no pair, no interval
    np.testing.assert_allclose(xy(by_gid(ax, "mean/")["mean/ae"]), [[1.25, 28.0]])
    assert "no paired test" in ax.get_title()
    assert ax.get_ylabel() == ""


def test_seed_comparison_clips_intervals_wider_than_the_points(entries):
    ax = figures.seed_comparison(entries, ["vae", "ae"]).axes[2]
    bottom, top = ax.get_ylim()
    assert -3.6 < bottom < 0.1 and 0.7 < top < 4.4
    np.testing.assert_allclose(xy(by_gid(ax, "interval/")["interval/vae"])[:, 1], [bottom, top])
    clipped = [xy(line)[0, 1] for line in ax.lines if line.get_gid() == "clipped/vae"]
    assert sorted(clipped) == pytest.approx([bottom, top])
    np.testing.assert_allclose(xy(by_gid(ax, "interval/")["interval/ae"])[:, 1], [0.14, 0.27])  # inside: kept


def test_seed_comparison_rejects_nothing_to_show(entries):
    with pytest.raises(AtlasError, match="at least one quantity"):
        figures.seed_comparison({}, ["vae", "ae"])
    with pytest.raises(AtlasError, match="none of the models VAE, AE is in the quantities' by_model"):
        figures.seed_comparison(entries, ["VAE", "AE"])  # the keys are the aggregate's model names


# -- 2-4. the corruption benchmark -------------------------------------------------------------------------------


@pytest.fixture()
def oracle() -> dict:
    thresholds = [0.01, 0.02, 0.04, 0.08, 0.16]
    return {
        "family": "gaussian",
        "shape_threshold": 0.04,
        "threshold": 0.04,
        "auc": {"pooled": 0.9, "shift": 1.0, "blend": 0.8},
        "roc": {"pooled": {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0]},
                "shift": {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 1.0, 1.0]},
                "blend": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.6, 1.0]}},
        "operating_point": {"fpr": 0.1, "tpr": 0.8, "youden_j": 0.7},
        "plausible_band": [0.0355, 0.045],
        "youden_curve": {"threshold": thresholds, "tpr": [1.0, 0.95, 0.8, 0.5, 0.2],
                         "fpr": [0.8, 0.4, 0.1, 0.05, 0.0], "youden_j": [0.2, 0.55, 0.7, 0.45, 0.2],
                         "se": [0.02] * 5},
        "cells": [
            {"kind": "clean", "grade": 0, "label": "clean", "detected": 0.0, "n": 10, "auc": None},
            {"kind": "shift", "grade": 1, "label": "benign", "detected": 0.1, "n": 10, "auc": None},
            {"kind": "shift", "grade": 2, "label": "corrupt", "detected": 0.9, "n": 10, "auc": 1.0},
            {"kind": "blend", "grade": 1, "label": "benign", "detected": 0.0, "n": 10, "auc": None},
            {"kind": "blend", "grade": 2, "label": "benign", "detected": 0.2, "n": 10, "auc": None},
            {"kind": "blend", "grade": 3, "label": "corrupt", "detected": 0.6, "n": 10, "auc": 0.8},
        ],
    }


def test_benchmark_roc_plots_every_kind_and_the_operating_point(oracle):
    fig = figures.benchmark_roc(oracle)
    assert_renders(fig, 2)
    roc_ax, j_ax = fig.axes
    curves = by_gid(roc_ax, "roc/")
    assert sorted(curves) == ["roc/blend", "roc/pooled", "roc/shift"]
    np.testing.assert_allclose(xy(curves["roc/blend"]), [[0, 0], [0.2, 0.6], [1, 1]])
    assert {t.get_text() for t in roc_ax.get_legend().get_texts()} >= {"shift 1.000", "blend 0.800", "pooled 0.900"}
    np.testing.assert_allclose(xy(by_gid(roc_ax, "operating_point")["operating_point"]), [[0.1, 0.8]])
    assert j_ax.get_xscale() == "log"
    np.testing.assert_allclose(xy(by_gid(j_ax, "youden")["youden"]),
                               np.c_[oracle["youden_curve"]["threshold"], oracle["youden_curve"]["youden_j"]])
    np.testing.assert_allclose(by_gid(j_ax, "threshold")["threshold"].get_xdata(), [0.04, 0.04])
    band = [p for p in j_ax.patches if p.get_gid() == "band"]
    assert len(band) == 1
    assert band[0].get_x() == pytest.approx(0.0355)
    assert band[0].get_x() + band[0].get_width() == pytest.approx(0.045)
    assert band[0].get_label() == "plausible band 0.0355–0.045"  # the benchmark's own band


def test_benchmark_roc_without_a_band(oracle):
    oracle["plausible_band"] = None
    j_ax = figures.benchmark_roc(oracle).axes[1]
    assert not [p for p in j_ax.patches if p.get_gid() == "band"]


def test_benchmark_detection_maps_cells_and_hatches_acceptable_ones(oracle):
    fig = figures.benchmark_detection(oracle)
    assert_renders(fig, 2)  # the heatmap and its colour bar
    ax = fig.axes[0]
    rates = ax.images[0].get_array()
    expected = np.ma.masked_invalid([[0.0, np.nan, np.nan, np.nan],
                                     [np.nan, 0.1, 0.9, np.nan],
                                     [np.nan, 0.0, 0.2, 0.6]])
    np.testing.assert_array_equal(rates.mask, expected.mask)
    np.testing.assert_allclose(rates.compressed(), expected.compressed())
    hatched = [(p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches if p.get_gid() == "acceptable"]
    assert sorted(hatched) == [(0, 0), (1, 1), (1, 2), (2, 2)]  # (column, row): clean and the benign grades
    assert [t.get_text() for t in ax.get_yticklabels()] == ["clean", "shift (AUC 1.00)", "blend (AUC 0.80)"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(["0.00", "0.10", "0.90", "0.00", "0.20", "0.60"])


def test_threshold_examples_frames_passing_green_and_failing_red():
    rng = np.random.default_rng(0)
    examples = {"images": rng.uniform(size=(5, 12, 12)).astype(np.float32),
                "shape_residual": np.array([0.0399, 0.0395, 0.0390, 0.0401, 0.0410]),
                "kind": np.array(["blend", "noise", "offset", "blend", "ring"]),
                "grade": np.array([4, 2, 3, 1, 2]),
                "label": np.array([True, True, True, False, True]),
                "passes": np.array([True, True, True, False, False]),
                "threshold": np.asarray(0.04)}
    fig = figures.threshold_examples(examples, extent=3.0)
    assert_renders(fig, 5)  # 3 passing above, 2 failing below; the empty cell is removed
    colours = [to_hex(ax.spines["left"].get_edgecolor()) for ax in fig.axes]
    assert colours == [figures.PASS_COLOUR] * 3 + [figures.FAIL_COLOUR] * 2
    fourth = fig.axes[3]
    assert fourth.get_title() == "blend\ngrade 1, ok\nr = 0.0401"
    np.testing.assert_array_equal(fourth.images[0].get_array(), examples["images"][3])
    assert fourth.images[0].origin == "lower"
    assert fig.axes[0].get_ylabel().startswith("passes") and fourth.get_ylabel().startswith("fails")


# -- 5-6. threshold-free residual evidence -----------------------------------------------------------------------


@pytest.fixture()
def residual_groups() -> dict:
    rng = np.random.default_rng(3)
    vae = {str(s): {"shape_residual": rng.lognormal(np.log(0.05), 0.6, 40), "in_range": rng.uniform(size=40) > 0.1}
           for s in range(3)}
    return {"vae": vae, "ae": rng.lognormal(np.log(0.03), 0.5, 50)}  # ae: one sample, all in range


def test_residual_ecdfs_plot_each_seed_and_the_pooled_ecdf(residual_groups):
    fig = figures.residual_ecdfs(residual_groups, 0.04, band=(0.03, 0.05))
    assert_renders(fig, 1)
    ax = fig.axes[0]
    assert sorted(by_gid(ax, "seed/")) == ["seed/vae/0", "seed/vae/1", "seed/vae/2"]  # ae is one sample: no seeds
    pooled = np.sort(np.concatenate([s["shape_residual"] for s in residual_groups["vae"].values()]))
    line = xy(by_gid(ax, "group/")["group/vae"])
    np.testing.assert_allclose(line[:, 0], pooled)
    np.testing.assert_allclose(line[:, 1], np.arange(1, pooled.size + 1) / pooled.size)  # distinct values
    ae = np.sort(residual_groups["ae"])
    np.testing.assert_allclose(xy(by_gid(ax, "group/")["group/ae"])[-1], [ae[-1], 1.0])
    seed_line = xy(by_gid(ax, "seed/vae/1")["seed/vae/1"])
    np.testing.assert_allclose(seed_line[:, 0], np.sort(residual_groups["vae"]["1"]["shape_residual"]))
    np.testing.assert_allclose(by_gid(ax, "threshold")["threshold"].get_xdata(), [0.04, 0.04])
    assert ax.get_xscale() == "log"
    assert to_hex(by_gid(ax, "group/")["group/ae"].get_color()) == RED
    (band,) = [p for p in ax.patches if p.get_gid() == "band"]
    assert band.get_label() == "band checked 0.03–0.05"  # the verdict's band, not the benchmark's


def test_validity_vs_threshold_matches_a_direct_count(residual_groups):
    fig = figures.validity_vs_threshold(residual_groups, 0.04)
    assert_renders(fig, 1)
    ax = fig.axes[0]
    samples = list(residual_groups["vae"].values())
    curve = xy(by_gid(ax, "group/")["group/vae"])
    assert curve[0, 0] == pytest.approx(0.01) and curve[-1, 0] == pytest.approx(0.16)  # 0.25x to 4x
    per_seed = np.array([[np.mean((s["shape_residual"] <= t) & s["in_range"]) for t in curve[:, 0]] for s in samples])
    np.testing.assert_allclose(curve[:, 1], per_seed.mean(axis=0))  # the mean over seeds, not pooled images
    at = xy(by_gid(ax, "operating/")["operating/vae"])
    np.testing.assert_allclose(at, [[0.04, np.mean([np.mean((s["shape_residual"] <= 0.04) & s["in_range"])
                                                    for s in samples])]])
    (spread,) = [p for p in ax.collections if p.get_gid() == "spread/vae"]
    lows, highs = spread.get_paths()[0].vertices[:, 1].min(), spread.get_paths()[0].vertices[:, 1].max()
    assert lows == pytest.approx(per_seed.min()) and highs == pytest.approx(per_seed.max())
    ae = xy(by_gid(ax, "group/")["group/ae"])
    np.testing.assert_allclose(ae[:, 1], [np.mean(residual_groups["ae"] <= t) for t in ae[:, 0]])
    assert len(by_gid(ax, "seed/")) == 3
    assert not [p for p in ax.patches if p.get_gid() == "band"]


def test_residual_figures_reject_bad_input(residual_groups):
    with pytest.raises(AtlasError, match="finite"):
        figures.residual_ecdfs({"vae": np.array([0.1, np.nan])}, 0.04)
    with pytest.raises(AtlasError, match="threshold"):
        figures.validity_vs_threshold(residual_groups, 0.0)
    with pytest.raises(AtlasError, match="in_range"):
        figures.validity_vs_threshold({"vae": {"shape_residual": np.ones(3), "in_range": np.ones(2, bool)}}, 0.04)
    with pytest.raises(AtlasError, match="band"):
        figures.residual_ecdfs(residual_groups, 0.04, band=(0.05, 0.03))
    with pytest.raises(AtlasError, match="shape_residual"):  # an evaluation.npz passed whole, not its verdict fields
        figures.residual_ecdfs({"vae": {"verdict_shape_residual": np.ones(3), "verdict_factor_names": ["var_x"]}}, 0.04)


# -- 7. empty regions by distance --------------------------------------------------------------------------------


def binned(fractions, edges, unit="median code spacing", n_outside=0) -> dict:
    bins = [{"from": a, "to": b, "n": 0 if f is None else 50, "fraction": f,
             "low": None if f is None else max(f - 0.1, 0.0), "high": None if f is None else min(f + 0.1, 1.0),
             "confidence": 0.95} for f, a, b in zip(fractions, edges[:-1], edges[1:])]
    return {"unit": unit, "edges": list(edges), "bins": bins, "n_outside": n_outside}


SPACING = (0.0, 0.5, 1.0, 2.0)


def test_distance_validity_draws_seeds_means_and_the_sigma_panel():
    runs = {
        "vae": {"0": {"by_spacing": binned([0.6, 0.5, 0.2], SPACING),
                      "by_sigma": binned([0.7, 0.4], (0.0, 1.0, 2.0), "posterior sd", n_outside=7)},
                "1": {"by_spacing": binned([0.8, None, 0.1], SPACING),
                      "by_sigma": binned([0.5, 0.3], (0.0, 1.0, 2.0), "posterior sd", n_outside=3)}},
        "ae": {"0": {"by_spacing": binned([0.9, 0.7, 0.3], SPACING)}},
    }
    fig = figures.distance_validity(runs)
    assert_renders(fig, 2)
    spacing, sigma = fig.axes
    np.testing.assert_allclose(xy(by_gid(spacing, "mean/")["mean/vae"])[:, 1], [0.7, 0.5, 0.15])  # None skipped
    np.testing.assert_allclose(xy(by_gid(spacing, "mean/")["mean/ae"])[:, 1], [0.9, 0.7, 0.3])
    seed = xy(by_gid(spacing, "seed/vae/1")["seed/vae/1"])
    assert np.isnan(seed[1, 1]) and seed[0, 1] == pytest.approx(0.8)
    assert [t.get_text() for t in spacing.get_xticklabels()] == ["0–0.5", "0.5–1", "1–2"]
    assert sorted(by_gid(sigma, "mean/")) == ["mean/vae"]
    assert to_hex(by_gid(sigma, "mean/")["mean/vae"].get_color()) == BLUE
    np.testing.assert_allclose(xy(by_gid(sigma, "mean/")["mean/vae"])[:, 1], [0.6, 0.35])
    assert [t.get_text() for t in sigma.texts if t.get_gid() == "outside"] == ["10 points beyond 2 left out"]
    assert len([c for c in spacing.collections if (c.get_gid() or "").startswith("wilson/")]) == 3


def test_distance_validity_without_sigma_and_with_mismatched_edges():
    runs = {"ae": {"0": {"by_spacing": binned([0.9, 0.7, 0.3], SPACING)}, "1": None}, "vae": {}}
    assert_renders(figures.distance_validity(runs), 1)
    assert to_hex(by_gid(figures.distance_validity(runs).axes[0], "mean/")["mean/ae"].get_color()) == BLUE
    runs["ae"]["1"] = {"by_spacing": binned([0.9, 0.7], (0.0, 1.0, 2.0))}
    with pytest.raises(AtlasError, match="edges differ"):
        figures.distance_validity(runs)


# -- 8. paths against null paths ---------------------------------------------------------------------------------


def comparison(path: float, q05: float, median: float, q95: float) -> dict:
    return {"measure": "range", "null_median": median, "null_q05": q05, "null_q95": q95, "p_value": 0.1,
            "path": path, "percentile": 8.0}


def against_null(path_ratio: float, skip_code: bool) -> dict:
    random = {"fixed": {"log_var_ratio": comparison(path_ratio, 0.15, 1.6, 6.7)},
              "intended": {"rho": {**comparison(1.7, 0.03, 0.05, 1.9), "measure": "change"}},
              "n_null": 50, "units": {"log_var_ratio": "log(var_x / var_y)", "rho": "rho (absolute)"}}
    code = ({"skipped": "no code lies far enough"} if skip_code else
            {**random, "fixed": {"log_var_ratio": comparison(path_ratio, 0.1, 0.4, 2.2)}})
    return {"fixed": ["log_var_ratio"], "intended": ["rho"], "random_direction": random, "code_directed": code}


def test_null_drift_draws_null_ranges_medians_and_the_path():
    runs = {"vae-s0": against_null(0.21, skip_code=True), "ae-s0": against_null(0.5, skip_code=False),
            "ae-s1": None}
    fig = figures.null_drift(runs, "isovariance")
    assert_renders(fig, 2)
    fixed, intended = fig.axes
    assert fixed.get_title() == "log_var_ratio range\n(should stay fixed)"
    assert intended.get_title() == "rho change\n(should change)"
    assert fixed.get_xlabel() == "log(var_x / var_y)"
    np.testing.assert_allclose(xy(by_gid(fixed, "null/random_direction/vae-s0")["null/random_direction/vae-s0"]),
                               [[0.15, -0.17], [6.7, -0.17]])
    np.testing.assert_allclose(xy(by_gid(fixed, "null/code_directed/ae-s0")["null/code_directed/ae-s0"]),
                               [[0.1, 1.17], [2.2, 1.17]])
    np.testing.assert_allclose(xy(by_gid(fixed, "median/code_directed/ae-s0")["median/code_directed/ae-s0"]),
                               [[0.4, 1.17]])
    np.testing.assert_allclose(xy(by_gid(fixed, "path/vae-s0")["path/vae-s0"]), [[0.21, 0]])
    np.testing.assert_allclose(xy(by_gid(intended, "path/ae-s0")["path/ae-s0"]), [[1.7, 1]])
    assert not by_gid(fixed, "null/code_directed/vae-s0") and not by_gid(fixed, "path/ae-s1")
    assert [t.get_gid() for t in fixed.texts] == ["skipped/code_directed/vae-s0"]
    assert [t.get_text() for t in fixed.get_yticklabels()] == ["vae-s0", "ae-s0", "ae-s1"]
    with pytest.raises(AtlasError, match="against_null"):
        figures.null_drift({"vae-s0": None})


# -- 9. tail-to-tail paths ---------------------------------------------------------------------------------------


def test_tail_validity_draws_seeds_thin_and_the_mean_thick():
    pointwise = {"vae": {"0": [0.1, 0.3, 0.5], "1": [0.3, None, 0.7], "2": None},
                 "ae": {"0": [0.5, 0.6, 0.9, 1.0, 0.8]}, "extra": {}}
    fig = figures.tail_validity(pointwise)
    assert_renders(fig, 1)
    ax = fig.axes[0]
    np.testing.assert_allclose(xy(by_gid(ax, "mean/vae")["mean/vae"]), [[0, 0.2], [0.5, 0.3], [1, 0.6]])
    np.testing.assert_allclose(xy(by_gid(ax, "mean/ae")["mean/ae"])[:, 0], np.linspace(0, 1, 5))
    assert by_gid(ax, "mean/vae")["mean/vae"].get_linewidth() > by_gid(ax, "seed/vae/0")["seed/vae/0"].get_linewidth()
    assert sorted(by_gid(ax, "seed/")) == ["seed/ae/0", "seed/vae/0", "seed/vae/1"]
    with pytest.raises(AtlasError, match="points per path"):
        figures.tail_validity({"vae": {"0": [0.1, 0.2], "1": [0.1, 0.2, 0.3]}})


# -- 10. the four-factor KNN -------------------------------------------------------------------------------------


def knn(accuracy: float, band: float | None) -> dict:
    subset = ({"n": 0, "accuracy": None, "accuracy_ci": None} if band is None else
              {"n": 85, "accuracy": band, "accuracy_ci": [band - 0.1, band + 0.1]})
    return {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.03, accuracy + 0.03], "subsets": {"band": subset}}


def test_knn_band_plots_codes_per_seed_baselines_and_ceilings():
    runs = {"vae": {"0": knn(0.87, 0.67), "1": knn(0.86, 0.68)}, "ae": {"0": knn(0.88, None)}}
    baselines = {"df_rule_gives": "heavy", "factors": knn(0.93, 0.74), "pixels": knn(0.97, 0.89),
                 "band": {"n": 338, "n_band": 85, "bayes_ceiling": 0.939, "bayes_ceiling_band": 0.758}}
    fig = figures.knn_band(runs, baselines)
    assert_renders(fig, 2)
    overall, band = fig.axes
    points = by_gid(overall, "point/")
    assert sorted(points) == ["point/ae/0", "point/factors", "point/pixels", "point/vae/0", "point/vae/1"]
    assert xy(points["point/vae/1"])[0, 1] == pytest.approx(0.86)
    np.testing.assert_allclose(xy(by_gid(overall, "interval/pixels")["interval/pixels"]), [[3, 0.94], [3, 1.0]])
    np.testing.assert_allclose(xy(by_gid(overall, "mean/vae")["mean/vae"])[:, 1], [0.865, 0.865])
    assert by_gid(overall, "ceiling")["ceiling"].get_ydata()[0] == pytest.approx(0.939)
    assert by_gid(band, "ceiling")["ceiling"].get_ydata()[0] == pytest.approx(0.758)
    assert "point/ae/0" not in by_gid(band, "point/")  # no band images: left out
    assert xy(by_gid(band, "point/factors")["point/factors"])[0, 1] == pytest.approx(0.74)
    assert [t.get_text() for t in overall.get_xticklabels()] == ["vae\ncodes", "ae\ncodes", "true factors", "pixels"]


def test_knn_band_without_baselines():
    fig = figures.knn_band({"vae": {"0": knn(0.87, 0.67)}}, {"skipped": "one class only", "band": {}})
    assert_renders(fig, 2)
    assert not by_gid(fig.axes[0], "ceiling") and not by_gid(fig.axes[0], "point/factors")


def test_figures_are_reproducible(oracle):
    assert png_bytes(figures.benchmark_detection(oracle)) == png_bytes(figures.benchmark_detection(oracle))
